"""NAS-Bench-201 lookup tables (pure numpy + stdlib).

The 15,625-cell NAS-Bench-201 / NATS-Bench ``tss`` space, with accuracies,
params, FLOPs, a NASWOT score and measured latencies, read from the packaged
``nas/resources/nb201.npz`` (built by ``tools/make_nb201_table.py``; sources and
licences in ``nas/resources/NB201_LICENSE.md``).

A cell is six op ids, one per edge, in arch-string order::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
     1<-0   2<-0 2<-1   3<-0 3<-1 3<-2

Example::

    >>> t = NB201Table.load()
    >>> i = t.index("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    ...             "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    >>> i, round(float(t.column(DATASETS["cifar10"]["params"])[i]), 6)
    (1, 0.802426)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Union

import numpy as np

from .space.cell import cell_string, parse_cell_string

__all__ = [
    "OPS", "EDGES", "DATASETS", "LATENCY_DEVICES",
    "arch_to_str", "str_to_ops", "index_from_ops", "NB201Table",
]

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Op names; the position is the op id used in ``NB201Table.ops``."""

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""Cell edges as ``(to, from)`` node pairs, in arch-string order."""

DATASETS: dict[str, dict[str, str]] = {
    # search: 12-epoch validation accuracy (the cheap NB201 search signal);
    # test: 200-epoch test accuracy (what papers report). All in %.
    "cifar10": dict(search="c10valid_valid_acc_12ep", test="c10_test_acc_200ep",
                    params="params_M_c10", flops="flops_M_c10"),
    "cifar100": dict(search="c100_valid_acc_12ep", test="c100_test_acc_200ep",
                     params="params_M_c100", flops="flops_M_c100"),
    "imagenet16": dict(search="in16_valid_acc_12ep", test="in16_test_acc_200ep",
                       params="params_M_in16", flops="flops_M_in16"),
}
"""Per-dataset column names for the usual search/test/params/FLOPs roles."""

LATENCY_DEVICES: tuple[str, ...] = (
    # HELP (GPUs at batch 1/32/256, Xeon CPUs, phones in integer ms)
    *(f"{gpu}_bs{bs}_ms" for gpu in ("1080ti", "2080ti", "titanx", "titanxp", "titan_rtx")
      for bs in (1, 32, 256)),
    "gold_6226_ms", "gold_6240_ms", "silver_4114_ms", "silver_4210r_ms",
    "pixel2_ms", "essential_ph_1_ms", "samsung_a50_ms", "samsung_s7_ms",
    # BRP-NAS/Eagle desktop CPU (NaN for degenerate cells)
    "i7_7820x_eagle_ms",
    # HW-NAS-Bench, CIFAR-10 input
    "raspi4_latency_ms", "pixel3_latency_ms", "eyeriss_latency_ms", "fpga_latency_ms",
)
"""Latency columns (milliseconds); relative costs, see NB201_LICENSE.md."""

Arch = Union[str, Sequence[int], Sequence[str], np.ndarray]
"""An architecture: an NB201 string, or six op ids or op names in edge order."""

_N_NODES = 4
_N_EDGES = len(EDGES)
_CODE_WEIGHTS = 5 ** np.arange(_N_EDGES - 1, -1, -1)  # base-5 code, first edge most significant


def _check_ids(op_ids) -> tuple[int, ...]:
    """Validate six op ids (ints) or op names; return them as a tuple of ints."""
    if isinstance(op_ids, str):
        raise TypeError("expected a sequence of 6 op ids, got a string (use str_to_ops)")
    ids = list(op_ids)
    if len(ids) != _N_EDGES:
        raise ValueError(f"an NB201 cell has {_N_EDGES} edges, got {len(ids)} ops")
    out = []
    for k, op in enumerate(ids):
        if isinstance(op, str):
            if op not in OPS:
                raise ValueError(f"unknown op {op!r} on edge {k}; expected one of {OPS}")
            out.append(OPS.index(op))
            continue
        try:
            i = int(op)
        except (TypeError, ValueError):
            raise ValueError(f"op on edge {k} must be an int id or name, got {op!r}") from None
        if i != op or not 0 <= i < len(OPS):
            raise ValueError(f"op id on edge {k} must be an int in 0..{len(OPS) - 1}, got {op!r}")
        out.append(i)
    return tuple(out)


def arch_to_str(op_ids) -> str:
    """Six op ids (or names), edge order, -> ``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"``."""
    return cell_string(_N_NODES, [OPS[i] for i in _check_ids(op_ids)])


