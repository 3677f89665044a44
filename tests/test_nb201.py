"""Tests for nas.nb201: reads only the packaged nas/resources/nb201.npz."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest

from nas.nb201 import (
    DATASETS,
    EDGES,
    LATENCY_DEVICES,
    OPS,
    NB201Table,
    arch_to_str,
    index_from_ops,
    str_to_ops,
)

ARCH0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
ARCH1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def t() -> NB201Table:
    return NB201Table.load()


def test_packaged_files_present():
    res = resources.files("nas") / "resources"
    assert (res / "nb201.npz").is_file()
    assert (res / "NB201_LICENSE.md").is_file()


def test_load_is_cached(t):
    assert NB201Table.load() is t


def test_shapes_and_constants(t):
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert t.n == len(t) == 15625
    assert t.ops.shape == (15625, 6) and t.ops.dtype == np.uint8
    assert t.ops.max() == 4
    assert t.degenerate.shape == (15625,) and t.degenerate.dtype == bool
    for name in t.columns:
        col = t.column(name)
        assert col.shape == (15625,) and col.dtype.kind == "f", name
    # every one of the 5**6 cells appears exactly once
    codes = t.ops.astype(np.int64) @ (5 ** np.arange(5, -1, -1))
    assert np.array_equal(np.sort(codes), np.arange(15625))


def test_arrays_read_only(t):
    with pytest.raises(ValueError):
        t.column("c10_test_acc_200ep")[0] = 0.0
    with pytest.raises(ValueError):
        t.ops[0, 0] = 0


def test_dataset_and_latency_columns_exist(t):
    for roles in DATASETS.values():
        assert set(roles) == {"search", "test", "params", "flops"}
        for name in roles.values():
            t.column(name)
    assert set(LATENCY_DEVICES) == {c for c in t.columns if c.endswith("_ms")}
    assert len(LATENCY_DEVICES) == 28


def test_unknown_column_lists_names(t):
    with pytest.raises(KeyError, match="c10_test_acc_200ep"):
        t.column("c10_acc")


def test_roundtrip_all_rows(t):
    for i in range(t.n):
        s = t.arch_str(i)
        ops = str_to_ops(s)
        assert ops == tuple(t.ops[i].tolist())
        assert arch_to_str(ops) == s
        assert t.index(s) == i


def test_index_accepts_ids_names_arrays(t):
    assert t.arch_str(0) == ARCH0
    assert t.arch_str(1) == ARCH1
    ids = str_to_ops(ARCH1)
    names = [OPS[k] for k in ids]
    assert t.index(ARCH1) == t.index(ids) == t.index(list(ids)) == 1
    assert t.index(names) == t.index(np.array(ids, dtype=np.uint8)) == 1
    assert index_from_ops(ids) == 1
    assert arch_to_str(names) == ARCH1
    rng = np.random.default_rng(0)
    for i in rng.integers(0, t.n, 200):
        assert index_from_ops(t.ops[i]) == i


def test_index_order_is_not_lexicographic(t):
    codes = t.ops.astype(np.int64) @ (5 ** np.arange(5, -1, -1))
    assert not np.array_equal(codes, np.arange(t.n))


def test_known_values(t):
    r0 = t.row(0)
    assert r0["params_M_c10"] == 0.129306
    assert r0["params_M_c100"] == 0.135156
    assert r0["params_M_in16"] == 0.136456
    assert r0["flops_M_c10"] == 15.64737
    assert r0["flops_M_c100"] == 15.65322
    assert r0["flops_M_in16"] == 3.91948
    assert r0["c10_test_acc_200ep"] == 85.8633
    assert r0["raspi4_latency_ms"] == 10.48198
    assert r0["pixel3_latency_ms"] == 3.60585
    assert r0["eyeriss_latency_ms"] == 3.64562
    assert r0["fpga_latency_ms"] == 2.57296
    assert r0["naswot_v1_score"] == -776.4429
    r1 = t.row(t.index(ARCH1))
    assert r1["params_M_c10"] == 0.802426
    assert r1["flops_M_c10"] == 113.95137


@pytest.mark.parametrize("name, argmaxes, value", [
    # S1 ties at the CIFAR-10 optimum: 6111 and 13714 (two different cells) both
    # score 94.3733; np.argmax returns the first, the NB201 "optimal" index 6111.
    ("c10_test_acc_200ep", (6111, 13714), 94.3733),
    ("c100_test_acc_200ep", (9930,), 73.5133),
    ("in16_test_acc_200ep", (857,), 47.3111),
    ("c10valid_valid_acc_200ep", (6111,), 91.6067),
    ("c10valid_test_acc_200ep", (1459,), 91.5233),
])
def test_published_optima(t, name, argmaxes, value):
    col = t.column(name)
    assert int(np.argmax(col)) == argmaxes[0]
    assert tuple(np.flatnonzero(col == col.max()).tolist()) == argmaxes
    assert t.row(argmaxes[0])[name] == value


def test_degenerate(t):
    assert int(t.degenerate.sum()) == 341
    # recompute: a non-"none" path must join node 0 to node 3
    reach = np.zeros((t.n, 4), dtype=bool)
    reach[:, 0] = True
    for k, (to, frm) in enumerate(EDGES):
        reach[:, to] |= reach[:, frm] & (t.ops[:, k] != 0)
    assert np.array_equal(t.degenerate, ~reach[:, 3])
    # chance accuracy; missing NASWOT score and i7 latency exactly there
    d = t.degenerate
    assert np.allclose(t.column("c10_test_acc_200ep")[d], 10.0)
    assert np.allclose(t.column("c100_test_acc_200ep")[d], 1.0)
    assert np.allclose(t.column("in16_test_acc_200ep")[d], 0.8333, atol=1e-4)
    assert np.array_equal(np.isnan(t.column("naswot_v1_score")), d)
    assert np.array_equal(np.isnan(t.column("i7_7820x_eagle_ms")), d)
    nan_cols = {c for c in t.columns if np.isnan(t.column(c)).any()}
    assert nan_cols == {"naswot_v1_score", "i7_7820x_eagle_ms"}


def test_row_and_bounds(t):
    r = t.row(15624)
    assert set(r) == set(t.columns)
    assert all(isinstance(v, float) for v in r.values())
    assert math.isnan(t.row(int(np.flatnonzero(t.degenerate)[0]))["naswot_v1_score"])
    for bad in (-1, 15625):
        with pytest.raises(IndexError):
            t.row(bad)
        with pytest.raises(IndexError):
            t.arch_str(bad)


@pytest.mark.parametrize("s, fragment", [
    ("", "3 '+'-separated nodes"),
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 '+'-separated nodes"),
    (ARCH0 + "+|none~0|", "3 '+'-separated nodes"),
    ("|avg_pool_3x3~0|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must have 1"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|", "node 3 must have 3"),
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
    ("|none~0|+|none~0|none~1|+|none~0|none~2|none~1|", "must read from node 1"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read from node 0"),
    ("|none~0|+|none~0|none~x|+|none~0|none~1|none~2|", "must read from node 1"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "lacks '~input'"),
    ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must look like"),
    ("||+|none~0|none~1|+|none~0|none~1|none~2|", "lacks '~input'"),
    ("|~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op ''"),
])
def test_malformed_strings(t, s, fragment):
    with pytest.raises(ValueError) as ei:
        str_to_ops(s)
    msg = str(ei.value)
    assert fragment in msg and "\n" not in msg
    with pytest.raises(ValueError):
        t.index(s)


@pytest.mark.parametrize("ops", [(0, 1, 2), (0,) * 7, (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4, -1),
                                 ("none",) * 5 + ("conv",), (0, 1, 2, 3, 4, 2.5)])
def test_bad_op_ids(ops):
    with pytest.raises(ValueError):
        arch_to_str(ops)
    with pytest.raises(ValueError):
        index_from_ops(ops)


def test_tabular_evaluator_reports_the_tables_own_numbers_for_a_cell_with_dead_edges(t):
    """The built network leaves out edges that cannot reach the output; the table, which NB201
    trained with them, still answers for the cell looked up."""
    from nas.build import build_model
    from nas.measure import count_params
    from nas.space import load_space
    from nas.tabular import TabularEvaluator

    space = load_space("nb201")
    dead = space.parse_arch("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|")
    bare = space.parse_arch("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert dead.key == bare.key
    table = TabularEvaluator("cifar10")
    got = {arch: table.evaluate(space, arch) for arch in (dead, bare)}
    for arch, result in got.items():
        row = t.row(t.index(space.format_arch(arch)))
        assert result.metrics["nb201_index"] == t.index(space.format_arch(arch))
        assert result.metrics["params"] == round(row["params_M_c10"] * 1e6)
        assert result.metrics["flops"] == round(row["flops_M_c10"] * 1e6)
        assert result.metrics["val_accuracy"] == pytest.approx(row["c10valid_valid_acc_12ep"] / 100, rel=1e-6)
        assert table.test(space, arch)["test_accuracy"] == pytest.approx(row["c10_test_acc_200ep"] / 100, rel=1e-6)
    assert got[dead].metrics["params"] == 587_386
    # one key, but the table trained the two cells apart: each gets its own row
    assert got[dead].metrics["val_accuracy"] != got[bare].metrics["val_accuracy"]
    assert count_params(build_model(space, dead, device="meta")) == got[bare].metrics["params"] < 587_386
