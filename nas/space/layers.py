"""The layers the DSL knows: their fields, defaults and how each changes the tensor shape.

This module has no torch in it: `nas.ops` supplies the torch implementation of each name, and a
test checks that both sides list the same names. Shapes are (C, H, W) for images and (D,) for
flat vectors, batch dimension left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .fields import REQUIRED, Bool, Enum, Field, Float, Int

Shape = tuple[int, ...]

ACTIVATIONS = ("relu", "leaky_relu", "silu", "gelu", "tanh", "sigmoid", "elu", "none")
ACTIVATION_ALIASES = {"swish": "silu", "identity": "none", "linear": "none"}
NORMS = ("batch", "none")
#: Operations on the edges of a cell DAG (NAS-Bench-201 names first, then DARTS-style extras).
CELL_OPS = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ShapeProblem(Exception):
    """A layer cannot take its input shape; `field` names the field to blame, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Activation(Enum):
    values: tuple[Any, ...] = ACTIVATIONS
    what: str = "an activation:"

    def check(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ACTIVATION_ALIASES:
            return ACTIVATION_ALIASES[value.strip().lower()]
        if value is None:
            return "none"
        return super().check(value)


ACT = Activation()
NORM = Enum(NORMS, "a normalisation:")


@dataclass(frozen=True)
class LayerSchema:
    """What a layer type accepts and what it does to the shape."""

    name: str
    fields: dict[str, Field]
    shape: Callable[[dict[str, Any], Shape], Shape]
    primary: str | None = None  # `- act: gelu` sets this field
    doc: str = ""
    container: bool = False  # parsed by the compiler itself (repeat, residual, choose, cell)
    extra: tuple[str, ...] = field(default=())  # structural keys besides fields (body, options)


LAYERS: dict[str, LayerSchema] = {}


def register_layer(schema: LayerSchema) -> LayerSchema:
    """Add a layer type to the DSL (the torch side registers its builder in `nas.ops`)."""
    if schema.name in LAYERS:
        raise ValueError(f"layer type {schema.name!r} is already registered")
    LAYERS[schema.name] = schema
    return schema


def _image(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeProblem(f"{what} needs an image input (C, H, W), got a flat vector of {shape[0]}")
    return shape  # type: ignore[return-value]


def _downsample(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_shape(f: dict[str, Any], shape: Shape, what: str = "conv") -> Shape:
    c, h, w = _image(shape, what)
    k, s, d = f["kernel"], f["stride"], f.get("dilation", 1)
    if s > 1 and (h < s or w < s):
        raise ShapeProblem(
            f"stride {s} on a {h}x{w} input: too many downsampling layers for the input size",
            "stride",
        )
    pad = d * (k - 1) // 2
    oh, ow = _downsample(h, k, s, pad, d), _downsample(w, k, s, pad, d)
    return (f["out"] or c, oh, ow)


def _pool_shape(f: dict[str, Any], shape: Shape) -> Shape:
    c, h, w = _image(shape, "pool")
    k = f["size"]
    s = f["stride"] or k
    if h < k or w < k:
        raise ShapeProblem(
            f"pool of size {k} on a {h}x{w} input: too many downsampling layers for the input size",
            "size",
        )
    return (c, (h - k) // s + 1, (w - k) // s + 1)


def _same(f: dict[str, Any], shape: Shape) -> Shape:
    return shape


def _flat(f: dict[str, Any], shape: Shape) -> Shape:
    return (math.prod(shape),)


def _dense_shape(f: dict[str, Any], shape: Shape) -> Shape:
    return (f["units"],)


def _global_pool_shape(f: dict[str, Any], shape: Shape) -> Shape:
    return (_image(shape, "global_pool")[0],)


def _cell_shape(f: dict[str, Any], shape: Shape) -> Shape:
    return _image(shape, "cell")


def _resblock_shape(f: dict[str, Any], shape: Shape) -> Shape:
    return _conv_shape({**f, "dilation": 1}, shape, "resblock")


def _unused(f: dict[str, Any], shape: Shape) -> Shape:  # containers: the compiler handles them
    raise AssertionError("container shapes are computed by the resolver")


_conv_fields = {
    "out": Field(Int(min=1), None, doc="output channels (default: the input's)"),
    "kernel": Field(Int(min=1, odd=True), 3),
    "stride": Field(Int(min=1), 1),
    "act": Field(ACT, "relu"),
    "norm": Field(NORM, "batch"),
}

for _schema in (
    LayerSchema(
        "conv",
        {**_conv_fields, "dilation": Field(Int(min=1), 1)},
        _conv_shape,
        doc="convolution, then normalisation, then activation ('same' padding)",
    ),
    LayerSchema(
        "sep_conv",
        dict(_conv_fields),
        lambda f, s: _conv_shape(f, s, "sep_conv"),
        doc="depthwise-separable convolution (depthwise kxk, pointwise 1x1), norm, activation",
    ),
    LayerSchema(
        "dense",
        {
            "units": Field(Int(min=1)),
            "act": Field(ACT, "relu"),
            "norm": Field(NORM, "none"),
            "dropout": Field(Float(0.0, 1.0, max_exclusive=True), 0.0),
        },
        _dense_shape,
        primary="units",
        doc="fully connected layer (flattens an image input), norm, activation, dropout",
    ),
    LayerSchema(
        "pool",
        {
            "kind": Field(Enum(("max", "avg"), "a pooling kind:"), "max"),
            "size": Field(Int(min=1), 2),
            "stride": Field(Int(min=1), None, doc="default: the size"),
        },
        _pool_shape,
        primary="kind",
        doc="max or average pooling",
    ),
    LayerSchema(
        "global_pool",
        {"kind": Field(Enum(("avg", "max"), "a pooling kind:"), "avg")},
        _global_pool_shape,
        primary="kind",
        doc="global pooling to a flat vector of channels",
    ),
    LayerSchema("flatten", {}, _flat, doc="flatten to a vector"),
    LayerSchema("identity", {}, _same, doc="does nothing (useful as a choice option)"),
    LayerSchema("act", {"fn": Field(ACT)}, _same, primary="fn", doc="an activation"),
    LayerSchema("norm", {"kind": Field(NORM)}, _same, primary="kind", doc="batch norm or none"),
    LayerSchema(
        "dropout",
        {"p": Field(Float(0.0, 1.0, max_exclusive=True))},
        _same,
        primary="p",
        doc="dropout with probability p",
    ),
    LayerSchema(
        "resblock",
        {
            "out": Field(Int(min=1), None, doc="output channels (default: the input's)"),
            "stride": Field(Int(min=1), 1),
            "kernel": Field(Int(min=1, odd=True), 3),
            "act": Field(ACT, "relu"),
            "style": Field(Enum(("post", "preact"), "a block style:"), "post"),
        },
        _resblock_shape,
        doc="ResNet basic block: two convs and a shortcut; 'preact' is NAS-Bench-201's"
        " (ReLU-conv-BN twice, avg-pool + 1x1 conv shortcut)",
    ),
    LayerSchema(
        "residual",
        {"skip": Field(Bool(), True)},
        _unused,
        container=True,
        extra=("body",),
        doc="a skip connection around `body` (a 1x1 projection when the shape changes)",
    ),
    LayerSchema(
        "repeat",
        {"times": Field(Int(min=0)), "share": Field(Bool(), False, decision=False)},
        _unused,
        container=True,
        extra=("body",),
        doc="`body` repeated `times` times; copies have their own decisions unless share: true",
    ),
    LayerSchema(
        "choose",
        {},
        _unused,
        container=True,
        extra=("options",),
        doc="one of several named options (each a layer or a list of layers)",
    ),
    LayerSchema(
        "cell",
        {
            "nodes": Field(Int(min=2, max=12), 4, decision=False),
            "ops": Field(None, REQUIRED, decision=False),
        },
        _cell_shape,
        container=True,
        doc="a cell DAG: node i sums an op applied to every earlier node; the output is the last node",
    ),
):
    register_layer(_schema)

#: Fields of the `train` section: the training hyperparameters a space may fix or search.
TRAIN_FIELDS: dict[str, Field] = {
    "optimizer": Field(Enum(("sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"), "an optimizer:"), "adam"),
    "lr": Field(Float(min=1e-12), 1e-3, doc="learning rate"),
    "momentum": Field(Float(0.0, 1.0, max_exclusive=True), 0.9, doc="for momentum and nesterov"),
    "weight_decay": Field(Float(min=0.0), 0.0, doc="L2 penalty"),
    "l1": Field(Float(min=0.0), 0.0, doc="L1 penalty on the weights"),
    "schedule": Field(Enum(("fixed", "exponential", "cosine"), "a schedule:"), "cosine"),
    "gamma": Field(Float(1e-6, 1.0), 0.95, doc="per-epoch decay of the exponential schedule"),
    "batch_size": Field(Int(min=1), 128),
    "epochs": Field(Int(min=1), 20, doc="maximum epochs (early stopping may end sooner)"),
    "label_smoothing": Field(Float(0.0, 1.0, max_exclusive=True), 0.0),
}

#: Fields of the `head` section: what turns the body's output into class scores.
HEAD_FIELDS: dict[str, Field] = {
    "pool": Field(Enum(("avg", "max", "flatten"), "a head pooling:"), "avg"),
    "dropout": Field(Float(0.0, 1.0, max_exclusive=True), 0.0),
}

#: Fields of the `constraints` section (never searched: they bound the search).
CONSTRAINT_FIELDS: dict[str, Field] = {
    "max_params": Field(Int(min=1), None, decision=False),
    "max_flops": Field(Int(min=1), None, decision=False),
    "max_latency_ms": Field(Float(min=0.0), None, decision=False),
}
