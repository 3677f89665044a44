"""Architectures -> torch networks: every shipped space builds and runs, retargeting to other
inputs, shape errors reported as InvalidArchitecture, the DSL and torch sides agree, every
NAS-Bench-201 key builds one network and parameter count, and where a cell has no dead edge the
network matches the benchmark's parameter and FLOP counts."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

import nas.nb201
import nas.ops
from nas.build import build_model
from nas.measure import count_flops, count_params
from nas.nb201 import DATASETS, EDGES, OPS, NB201Table
from nas.space import (
    CELL_OPS,
    LAYERS,
    InvalidArchitecture,
    SearchSpace,
    ShapeMismatch,
    shipped_spaces,
)

NAMES = sorted(shipped_spaces())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two spinning OpenMP threads competing with
    other processes make a forward pass tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




def forward(model: torch.nn.Module, shape, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *shape, generator=gen))


# -- every shipped space builds ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_samples_build_and_run(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    torch.manual_seed(0)
    for i, arch in enumerate(space.sample_many(200, seed=17)):
        model = build_model(space, arch)
        assert isinstance(model, nas.ops.Network)
        out = forward(model, space.input_shape, seed=i)
        assert out.shape == (2, space.classes), space.format_arch(arch)
        assert torch.isfinite(out).all(), space.format_arch(arch)
        assert count_params(model) > 0
    # a network also takes flat inputs of the same size (reshaped to the spec's input shape)
    flat = forward(model, (math.prod(space.input_shape),))
    assert flat.shape == (2, space.classes)


@pytest.mark.parametrize("name", NAMES)
def test_resolved_spec_rebuilds_the_same_network(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    for arch in space.sample_many(5, seed=2):
        torch.manual_seed(0)
        a = build_model(space, arch)
        torch.manual_seed(0)
        b = nas.ops.Network(copy.deepcopy(space.resolve(arch).net))
        assert count_params(a) == count_params(b)
        x = torch.randn(2, *space.input_shape)
        a.eval(), b.eval()
        with torch.no_grad():
            assert torch.equal(a(x), b(x))


def test_invalid_architecture_does_not_build(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["nb201"]
    arch = space.parse_arch("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert not arch.valid
    with pytest.raises(InvalidArchitecture, match="cut off"):
        build_model(space, arch)


# -- retargeting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cnn", "resnet", "nb201"])
def test_retarget_to_a_small_input(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    shape = (1, 8, 8) if name != "nb201" else (3, 8, 8)
    for i, arch in enumerate(space.sample_many(20, seed=5)):
        model = build_model(space, arch, input_shape=shape, classes=3)
        assert model.input_shape == shape
        out = forward(model, shape, seed=i)
        assert out.shape == (2, 3)
        assert torch.isfinite(out).all()
    # classes alone, and the space's own shape, also work
    assert forward(build_model(space, arch, classes=4), space.input_shape).shape == (2, 4)
    assert forward(build_model(space, arch, input_shape=space.input_shape), space.input_shape).shape == (2, space.classes)


def test_retarget_mlp_to_other_features(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["mlp"]
    for arch in space.sample_many(10, seed=1):
        assert forward(build_model(space, arch, input_shape=(20,), classes=2), (20,)).shape == (2, 2)


FOUR_POOLS = """
input: [1, 32, 32]
classes: 5
body:
  - conv: {out: [4, 8]}
  - pool: max
  - pool: max
  - pool: max
  - pool: max
