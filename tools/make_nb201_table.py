#!/usr/bin/env python3
"""Build ``nas/resources/nb201.npz`` from the NAS-Bench-201 CSV tables.

Maintainer tool; the package itself only reads the ``.npz`` it writes.

Usage::

    python tools/make_nb201_table.py [CSV_DIR] [--out PATH]

``CSV_DIR`` defaults to ``../shared/benchdata/nb201`` relative to the repository
root and must hold the three CSVs described in its README.md:

* ``nb201_accuracy_cost.csv``
* ``nb201_latency_devices.csv``
* ``hwnasbench_nb201_cifar10_latency.csv``

Contents of the ``.npz`` (``np.savez_compressed``, no pickled objects):

* ``ops``         -- (5,) str, op names in op-id order
* ``arch``        -- (15625, 6) uint8, op ids in arch_str edge order
                     (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)
* ``degenerate``  -- (15625,) bool
* one (15625,) float array per numeric CSV column, named as in the CSV, NaN for
  empty cells.  float32 wherever float32 reproduces every value to the decimals
  printed in the CSV; float64 otherwise (the script says which).

Before writing, the script checks that every row's arch_str is regenerated
exactly from ``arch``, that the three CSVs agree on index and arch_str, and that
the stored values round to the CSV's printed values.  Any failure aborts.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "benchdata" / "nb201"
DEFAULT_OUT = REPO / "nas" / "resources" / "nb201.npz"

CSV_FILES = (
    "nb201_accuracy_cost.csv",
    "nb201_latency_devices.csv",
    "hwnasbench_nb201_cifar10_latency.csv",
)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch_str order
N_ARCHS = 15625
RESERVED = ("ops", "arch", "degenerate")


def fail(msg: str) -> None:
    sys.exit(f"make_nb201_table: ERROR: {msg}")


def arch_to_str(op_ids) -> str:
    nodes: list[list[str]] = [[], [], []]
    for (to, frm), op in zip(EDGES, op_ids):
        nodes[to - 1].append(f"{OPS[op]}~{frm}")
    return "+".join("|" + "|".join(n) + "|" for n in nodes)


def parse_arch(s: str) -> list[int]:
    """Strict parse of a canonical arch_str (the CSV's own strings)."""
    ids = []
    for node in s.split("+"):
        for tok in node.strip("|").split("|"):
            op, _, _src = tok.partition("~")
            ids.append(OPS.index(op))
    if len(ids) != 6 or arch_to_str(ids) != s:
        raise ValueError(f"non-canonical arch_str {s!r}")
    return ids


def decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        fail(f"{path} is empty")
    header, body = rows[0], rows[1:]
    if header[:2] != ["arch_index", "arch_str"]:
        fail(f"{path.name}: first columns are {header[:2]}, expected arch_index, arch_str")
    if len(body) != N_ARCHS:
        fail(f"{path.name}: {len(body)} rows, expected {N_ARCHS}")
    for k, r in enumerate(body):
        if len(r) != len(header):
            fail(f"{path.name} row {k}: {len(r)} fields, header has {len(header)}")
        if int(r[0]) != k:
            fail(f"{path.name} row {k}: arch_index {r[0]} (rows must be in index order)")
    return header, body


def to_array(name: str, cells: list[str]) -> np.ndarray:
    """Smallest float dtype (float32, else float64) that keeps every printed value."""
    if any(c.strip().lower() in ("nan", "inf", "-inf") for c in cells):
        fail(f"column {name}: literal nan/inf in the CSV (only empty cells are expected)")
    present = [c for c in cells if c != ""]
    if not present:
        fail(f"column {name} is empty")
    dec = max(decimals(c) for c in present)
    exact = np.array([float(c) if c else np.nan for c in cells], dtype=np.float64)
    mask = ~np.isnan(exact)
    for dtype in (np.float32, np.float64):
        arr = exact.astype(dtype)
        back = arr[mask].astype(np.float64)
        if np.array_equal(np.round(back, dec), np.round(exact[mask], dec)):
            break
    else:
        fail(f"column {name}: no float dtype keeps {dec} decimals")
    # Independent exact check via Decimal: the stored value, rounded to the
    # cell's own printed decimals, must equal the printed value.
    for c, v in zip(cells, arr.astype(np.float64)):
        if c == "":
            if not np.isnan(v):
                fail(f"column {name}: empty cell did not become NaN")
            continue
        d = Decimal(c)
        q = Decimal(1).scaleb(-decimals(c))
        if Decimal(float(v)).quantize(q) != d.quantize(q):
            fail(f"column {name}: {c} stored as {float(v)!r} ({arr.dtype})")
    return arr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", type=Path, default=DEFAULT_SRC,
                    help=f"directory with the three CSVs (default {DEFAULT_SRC})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = ap.parse_args(argv)

    arrays: dict[str, np.ndarray] = {"ops": np.array(OPS)}
    arch_strs: list[str] | None = None
    for fname in CSV_FILES:
        path = args.src / fname
        if not path.is_file():
            fail(f"missing {path}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"reading {path}  sha256[:16]={digest}")
        header, body = read_csv(path)
        strs = [r[1] for r in body]
        if arch_strs is None:
            arch_strs = strs
            try:
                arch = np.array([parse_arch(s) for s in strs], dtype=np.uint8)
            except ValueError as e:
                fail(f"{fname}: {e}")
            regen = [arch_to_str(row) for row in arch.tolist()]
            bad = [k for k, (a, b) in enumerate(zip(regen, strs)) if a != b]
            if bad:
                fail(f"{len(bad)} arch strings not regenerated from arch, first at {bad[0]}")
            codes = arch.astype(np.int64) @ (5 ** np.arange(5, -1, -1))
            if len(np.unique(codes)) != N_ARCHS:
                fail("arch rows are not all distinct")
            arrays["arch"] = arch
        elif strs != arch_strs:
            fail(f"{fname}: arch_str column differs from {CSV_FILES[0]}")

        for j, name in enumerate(header[2:], start=2):
            cells = [r[j] for r in body]
            if name in arrays:
                fail(f"duplicate column name {name}")
            if name == "degenerate":
                if set(cells) - {"0", "1"}:
                    fail("degenerate column is not 0/1")
                arrays[name] = np.array([c == "1" for c in cells], dtype=bool)
                continue
            arrays[name] = arr = to_array(name, cells)
            if arr.dtype != np.float32:
                print(f"  note: {name} stored as {arr.dtype} (float32 loses printed decimals)")

    missing = [k for k in RESERVED if k not in arrays]
    if missing:
        fail(f"missing {missing}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)

    # Re-read what was written and compare bit for bit.
    with np.load(args.out, allow_pickle=False) as z:
        if list(z.files) != list(arrays):
            fail("written file has different keys")
        for k, v in arrays.items():
            w = z[k]
            if w.dtype != v.dtype or not np.array_equal(w, v, equal_nan=w.dtype.kind == "f"):
                fail(f"{k} differs after reload")
    n_cols = len(arrays) - len(RESERVED)
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {n_cols} numeric columns, {size:,} bytes ({size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
