"""The torch side of the DSL: one module per layer type and cell op, and the `Network` that
runs a resolved network spec.

This file imports torch and the standard library only, so that an export can copy it next to
the weights as a standalone `model.py` (`Network(spec)` then rebuilds the network with no `nas`
installed). Every name here matches one in `nas.space.layers`; a test checks both lists agree.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

Spec = dict[str, Any]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "none": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def _norm(kind: str, channels: int, image: bool = True) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    return nn.BatchNorm2d(channels) if image else nn.BatchNorm1d(channels)


def _seq(*mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(*[m for m in mods if not isinstance(m, nn.Identity)])


# -- cell ops (stride 1, C channels in and out) ---------------------------------------------
def relu_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """NAS-Bench-201's ReLUConvBN: ReLU, conv without bias, batch norm."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(c_out))


def _sep(c: int, k: int, dilation: int = 1) -> list[nn.Module]:
    pad = dilation * (k - 1) // 2
    return [nn.ReLU(), nn.Conv2d(c, c, k, 1, pad, dilation=dilation, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)]


CELL_OPS: dict[str, Callable[[int], nn.Module]] = {
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: relu_conv_bn(c, c, 1),
    "nor_conv_3x3": lambda c: relu_conv_bn(c, c, 3),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    "max_pool_3x3": lambda c: nn.MaxPool2d(3, 1, 1),
    "sep_conv_3x3": lambda c: nn.Sequential(*_sep(c, 3), *_sep(c, 3)),  # DARTS applies it twice
    "sep_conv_5x5": lambda c: nn.Sequential(*_sep(c, 5), *_sep(c, 5)),
    "dil_conv_3x3": lambda c: nn.Sequential(*_sep(c, 3, 2)),
    "dil_conv_5x5": lambda c: nn.Sequential(*_sep(c, 5, 2)),
}
CELL_OP_NAMES = ("none", *CELL_OPS)