"""


def test_downsampling_that_does_not_fit_is_an_invalid_architecture(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml(FOUR_POOLS)
    arch = space.sample(0)
    assert forward(build_model(space, arch), space.input_shape).shape == (2, 5)
    assert forward(build_model(space, arch, input_shape=(1, 16, 16)), (1, 16, 16)).shape == (2, 5)
    with pytest.raises(InvalidArchitecture) as info:
        build_model(space, arch, input_shape=(1, 8, 8), classes=3)
    message = str(info.value)
    assert "body[4].pool" in message  # names the layer that cannot take its input
    assert "1x1" in message and "1x8x8" in message
    assert "\n" not in message
    for torch_words in ("RuntimeError", "Given input size", "Output size is too small", "Traceback"):
        assert torch_words not in message
    # resolving the retargeted space directly reports a ShapeMismatch with the field path
    small = space.with_input((1, 8, 8))
    with pytest.raises(ShapeMismatch) as info:
        small.resolve(dict(arch))
    assert info.value.path == "body[4].pool.size"


def test_downsampling_that_does_not_fit_raises_shape_mismatch(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml(FOUR_POOLS)
    with pytest.raises(ShapeMismatch):
        build_model(space, space.sample(0), input_shape=(1, 8, 8), classes=3)


def test_shape_error_names_the_deciding_decision(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [1, 16, 16]
body:
  - conv: {out: 4, stride: [1, 2]}
  - conv: {out: 4, stride: [1, 2]}
  - conv: {out: 4, stride: [1, 2]}
  - conv: {out: 4, stride: [1, 2]}
""")
    arch = space.make({f"body[{i}].conv.stride": 2 for i in range(4)})
    assert forward(build_model(space, arch), (1, 16, 16)).shape == (2, 10)
    # 4x4 -> 2x2 -> 1x1 -> stride 2 on 1x1 fails at the third conv
    with pytest.raises(InvalidArchitecture, match=r"body\[2\]\.conv\.stride = 2") as info:
        build_model(space, arch, input_shape=(1, 4, 4))
    assert "torch" not in str(info.value).lower()
    # with stride 1 in the last two layers the same input fits
    fits = space.make({**dict(arch), "body[2].conv.stride": 1, "body[3].conv.stride": 1})
    assert forward(build_model(space, fits, input_shape=(1, 4, 4)), (1, 4, 4)).shape == (2, 10)


# -- the DSL and torch sides agree ----------------------------------------------------------------
def test_layer_builders_match_dsl_layers() -> None:
    # every layer type that can appear in a resolved network has a torch builder; `repeat` and
    # `choose` are unrolled by the compiler and never reach the builder
    unrolled = {"repeat", "choose"}
    assert all(LAYERS[name].container for name in unrolled)
    assert set(nas.ops.LAYER_BUILDERS) == set(LAYERS) - unrolled


def test_cell_ops_match_dsl_cell_ops() -> None:
    assert set(nas.ops.CELL_OP_NAMES) == set(CELL_OPS)
    assert len(nas.ops.CELL_OP_NAMES) == len(CELL_OPS)
    assert tuple(nas.ops.CELL_OP_NAMES) == tuple(CELL_OPS)


@pytest.mark.parametrize("op", [op for op in CELL_OPS if op != "none"])
def test_every_cell_op_keeps_the_shape(tmp_path: Path, space_from_yaml, op: str) -> None:
    space = space_from_yaml(f"input: [3, 6, 6]\nbody:\n  - conv: {{out: 4}}\n  - cell: {{nodes: 3, ops: [{op}]}}\n")
    model = build_model(space, space.sample(0))
    assert forward(model, (3, 6, 6)).shape == (2, 10)