def str_to_ops(s: str) -> tuple[int, ...]:
    """Parse an NB201 arch string into six op ids (edge order).

    Only the canonical form is accepted (what ``arch_to_str`` writes; surrounding
    whitespace is ignored). Raises ``ValueError`` with a one-line message otherwise.
    """
    if not isinstance(s, str):
        raise TypeError(f"expected an NB201 arch string, got {type(s).__name__}")
    if len(s.strip().split("+")) != _N_NODES - 1:
        raise ValueError(f"NB201 arch string must have {_N_NODES - 1} '+'-separated nodes, got {len(s.strip().split('+'))}: {s!r}")
    try:
        _, ops = parse_cell_string(s)
    except ValueError as exc:
        raise ValueError(f"{exc} in {s!r}") from None
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r} in {s!r}; expected one of {OPS}")
    return tuple(OPS.index(op) for op in ops)


def _to_ids(arch: Arch) -> tuple[int, ...]:
    return str_to_ops(arch) if isinstance(arch, str) else _check_ids(arch)


def index_from_ops(op_ids) -> int:
    """NB201 index of a cell given as six op ids or names (loads the table once)."""
    return NB201Table.load().index(op_ids)


class NB201Table:
    """Read-only NB201 table; get the shared instance with :meth:`load`.

    Attributes:
        n: number of architectures (15625).
        ops: ``(n, 6)`` uint8 op ids, edge order (see ``EDGES``).
        degenerate: ``(n,)`` bool; True where no non-``none`` path joins the cell
            input to its output (341 cells, chance accuracy; NaN NASWOT and i7 latency).
        columns: names of the numeric columns, in file order.

    Numeric columns are float32, except ``flops_M_c10``, ``flops_M_c100`` and
    ``naswot_v1_score`` (float64: float32 would lose printed decimals). NaN marks
    missing values. All arrays are read-only views shared by every caller.
    """

    _instance: NB201Table | None = None
    _lock = threading.Lock()
    _RESERVED = ("ops", "arch", "degenerate")

    def __init__(self, arrays: dict[str, np.ndarray]):
        """Build from a dict of arrays laid out like nb201.npz (prefer :meth:`load`)."""
        for a in arrays.values():
            a.setflags(write=False)
        names = tuple(str(x) for x in arrays["ops"])
        if names != OPS:
            raise ValueError(f"table op names {names} differ from {OPS}")
        self.ops: np.ndarray = arrays["arch"]
        self.n: int = int(self.ops.shape[0])
        self.degenerate: np.ndarray = arrays["degenerate"]
        self._cols = {k: v for k, v in arrays.items() if k not in self._RESERVED}
        self.columns: tuple[str, ...] = tuple(self._cols)
        # base-5 code of each row -> NB201 index (the NB201 order is not lexicographic)
        codes = self.ops.astype(np.int64) @ _CODE_WEIGHTS
        lookup = np.full(len(OPS) ** _N_EDGES, -1, dtype=np.int32)
        lookup[codes] = np.arange(self.n, dtype=np.int32)
        if (lookup >= 0).sum() != self.n:
            raise ValueError("table has duplicate architectures")
        lookup.setflags(write=False)
        self._code_to_index = lookup

    @classmethod
    def load(cls) -> NB201Table:
        """Load the packaged table (once per process; later calls return the same object)."""
        if cls._instance is None:
            with cls._lock:
                if cls._instance is None:
                    res = resources.files("nas") / "resources" / "nb201.npz"
                    with np.load(io.BytesIO(res.read_bytes()), allow_pickle=False) as z:
                        arrays = {k: z[k] for k in z.files}
                    cls._instance = cls(arrays)
        return cls._instance

    def column(self, name: str) -> np.ndarray:
        """The ``(n,)`` array of a numeric column (read-only)."""
        try:
            return self._cols[name]
        except KeyError:
            raise KeyError(f"unknown NB201 column {name!r}; "
                           f"available: {', '.join(self.columns)}") from None

    def index(self, arch: Arch) -> int:
        """NB201 index of a cell: an arch string, or six op ids or op names."""
        code = int(np.dot(_to_ids(arch), _CODE_WEIGHTS))
        i = int(self._code_to_index[code])
        if i < 0:  # cannot happen with the full 5**6 table
            raise KeyError(f"architecture {arch!r} is not in the table")
        return i

    def _check_i(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(f"NB201 index must be in 0..{self.n - 1}, got {i}")
        return i

    def arch_str(self, i: int) -> str:
        """Arch string of row ``i``."""
        return arch_to_str(self.ops[self._check_i(i)].tolist())

    def row(self, i: int) -> dict[str, float]:
        """All numeric columns of row ``i`` as Python floats (NaN where missing).

        Values go through the shortest repr of their stored dtype, so a float32
        ``85.8633`` comes back as the float ``85.8633``, not ``85.86329650878906``.
        """
        i = self._check_i(i)
        return {k: float(str(v[i])) for k, v in self._cols.items()}

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"NB201Table(n={self.n}, columns={len(self.columns)})"