class Cell(nn.Module):
    """A cell DAG: node i = sum over its edges (i, j, op) of op(node j); the output is the last node.

    Builds one module for every edge the spec lists (`none` edges excepted), in the spec's
    order; two edges may join the same nodes (two modules summed). `SearchSpace.resolve`
    lists only the cell's minimal form (no edge that cannot reach the output, no node that is
    another's tensor), so the modules built are exactly those that change the output. A node
    with no edge into it is zero.
    """

    def __init__(self, channels: int, nodes: int, edges: list[list[Any]]) -> None:
        super().__init__()
        self.nodes = nodes
        self.ops = nn.ModuleDict()
        self.inputs: list[list[tuple[int, str]]] = [[] for _ in range(nodes)]
        for to, frm, op in edges:
            if op == "none":
                continue
            if not 0 <= frm < to < nodes:
                raise ValueError(f"cell edge {to}<-{frm} must go from an earlier to a later node of {nodes}")
            name, k = f"{to}_{frm}", 1
            while name in self.ops:  # a parallel edge between the same nodes
                name, k = f"{to}_{frm}_{k}", k + 1
            self.ops[name] = CELL_OPS[op](channels)
            self.inputs[to].append((frm, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for i in range(1, self.nodes):
            terms = [self.ops[name](states[j]) for j, name in self.inputs[i]]
            if not terms:
                states.append(torch.zeros_like(x))
            else:
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                states.append(total)
        return states[-1]


class ResBlock(nn.Module):
    """ResNet basic block. `post`: conv-BN-act, conv-BN, add the shortcut, act (He et al. 2016).
    `preact`: NAS-Bench-201's block: ReLUConvBN twice, shortcut avg-pool + 1x1 conv, no final act."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, act: str, style: str) -> None:
        super().__init__()
        pad = (kernel - 1) // 2
        self.style = style
        if style == "preact":
            self.a = relu_conv_bn(c_in, c_out, kernel, stride)
            self.b = relu_conv_bn(c_out, c_out, kernel, 1)
            if stride > 1:
                self.short: nn.Module = nn.Sequential(nn.AvgPool2d(stride, stride), nn.Conv2d(c_in, c_out, 1, bias=False))
            elif c_in != c_out:
                self.short = relu_conv_bn(c_in, c_out, 1)
            else:
                self.short = nn.Identity()
            self.out_act: nn.Module = nn.Identity()
        else:
            self.a = _seq(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False), nn.BatchNorm2d(c_out), activation(act))
            self.b = nn.Sequential(nn.Conv2d(c_out, c_out, kernel, 1, pad, bias=False), nn.BatchNorm2d(c_out))
            if stride > 1 or c_in != c_out:
                self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            else:
                self.short = nn.Identity()
            self.out_act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.b(self.a(x)) + self.short(x))


class Residual(nn.Module):
    """body(x) + shortcut(x); the shortcut projects when the body changes the shape."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.body = nn.Sequential(*[build_layer(layer) for layer in spec["body"]])
        proj = spec.get("proj")
        c_in = spec["in"][0]
        if proj is None:
            self.short: nn.Module = nn.Identity()
        elif proj["kind"] == "linear":
            self.short = nn.Linear(c_in, proj["out"], bias=False)
        else:
            self.short = nn.Sequential(nn.Conv2d(c_in, proj["out"], 1, proj["stride"], bias=False), nn.BatchNorm2d(proj["out"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


def _flat_features(shape: list[int]) -> int:
    return math.prod(shape)


def _conv(s: Spec) -> nn.Module:
    c, k, d = s["in"][0], s["kernel"], s.get("dilation", 1)
    conv = nn.Conv2d(c, s["out"], k, s["stride"], d * (k - 1) // 2, dilation=d, bias=s["norm"] == "none")
    return _seq(conv, _norm(s["norm"], s["out"]), activation(s["act"]))


def _sep_conv(s: Spec) -> nn.Module:
    c, k = s["in"][0], s["kernel"]
    dw = nn.Conv2d(c, c, k, s["stride"], (k - 1) // 2, groups=c, bias=False)
    pw = nn.Conv2d(c, s["out"], 1, bias=s["norm"] == "none")
    return _seq(dw, pw, _norm(s["norm"], s["out"]), activation(s["act"]))


def _dense(s: Spec) -> nn.Module:
    mods: list[nn.Module] = []
    if len(s["in"]) > 1:
        mods.append(nn.Flatten())
    mods += [
        nn.Linear(_flat_features(s["in"]), s["units"], bias=s["norm"] == "none"),
        _norm(s["norm"], s["units"], image=False),
        activation(s["act"]),
    ]
    if s["dropout"] > 0:
        mods.append(nn.Dropout(s["dropout"]))
    return _seq(*mods)


def _pool(s: Spec) -> nn.Module:
    cls = nn.MaxPool2d if s["kind"] == "max" else nn.AvgPool2d
    return cls(s["size"], s["stride"])


def _global_pool(s: Spec) -> nn.Module:
    pool = nn.AdaptiveAvgPool2d(1) if s["kind"] == "avg" else nn.AdaptiveMaxPool2d(1)
    return nn.Sequential(pool, nn.Flatten())


LAYER_BUILDERS: dict[str, Callable[[Spec], nn.Module]] = {
    "conv": _conv,
    "sep_conv": _sep_conv,
    "dense": _dense,
    "pool": _pool,
    "global_pool": _global_pool,
    "flatten": lambda s: nn.Flatten(),
    "identity": lambda s: nn.Identity(),
    "act": lambda s: activation(s["fn"]),
    "norm": lambda s: _norm(s["kind"], s["in"][0], image=len(s["in"]) == 3),
    "dropout": lambda s: nn.Dropout(s["p"]),
    "resblock": lambda s: ResBlock(s["in"][0], s["out"], s["stride"], s["kernel"], s["act"], s["style"]),
    "residual": Residual,
    "cell": lambda s: Cell(s["in"][0], s["nodes"], s["edges"]),
}


def register_builder(name: str, builder: Callable[[Spec], nn.Module]) -> None:
    """Add the torch side of a layer type registered with `nas.space.register_layer`."""
    if name in LAYER_BUILDERS:
        raise ValueError(f"layer builder {name!r} is already registered")
    LAYER_BUILDERS[name] = builder


def build_layer(spec: Spec) -> nn.Module:
    return LAYER_BUILDERS[spec["type"]](spec)


class Network(nn.Module):
    """The network a resolved spec describes: body layers, then the head (pool, dropout, linear).

    `spec` is plain JSON (see `SearchSpace.resolve`), so `Network(json.load(f))` rebuilds it.
    Inputs of the spec's input shape are taken as they are; flat inputs (N, D) with the right
    number of features are reshaped to it. Anything else (an image in another layout, say
    channel-last) is refused rather than reinterpreted.
    """

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(spec["input"])
        self.body = nn.Sequential(*[build_layer(layer) for layer in spec["body"]])
        head = spec["head"]
        feat = head["in"]
        mods: list[nn.Module] = []
        if len(feat) == 3:
            if head["pool"] == "avg":
                mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
                width = feat[0]
            elif head["pool"] == "max":
                mods += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
                width = feat[0]
            else:
                mods.append(nn.Flatten())
                width = _flat_features(feat)
        else:
            width = feat[0]
        if head.get("dropout", 0) > 0:
            mods.append(nn.Dropout(head["dropout"]))
        mods.append(nn.Linear(width, spec["classes"]))
        self.head = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            if x.dim() != 2 or x.shape[1] != math.prod(self.input_shape):
                raise ValueError(f"the network takes inputs of shape (N, {', '.join(map(str, self.input_shape))}) "
                                 f"or flat (N, {math.prod(self.input_shape)}), got {tuple(x.shape)}")
            x = x.reshape(x.shape[0], *self.input_shape)
        return self.head(self.body(x))