def test_every_layer_type_builds_and_runs(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [3, 16, 16]
body:
  - conv: {out: 8, kernel: 3, dilation: 2, act: gelu}
  - sep_conv: {out: 8, kernel: 5, act: silu}
  - resblock: {out: 8, style: post}
  - resblock: {out: 12, stride: 2, style: preact}
  - residual: {body: [{conv: {out: 16, stride: 2}}]}
  - cell: {nodes: 3, ops: [skip_connect, nor_conv_3x3]}
  - norm: batch
  - act: leaky_relu
  - dropout: 0.1
  - identity
  - pool: {kind: avg, size: 2}
  - choose: {options: {g: {global_pool: max}, f: flatten}}
  - residual: {body: [{dense: {units: 6, norm: batch, dropout: 0.2}}]}
  - dense: {units: 5, act: elu}
""")
    used = set()
    for arch in space.sample_many(20, seed=0):
        spec = space.resolve(arch).net
        used |= {layer["type"] for layer in spec["body"]}
        model = build_model(space, arch)
        out = forward(model, (3, 16, 16))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    non_containers = {name for name, schema in LAYERS.items() if not schema.container} - {"identity"}
    assert non_containers | {"residual", "cell"} <= used


# -- NAS-Bench-201 costs ------------------------------------------------------------------------
@pytest.mark.parametrize("index, params_m, flops_m", [(0, 0.129306, 15.64737), (1, 0.802426, 113.95137)])
def test_nb201_params_and_flops_match_the_table(spaces: dict[str, SearchSpace], index: int, params_m: float, flops_m: float) -> None:
    table = NB201Table.load()
    cols = DATASETS["cifar10"]
    assert round(float(table.column(cols["params"])[index]), 6) == params_m
    assert round(float(table.column(cols["flops"])[index]), 5) == flops_m
    space = spaces["nb201"]
    arch = space.parse_arch(table.arch_str(index))
    model = build_model(space, arch)
    assert round(count_params(model) / 1e6, 6) == params_m
    assert round(count_flops(model, space.input_shape) / 1e6, 5) == flops_m
    # FLOPs do not depend on the batch-norm state or the device the model sits on
    model.train()
    assert round(count_flops(model, space.input_shape) / 1e6, 5) == flops_m
    assert model.training


# -- every NB201 cell: one key, one network, one parameter count -----------------------------
def _conv_params(op: str, c: int) -> int:
    """Parameters of a cell op at c channels: NAS-Bench-201's ReLU-conv(no bias)-BN."""
    return {"nor_conv_1x1": c * c + 2 * c, "nor_conv_3x3": 9 * c * c + 2 * c}.get(op, 0)


def _cell_params(channels: int, edges) -> int:
    return sum(_conv_params(op, channels) for _, _, op in edges)


def _cell_flops(shape, edges) -> int:
    """Multiply-accumulates of a cell's convs at (C, H, W) (NB201 counts no BN or pooling)."""
    c, h, w = shape
    return sum({"nor_conv_1x1": c * c, "nor_conv_3x3": 9 * c * c}.get(op, 0) * h * w for _, _, op in edges)


def _spec_flops(spec, skeleton: int) -> int:
    return skeleton + sum(_cell_flops(layer["in"], layer["edges"]) for layer in spec["body"] if layer["type"] == "cell")


@pytest.fixture(scope="module")
def nb201_specs(spaces: dict[str, SearchSpace]):
    """(table, space, [(index, op values, Resolved) for every buildable NB201 cell])."""
    table = NB201Table.load()
    space = spaces["nb201"]
    rows = []
    for i in range(table.n):
        values = {label: OPS[k] for label, k in zip(space.labels, table.ops[i])}
        try:
            rows.append((i, values, space.resolve(values)))
        except InvalidArchitecture:
            assert table.degenerate[i]
    return table, space, rows


def _skeleton(space: SearchSpace) -> tuple[int, int]:
    """Parameters and FLOPs of the NB201 network without its cells (a skip_connect cell is the
    identity: it builds nothing)."""
    arch = space.parse_arch("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert not any(layer["type"] == "cell" for layer in space.resolve(arch).net["body"])
    model = build_model(space, arch)
    return count_params(model), count_flops(model, space.input_shape)


def _spec_params(spec, skeleton: int) -> int:
    return skeleton + sum(_cell_params(layer["in"][0], layer["edges"]) for layer in spec["body"] if layer["type"] == "cell")


def test_every_nb201_key_builds_one_network_with_one_parameter_count(nb201_specs) -> None:
    table, space, rows = nb201_specs
    assert len(rows) == 15_284
    skeleton = _skeleton(space)[0]
    by_key: dict[str, set[int]] = {}
    specs: dict[str, str] = {}
    forms = set()
    for _, _, res in rows:
        spec = res.net
        by_key.setdefault(res.key, set()).add(_spec_params(spec, skeleton))
        text = json.dumps(spec, sort_keys=True)
        assert specs.setdefault(res.key, text) == text  # one key, one spec: one network
        forms |= {(layer["nodes"], tuple(map(tuple, layer["edges"]))) for layer in spec["body"] if layer["type"] == "cell"}
    assert len(by_key) == 5_424
    split = {k: v for k, v in by_key.items() if len(v) > 1}
    assert not split, f"{len(split)} keys build several parameter counts"
    # the formula is what nas.ops builds: every op at every width, cells (one in 40 of the
    # distinct minimal cells, parallel edges among them), whole networks
    for op in nas.nb201.OPS[1:]:
        for c in (16, 32, 64):
            assert count_params(nas.ops.CELL_OPS[op](c)) == _conv_params(op, c)
    ordered = sorted(forms)
    assert any(len(set(edges)) < len(edges) for _, edges in ordered)
    for nodes, edges in ordered[::40] + [e for e in ordered if len(set(e[1])) < len(e[1])][:20]:
        assert count_params(nas.ops.Cell(16, nodes, [list(e) for e in edges])) == _cell_params(16, edges)
    # and whole networks: the skeleton plus the cells
    flops_skeleton = _skeleton(space)[1]
    for _, values, res in rows[:: len(rows) // 6]:
        model = build_model(space, space.make(values))
        assert count_params(model) == _spec_params(res.net, skeleton)
        assert count_flops(model, space.input_shape) == _spec_flops(res.net, flops_skeleton)


def test_the_table_counts_the_dead_edges_that_are_not_built(nb201_specs) -> None:
    """NAS-Bench-201 builds every edge; the minimal network leaves out those that cannot reach
    the output. Where there is none, the table's parameter and FLOP counts are the built ones."""
    from nas.space.cell import live_edges

    table, space, rows = nb201_specs
    skeleton, flops_skeleton = _skeleton(space)
    expected = table.column(DATASETS["cifar10"]["params"])
    expected_flops = table.column(DATASETS["cifar10"]["flops"])
    stages = ((16, 32, 32), (32, 16, 16), (64, 8, 8))
    minimal = wrong = 0
    for i, values, res in rows:
        spec = res.net
        edges = [(t, f, values[label]) for (t, f), label in zip(EDGES, space.labels)]
        live = live_edges(4, edges)
        dead = [e for e in edges if e[2] != "none" and e not in live]
        dead_params = sum(_cell_params(shape[0], dead) * 5 for shape in stages)
        dead_flops = sum(_cell_flops(shape, dead) * 5 for shape in stages)
        built, flops = _spec_params(spec, skeleton), _spec_flops(spec, flops_skeleton)
        wrong += round((built + dead_params) / 1e6, 6) != round(float(str(expected[i])), 6)
        wrong += round((flops + dead_flops) / 1e6, 5) != round(float(str(expected_flops[i])), 5)
        if not any(_conv_params(op, 16) for _, _, op in dead):
            minimal += 1
            wrong += round(built / 1e6, 6) != round(float(str(expected[i])), 6)
            wrong += round(flops / 1e6, 5) != round(float(str(expected_flops[i])), 5)
    assert wrong == 0
    assert 10_000 < minimal < len(rows)


def test_nb201_twins_on_a_dead_edge_build_one_network(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["nb201"]
    table = NB201Table.load()
    params = table.column(DATASETS["cifar10"]["params"])
    # node 1 and node 2 never reach the output: a 3x3 conv and a 1x1 conv that NB201 builds
    dead = space.parse_arch("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|")
    bare = space.parse_arch("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert round(float(params[table.index(space.format_arch(dead))]) * 1e6) == 587_386
    assert dead.key == bare.key
    a, b = build_model(space, dead), build_model(space, bare)
    assert count_params(a) == count_params(b) == round(float(params[table.index(space.format_arch(bare))]) * 1e6)
    shapes = lambda m: [(k, tuple(v.shape)) for k, v in m.state_dict().items()]  # noqa: E731
    assert shapes(a) == shapes(b)
    b.load_state_dict(a.state_dict())  # a twin's weights load into the other
    x = torch.randn(2, 3, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_a_cell_with_parallel_edges_builds_each_module() -> None:
    cell = nas.ops.Cell(4, 2, [[1, 0, "nor_conv_3x3"], [1, 0, "nor_conv_3x3"], [1, 0, "skip_connect"]])
    assert list(cell.ops) == ["1_0", "1_0_1", "1_0_2"]
    assert count_params(cell) == 2 * _conv_params("nor_conv_3x3", 4)
    x = torch.randn(1, 4, 5, 5)
    cell.eval()
    with torch.no_grad():
        assert torch.allclose(cell(x), cell.ops["1_0"](x) + cell.ops["1_0_1"](x) + x)
    with pytest.raises(ValueError, match="earlier to a later node"):
        nas.ops.Cell(4, 3, [[1, 2, "nor_conv_3x3"]])
