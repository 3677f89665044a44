"""Multi-fidelity schedulers: how many epochs each candidate gets (ASHA, Hyperband).

The strategy proposes what to try; the scheduler decides how far to train it. Training runs in
rungs of a ladder of epochs, `R, R*eta, R*eta^2, ...` up to the maximum epochs (Li et al. 2018,
"Massively parallel hyperparameter tuning", ASHA; Li et al. 2017, Hyperband):

- ASHA: a candidate that finished rung k is promoted to rung k+1 as soon as it ranks in the top
  `floor(n / eta)` of the `n` results recorded at rung k (and was not promoted before), so no
  worker waits for a rung to fill. When a worker is free the highest promotable rung goes first;
  with nothing to promote a new candidate starts.
- Hyperband: several brackets of ASHA, bracket b starting at rung b of the ladder; candidates are
  dealt to brackets in Hyperband's proportions (most to the most aggressive bracket), in blocks,
  in the order they start.

The ranking of a rung (`rank_rung`) is a pure function of the results recorded there:

- one objective: by accuracy at that rung, higher first; ties by candidate id (earlier first);
- several objectives: non-dominated sorting (Deb et al. 2002) on (accuracy at that rung, the
  cheap objectives: parameters, FLOPs, latency, which are exact before training), then within a
  front by crowding distance (larger first: the rung keeps the front's spread), then accuracy,
  then id; unlike Syne Tune's MOASHA, the sort position is the rank, never used as a score;
- constraint violators come after every feasible result (by violation, smaller first, then id),
  failed ones last (by id). Neither is ever promoted.

What is inside the cut (`in_cut`, what ASHA may promote): with one objective the top
`floor(n / eta)` of the ranking. With several, whole fronts: the best fronts while together they
hold at most `floor(n / eta)` results. A front the cut would split waits until the rung has grown
past it (or later results push it back); only a first front wider than the whole cut is split,
by its ranking (crowding), so that a rung always sends on its best. Why not split every front by
crowding, as NSGA-II cuts its population: ASHA's promotions are never taken back, and crowding
within a front is recomputed with every arrival (a neighbour that joins or leaves the front moves
it), so a result inside the split at one moment and outside at the next has gone on all the same.
In 60 s runs of two seeds side by side (mlp/digits, accuracy and parameters) splitting sent
0.45-0.56 of the results at rungs 1, 3 and 9 epochs on, whole fronts 0.41-0.51
(`benchmarks/promotion_excess.py` on synthetic rungs: 0.455 against 0.377). Whole fronts
are also the Pareto order's own statement of "top 1/eta": apart from a wide first front, a result
is inside exactly when it is in the top `floor(n / eta)` under every ordering of the fronts' members.

Everything here is plain data in, plain data out: the driver derives every decision from the
rung rows it stored, so a resumed run takes the same decisions as one that never stopped.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import pareto
from .errors import UsageError

SCHEDULERS = ("none", "asha", "hyperband")
HELD_CHECKPOINT_BYTES = 256 * 2**20  # rung-end checkpoints kept in memory for promotions (`ScheduledSearch._hold`)


# -- the ladder ---------------------------------------------------------------------------------
def ladder(min_epochs: int, eta: int, max_epochs: int, fidelities: Sequence[int] | None = None) -> tuple[int, ...]:
    """Rung epochs `R, R*eta, ...` below `max_epochs`, then `max_epochs` itself.

    With `fidelities` (an evaluator that only knows some epoch counts, such as the NAS-Bench-201
    table's 12 and 200), the rungs are those fidelities within [min_epochs, max_epochs]."""
    check_settings(min_epochs, eta, max_epochs)
    if fidelities is not None:
        have = sorted({int(f) for f in fidelities if min_epochs <= f <= max_epochs})
        if not have:
            raise UsageError(f"the evaluator serves only {', '.join(map(str, sorted(fidelities)))} epochs; "
                             f"none lies in --min-epochs {min_epochs} .. max epochs {max_epochs}")
        return tuple(have)
    rungs = []
    r = min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    rungs.append(max_epochs)
    return tuple(rungs)


def check_settings(min_epochs: int, eta: int, max_epochs: int | None = None) -> None:
    """UsageError naming the setting when the ladder's settings are not usable."""
    for name, value in (("min_epochs", min_epochs), ("max_epochs", max_epochs)):
        if value is None and name == "max_epochs":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(eta, int) or isinstance(eta, bool) or eta < 2:
        raise UsageError(f"eta must be an integer >= 2, got {eta!r}")
    if max_epochs is not None and min_epochs > max_epochs:
        raise UsageError(f"min_epochs {min_epochs} is more than the maximum epochs {max_epochs}")


def brackets(rungs: Sequence[int], kind: str) -> list[tuple[int, ...]]:
    """The rung ladders of the brackets: one (the whole ladder) for ASHA, `len(rungs)` for
    Hyperband (bracket b starts at rung b)."""
    if kind == "asha":
        return [tuple(rungs)]
    if kind == "hyperband":
        return [tuple(rungs[b:]) for b in range(len(rungs))]
    raise UsageError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {kind!r}")


def bracket_sizes(n_brackets: int, eta: int) -> list[int]:
    """Hyperband's number of starting candidates per bracket, most aggressive first:
    `ceil((s_max + 1) / (s + 1) * eta^s)` with `s = s_max - b`."""
    s_max = n_brackets - 1
    return [math.ceil((s_max + 1) * eta ** (s_max - b) / (s_max - b + 1)) for b in range(n_brackets)]


def bracket_of(index: int, n_brackets: int, eta: int) -> int:
    """The bracket of the `index`-th candidate started (0-based): Hyperband's brackets one after
    the other, each with its size, repeated."""
    if n_brackets == 1:
        return 0
    sizes = bracket_sizes(n_brackets, eta)
    i = index % sum(sizes)
    for b, size in enumerate(sizes):
        if i < size:
            return b
        i -= size
    raise AssertionError("unreachable")


# -- ranking a rung ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RungResult:
    """One candidate's result at one rung, as the ranking sees it."""

    cid: int
    accuracy: float | None  # validation accuracy at this rung (maximised); None: the rung failed
    cheap: tuple[float, ...] = ()  # the exact objectives, minimised (empty for one objective)
    violation: float = 0.0  # 0: feasible

    @property
    def ok(self) -> bool:
        return self.accuracy is not None and math.isfinite(self.accuracy) and self.violation <= 0


def rank_rung(results: Sequence[RungResult]) -> list[int]:
    """The candidate ids of one rung, best first (the rule is in the module docstring).
    Several objectives are used when the results carry cheap objective values. The order of
    `results` does not matter (they are taken by id)."""
    results = sorted(results, key=lambda r: r.cid)
    if len({r.cid for r in results}) != len(results):
        raise ValueError("a candidate has two results at one rung")
    ok = [r for r in results if r.ok]
    violators = sorted((r for r in results if not r.ok and r.accuracy is not None and math.isfinite(r.accuracy)),
                       key=lambda r: (r.violation, r.cid))
    failed = sorted((r for r in results if r.accuracy is None or not math.isfinite(r.accuracy)), key=lambda r: r.cid)
    return _rank_ok(ok) + [r.cid for r in violators] + [r.cid for r in failed]


def _rank_ok(ok: Sequence[RungResult]) -> list[int]:
    if not ok:
        return []
    if not any(r.cheap for r in ok):
        return [r.cid for r in sorted(ok, key=lambda r: (-r.accuracy, r.cid))]  # type: ignore[operator]
    return [cid for front in _ranked_fronts(ok) for cid in front]


def _ranked_fronts(ok: Sequence[RungResult], through: int | None = None) -> list[list[int]]:
    """Feasible results with cheap objectives: their non-dominated fronts, best first, each front's
    ids by crowding distance (larger first), then accuracy, then id. With `through`, only the
    fronts up to the first that takes the count past `through` (what a cut of that size looks at;
    ordering the others is most of the work on a large rung, as most fronts lie below the cut)."""
    F = np.array([(-r.accuracy, *r.cheap) for r in ok], dtype=float)  # type: ignore[operator]
    out: list[list[int]] = []
    for front in (pareto.nondominated_sort(F) if through is None else pareto.first_fronts(F, through)):
        crowd = pareto.crowding_distance(F[front])
        order = sorted(range(len(front)), key=lambda j: (-crowd[j], -ok[front[j]].accuracy, ok[front[j]].cid))  # type: ignore[operator]
        out.append([ok[front[j]].cid for j in order])
    return out


def cutoff(n: int, eta: int) -> int:
    """How many of `n` results at a rung may be promoted: the top `floor(n / eta)`."""
    return n // eta


def in_cut(results: Sequence[RungResult], eta: int) -> list[int]:
    """Ids of a rung's results inside its cut, best first: what ASHA may promote now (the rule is
    in the module docstring). One objective: the top `floor(n / eta)` by rank that are feasible.
    Several: whole fronts, the best first, while together they hold at most `floor(n / eta)`
    results; a front the cut would split waits (none of it is inside) until the rung grows past it,
    except a first front wider than the cut, whose top `floor(n / eta)` by crowding are inside."""
    k = cutoff(len(results), eta)
    if k == 0:
        return []
    ok = sorted((r for r in results if r.ok), key=lambda r: r.cid)
    if not any(r.cheap for r in ok):
        good = {r.cid for r in ok}
        return [cid for cid in rank_rung(results)[:k] if cid in good]
    out: list[int] = []
    for f, ranked in enumerate(_ranked_fronts(ok, through=k)):
        if len(out) + len(ranked) > k:
            if f == 0:
                out = ranked[:k]
            break
        out.extend(ranked)
    return out


def promotable(results: Sequence[RungResult], eta: int, promoted: Iterable[int] = ()) -> list[int]:
    """Ids inside a rung's cut (`in_cut`) that were not promoted yet, best first (only feasible,
    finished results are ever promoted)."""
    done = set(promoted)
    return [cid for cid in in_cut(results, eta) if cid not in done]


def beats(a: RungResult, b: RungResult) -> bool:
    """True when `a` ranks above `b` at every size the rung may grow to: `a` dominates `b`
    (constraint-domination: feasible over violator, smaller violation, failed last), or for one
    objective has the higher accuracy (the earlier id on a tie)."""
    if a.cid == b.cid:
        return False
    a_bad = a.accuracy is None or not math.isfinite(a.accuracy)
    b_bad = b.accuracy is None or not math.isfinite(b.accuracy)
    if a_bad or b_bad:
        return b_bad and (not a_bad or a.cid < b.cid)
    if a.violation > 0 or b.violation > 0:
        if a.violation == 0:
            return True
        return b.violation > 0 and (a.violation, a.cid) < (b.violation, b.cid)
    if not (a.cheap or b.cheap):
        return (-a.accuracy, a.cid) < (-b.accuracy, b.cid)  # type: ignore[operator]
    return pareto.dominates(np.array((-a.accuracy, *a.cheap)), np.array((-b.accuracy, *b.cheap)))  # type: ignore[operator]


class RungView:
    """One rung's results prepared once for many questions about its members: `beaten_by(cid)` is
    `[r.cid for r in results if beats(r, me)]` (in the order of `results`) with one vectorised
    pass instead of a Python call per pair, and `standing(cid)` is `standing(cid, results, eta)`
    with the rung ranked once. Explaining or pruning a rung of n results is then O(n^2) numpy
    work rather than O(n^3) Python (1,500 candidates: seconds, not minutes)."""

    def __init__(self, results: Sequence[RungResult], eta: int) -> None:
        self.results = list(results)
        self.eta = eta
        self._order: list[int] | None = None
        self._pos: dict[int, int] = {}
        self._fronts: dict[int, tuple[int, int]] | None = None
        self._index = {r.cid: i for i, r in enumerate(self.results)}
        rs = self.results
        self.cid = np.array([r.cid for r in rs], dtype=np.int64)
        self.bad = np.array([r.accuracy is None or not math.isfinite(r.accuracy) for r in rs], dtype=bool)
        self.viol = np.array([float(r.violation) for r in rs], dtype=float)
        self.acc = np.array([float(r.accuracy) if r.accuracy is not None and math.isfinite(r.accuracy) else 0.0 for r in rs], dtype=float)
        width = max((len(r.cheap) for r in rs if not (r.accuracy is None or not math.isfinite(r.accuracy))), default=0)
        self.F = np.array([(-a, *(r.cheap if len(r.cheap) == width else (0.0,) * width)) for a, r in zip(self.acc, rs)],
                          dtype=float).reshape(len(rs), width + 1)
        self.cheap = np.array([bool(r.cheap) for r in rs], dtype=bool)

    def order(self) -> list[int]:
        if self._order is None:
            self._order = rank_rung(self.results)
            self._pos = {c: i for i, c in enumerate(self._order)}
        return self._order

    def _mask(self, cid: int) -> np.ndarray:
        """Which results beat candidate `cid` (`beats(r, me)` for every r)."""
        j = self._index[cid]
        others = self.cid != cid
        if self.bad[j]:
            return others & (~self.bad | (self.cid < cid))
        ok = others & ~self.bad
        v = self.viol[j]
        if v > 0:  # me a violator: every feasible one, and violators with a smaller (violation, id)
            return ok & ((self.viol == 0) | (self.viol < v) | ((self.viol == v) & (self.cid < cid)))
        out = np.zeros(len(self.results), dtype=bool)  # a feasible me: no violator beats it
        plain = ok & (self.viol <= 0)
        both_plain = plain & ~self.cheap & (not self.cheap[j])
        acc = self.acc[j]
        out |= both_plain & ((self.acc > acc) | ((self.acc == acc) & (self.cid < cid)))
        dom = plain & ~both_plain
        if dom.any():
            F, f = self.F, self.F[j]
            nan = np.isnan(F).any(axis=1) | bool(np.isnan(f).any())
            out |= dom & ~nan & (F <= f).all(axis=1) & (F < f).any(axis=1)
        return out

    def beaten_by(self, cid: int) -> list[int]:
        return [int(c) for c in self.cid[self._mask(cid)]]

    def n_beating(self, cid: int) -> int:
        return int(self._mask(cid).sum())

    def standing(self, cid: int) -> dict[str, object]:
        order = self.order()
        if cid not in self._pos:
            raise ValueError(f"candidate {cid} has no result at this rung")
        pos = self._pos[cid]
        out = {"rank": pos + 1, "of": len(order), "cutoff": cutoff(len(order), self.eta), "above": order[:pos],
               "beaten_by": self.beaten_by(cid)}
        if self._fronts is None:
            self._fronts = front_counts(self.results)
        if cid in self._fronts:
            out["front"], out["through_front"] = self._fronts[cid]
        return out

    def never_promotable(self, cid: int, most: float) -> bool:
        me = self.results[self._index[cid]]
        if not me.ok:
            return True
        if math.isinf(most):
            return False
        return self.n_beating(cid) >= cutoff(int(most), self.eta)


def standing(cid: int, results: Sequence[RungResult], eta: int) -> dict[str, object]:
    """Why a candidate stands where it does at a rung: its rank (1-based) among `n`, the cutoff,
    the candidates ranked above it and those that beat it outright (`beats`); with several
    objectives also its front and how many results that front and the ones before it hold (the
    cut takes whole fronts, `in_cut`). The definition,
    pair by pair; `RungView` answers the same for a whole rung (what the driver uses)."""
    order = rank_rung(results)
    if cid not in order:
        raise ValueError(f"candidate {cid} has no result at this rung")
    pos = order.index(cid)
    me = next(r for r in results if r.cid == cid)
    out = {"rank": pos + 1, "of": len(order), "cutoff": cutoff(len(order), eta), "above": order[:pos],
           "beaten_by": [r.cid for r in results if beats(r, me)]}
    fronts = front_counts(results)
    if cid in fronts:
        out["front"], out["through_front"] = fronts[cid]
    return out


def never_promotable(cid: int, results: Sequence[RungResult], eta: int, most: float) -> bool:
    """True when the candidate cannot be promoted however the rung fills up to `most` results
    (math.inf when unbounded): failed or infeasible, or beaten outright by at least
    `floor(most / eta)` others (each of those ranks above it at every later size). The
    definition; `RungView.never_promotable` is the driver's, checked against it."""
    me = next(r for r in results if r.cid == cid)
    if not me.ok:
        return True
    if math.isinf(most):
        return False
    return sum(beats(r, me) for r in results) >= cutoff(int(most), eta)


def most_at_rungs(starts: float, n_rungs: int, eta: int) -> list[float]:
    """The most results each rung of a bracket can ever hold when at most `starts` candidates
    start in it (math.inf: unbounded)."""
    out = [starts]
    for _ in range(n_rungs - 1):
        out.append(out[-1] if math.isinf(out[-1]) else float(cutoff(int(out[-1]), eta)))
    return out


# -- the next job ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RungRow:
    """A stored (candidate, rung) row as the scheduler needs it."""

    cid: int
    bracket: int
    rung: int  # index into the bracket's ladder
    state: str  # running | complete | failed
    result: RungResult | None = None  # when complete or failed
    final: bool = False  # the candidate stopped for a reason of its own (early stopping, max epochs)


def next_promotion(rows: Sequence[Any], ladders: Sequence[Sequence[int]], eta: int,
                   cache: dict[tuple[int, int], tuple[tuple[int, int], list[int]]] | None = None) -> tuple[int, int, int] | None:
    """ASHA's choice for a free worker: (candidate id, bracket, rung to train to) of the best
    promotable candidate of the highest rung that has one, over all brackets, or None.
    Brackets are looked at from the least aggressive, so that with equal rungs longer training
    that was started goes first. `rows` are `RungRow`s or `StoredRung`s. With `cache` (a dict the
    caller keeps between calls) each (bracket, rung)'s promotable list is kept until that rung
    gains a finished result or the next rung a row, the only changes that move it (a finished
    row's result and `final` never change), so the driver's every job ranks only the rung that
    changed, not every rung of the run."""
    by: dict[tuple[int, int], list[Any]] = {}
    for row in rows:
        by.setdefault((row.bracket, row.rung), []).append(row)
    best: tuple[tuple[int, int], tuple[int, int, int]] | None = None
    for (b, k), group in sorted(by.items()):
        if k + 1 >= len(ladders[b]):
            continue
        finished = [r for r in group if r.state in ("complete", "failed")]
        onward = by.get((b, k + 1), [])
        key = (len(finished), len(onward))
        hit = cache.get((b, k)) if cache is not None else None
        if hit is not None and hit[0] == key:
            cand = hit[1]
        else:
            results = [r.result if isinstance(r, RungRow) else r.as_row().result for r in finished]
            promoted = {r.cid for r in onward} | {r.cid for r in finished if r.final}
            cand = promotable([x for x in results if x is not None], eta, promoted)
            if cache is not None:
                cache[(b, k)] = (key, cand)
        if cand:
            order = (-(b + k), -b)  # the highest absolute rung of the ladder first
            if best is None or order < best[0]:
                best = (order, (cand[0], b, k + 1))
    return None if best is None else best[1]


# -- the rung rows of a run -------------------------------------------------------------------
# One row per (candidate, rung): what the scheduler decides from. A row is written `running` when
# the rung starts (a promotion is that row), and finished with its metrics when the rung ends;
# `paused` when a wall-clock budget stopped it at an epoch boundary (its partial checkpoint
# resumes it). Checkpoints live in <run>/checkpoints/<id>-<rung>.pt (the end of that rung) and
# <id>-<rung>.partial.pt (a paused rung), written to a temporary name and renamed.
_RUNGS = ("CREATE TABLE IF NOT EXISTS rungs (cid INTEGER NOT NULL, rung INTEGER NOT NULL, bracket INTEGER NOT NULL,"
          " epochs INTEGER NOT NULL, state TEXT NOT NULL, accuracy REAL, cheap TEXT, violation REAL NOT NULL DEFAULT 0,"
          " final INTEGER NOT NULL DEFAULT 0, metrics TEXT, why TEXT, started REAL, finished REAL,"
          " PRIMARY KEY (cid, rung)) WITHOUT ROWID")


@dataclass
class StoredRung:
    """A rung row as stored."""

    cid: int
    rung: int
    bracket: int
    epochs: int
    state: str  # running | paused | complete | failed
    accuracy: float | None = None
    cheap: tuple[float, ...] = ()
    violation: float = 0.0
    final: bool = False
    metrics: dict | None = None
    why: dict | None = None
    started: float | None = None
    finished: float | None = None

    def as_row(self) -> RungRow:
        done = self.state in ("complete", "failed")
        result = RungResult(self.cid, self.accuracy if self.state == "complete" else None, self.cheap, self.violation) if done else None
        return RungRow(self.cid, self.bracket, self.rung, self.state if done else "running", result, self.final)


def read_rungs(store: Any) -> list[StoredRung]:
    """Every rung row of a run, by candidate then rung ([] for a run without a scheduler)."""
    import json
    import sqlite3

    try:
        rows = store.conn.execute("SELECT * FROM rungs ORDER BY cid, rung").fetchall()
    except sqlite3.OperationalError:
        return []
    return [StoredRung(r["cid"], r["rung"], r["bracket"], r["epochs"], r["state"], r["accuracy"],
                       tuple(json.loads(r["cheap"])) if r["cheap"] else (), r["violation"], bool(r["final"]),
                       json.loads(r["metrics"]) if r["metrics"] else None, json.loads(r["why"]) if r["why"] else None,
                       r["started"], r["finished"]) for r in rows]


def write_rung(store: Any, row: StoredRung) -> None:
    """Insert or replace one rung row (in the store's current transaction: committed with the
    candidate's own change)."""
    import json

    with store._tx():
        store.conn.execute(_RUNGS)
        store.conn.execute(
            "INSERT OR REPLACE INTO rungs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.cid, row.rung, row.bracket, row.epochs, row.state, row.accuracy, json.dumps(list(row.cheap)) if row.cheap else None,
             float(row.violation), int(row.final), json.dumps(row.metrics, default=str) if row.metrics is not None else None,
             json.dumps(row.why, default=str) if row.why is not None else None, row.started, row.finished))


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors (and arrays) in a nested checkpoint, roughly what holding it costs."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values()) + 64
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj) + 64
    return 64


def checkpoint_path(run: Any, cid: int, rung: int, partial: bool = False) -> Any:
    from pathlib import Path

    return Path(run) / "checkpoints" / f"{cid}-{rung}{'.partial' if partial else ''}.pt"


def save_checkpoint(run: Any, cid: int, rung: int, checkpoint: Mapping[str, Any], partial: bool = False) -> None:
    import torch

    from .atomic import write_with

    write_with(checkpoint_path(run, cid, rung, partial), lambda fh: torch.save(dict(checkpoint), fh))


def load_checkpoint(run: Any, cid: int, rung: int, partial: bool = False) -> dict[str, Any] | None:
    """A stored checkpoint, or None when there is none (deleted as unpromotable, or never written:
    the rung is then trained from the start, which gives the same result)."""
    import torch

    path = checkpoint_path(run, cid, rung, partial)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def stored_checkpoints(run: Any) -> set[tuple[int, int]]:
    """(candidate id, rung) of every rung-end checkpoint in `run` (partial ones left out)."""
    from pathlib import Path

    folder = Path(run) / "checkpoints"
    out: set[tuple[int, int]] = set()
    for file in folder.glob("*.pt") if folder.exists() else ():
        stem = file.name[: -len(".pt")]
        cid, _, rung = stem.partition("-")
        if cid.isdigit() and rung.isdigit():
            out.add((int(cid), int(rung)))
    return out


def delete_checkpoints(run: Any, cid: int, rungs: Iterable[int] | None = None) -> int:
    from pathlib import Path

    folder = Path(run) / "checkpoints"
    gone = 0
    if rungs is not None:  # the files by name: no listing of a folder that may hold thousands
        for rung in set(rungs):
            for file in (checkpoint_path(run, cid, rung), checkpoint_path(run, cid, rung, partial=True)):
                try:
                    file.unlink()
                    gone += 1
                except FileNotFoundError:
                    pass
        return gone
    for file in folder.glob(f"{cid}-*.pt") if folder.exists() else ():  # every rung
        file.unlink(missing_ok=True)
        gone += 1
    return gone


# -- the scheduled search loop ------------------------------------------------------------------
def max_epochs_for(train: Mapping[str, Any], space: Any, evaluator: Any) -> int:
    """The top rung: `--epochs` (train max_epochs) when given, else the most the space trains
    (its `train.epochs`, the largest value of that decision), else the trainer's default; an
    evaluator with fixed fidelities (the NB201 table) tops out at its largest."""
    fids = getattr(evaluator, "fidelities", None)
    cap = train.get("max_epochs")
    if fids:
        return min(int(cap), max(fids)) if cap else int(max(fids))
    if cap:
        return int(cap)
    raw = (getattr(space, "raw", None) or {}).get("train", {}) or {}
    epochs = raw.get("epochs")
    values: list[Any] = []
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool):
        values = [epochs]
    elif isinstance(epochs, list):
        values = epochs
    elif isinstance(epochs, dict):
        for key in ("choice", "int"):
            if isinstance(epochs.get(key), list):
                values = epochs[key]
    nums = [int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums:
        return max(nums)
    from .train import TrainConfig

    return TrainConfig().epochs


class ScheduledSearch:
    """The driver's loop under a scheduler (`--scheduler asha|hyperband`), for a `nas.search.Search`.

    A job is one rung of one candidate. A free worker takes, in this order: a rung that was
    running or paused when the last session stopped (again, from its checkpoint), ASHA's best
    promotion (`next_promotion`), a new candidate from the strategy (while the budget, which
    counts candidates started, allows). What the strategy is told: once per candidate, when its
    first rung ends, the objectives with the accuracy at that rung (the metrics say `rung`,
    `rung_epochs` and `bracket`), so every candidate of a bracket is told at the same fidelity and
    no strategy hears of one id twice; later rungs update the run's record of the candidate (its
    metrics, objectives, weights, the front), not the strategy."""

    def __init__(self, search: Any) -> None:
        cfg = search.config
        self.s = search
        self.store = search.store
        self.eta = int(cfg.eta)
        import inspect

        try:
            params = inspect.signature(search.evaluator.evaluate).parameters
        except (TypeError, ValueError, AttributeError):
            params = {}  # type: ignore[assignment]
        if "epochs" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise UsageError(f"--scheduler {cfg.scheduler} needs an evaluator that trains for a given number of epochs (evaluate(..., epochs=)); this one does not")
        names = [o.name for o in search.objectives]
        if "accuracy" not in names:
            raise UsageError(f"--scheduler {cfg.scheduler} ranks by accuracy; the objectives {', '.join(names)} do not include it")
        self.cheap = [o for o in search.objectives if o.name != "accuracy"]
        self.trains = getattr(search.evaluator, "fidelities", None) is None  # a trainer: no checkpoint back means training ended
        top = max_epochs_for(cfg.train, search.space, search.evaluator)
        self.rungs = ladder(int(cfg.min_epochs), self.eta, top, getattr(search.evaluator, "fidelities", None))
        self.ladders = brackets(self.rungs, cfg.scheduler)
        self.rows: dict[tuple[int, int], StoredRung] = {(r.cid, r.rung): r for r in read_rungs(self.store)}
        self._checkpoints = stored_checkpoints(self.store.path)  # (cid, rung) of the rung-end checkpoints on disk
        self._held: dict[tuple[int, int], tuple[dict[str, Any], int]] = {}  # the newest of them, as saved (`_hold`)
        self._held_bytes = 0
        self._promotable: dict[tuple[int, int], tuple[tuple[int, int], list[int]]] = {}  # next_promotion's cache

    # -- what the rows say ------------------------------------------------------------------------
    def started(self) -> int:
        """Candidates started (what the budget counts): those with a first rung."""
        return len({cid for cid, rung in self.rows if rung == 0})

    def most(self, bracket: int) -> list[float]:
        budget = self.s.config.budget
        if budget is None:
            starts = math.inf
        else:
            starts = float(sum(1 for i in range(budget) if bracket_of(i, len(self.ladders), self.eta) == bracket))
        return most_at_rungs(starts, len(self.ladders[bracket]), self.eta)

    def _results(self, bracket: int, rung: int) -> list[RungResult]:
        return [r.as_row().result for r in self.rows.values() if r.bracket == bracket and r.rung == rung and r.state in ("complete", "failed")]  # type: ignore[misc]

    def prune(self, group: tuple[int, int] | None = None) -> None:
        """Delete the checkpoints of candidates that can no longer be promoted (of one
        (bracket, rung) group, or all). Only rows known to have a checkpoint are looked at, and
        each group's results are prepared once (`RungView`)."""
        views: dict[tuple[int, int], RungView] = {}
        for cid, rung in sorted(self._checkpoints):
            r = self.rows.get((cid, rung))
            if r is None or (group is not None and (r.bracket, r.rung) != group):
                continue
            if r.state != "complete" or (r.cid, r.rung + 1) in self.rows:
                continue
            if r.final or r.rung + 1 >= len(self.ladders[r.bracket]):
                self._delete_checkpoints(r.cid, [r.rung])
                continue
            most = self.most(r.bracket)[r.rung]
            if not r.as_row().result.ok:  # type: ignore[union-attr]
                self._delete_checkpoints(r.cid, [r.rung])  # infeasible: never promoted
                continue
            if math.isinf(most):
                continue  # an unbounded rung: anyone feasible may still be promoted
            if (r.bracket, r.rung) not in views:
                views[(r.bracket, r.rung)] = RungView(self._results(r.bracket, r.rung), self.eta)
            if views[(r.bracket, r.rung)].never_promotable(r.cid, most):
                self._delete_checkpoints(r.cid, [r.rung])

    def _delete_checkpoints(self, cid: int, rungs: Iterable[int]) -> None:
        rungs = list(rungs)
        delete_checkpoints(self.store.path, cid, rungs)
        self._checkpoints.difference_update((cid, k) for k in rungs)
        for k in rungs:
            self._unhold((cid, k))

    # -- checkpoints held in memory ----------------------------------------------------------------
    # A rung-end checkpoint is written to disk (what a resumed session reads) and the object saved
    # is also held here, up to HELD_CHECKPOINT_BYTES (oldest let go first): a promotion in this
    # session takes it from memory instead of unpickling the file it just wrote (2.5-4 ms of every
    # promotion of a small mlp on this CPU, whose one-epoch rungs train in tens of milliseconds).
    # A held checkpoint is handed out once (training resumed from it updates the optimizer's
    # moments in place); a second load reads the file.
    def _hold(self, key: tuple[int, int], checkpoint: Mapping[str, Any]) -> None:
        self._unhold(key)
        size = _nbytes(checkpoint)
        if size > HELD_CHECKPOINT_BYTES:
            return
        self._held[key] = (dict(checkpoint), size)
        self._held_bytes += size
        while self._held_bytes > HELD_CHECKPOINT_BYTES:
            self._unhold(next(iter(self._held)))

    def _unhold(self, key: tuple[int, int]) -> dict[str, Any] | None:
        got = self._held.pop(key, None)
        if got is None:
            return None
        self._held_bytes -= got[1]
        return got[0]

    def _rung_checkpoint(self, cid: int, rung: int) -> dict[str, Any] | None:
        """The end-of-rung checkpoint of (`cid`, `rung`): held in memory, else from disk."""
        held = self._unhold((cid, rung))
        return held if held is not None else load_checkpoint(self.store.path, cid, rung)

    def explain(self) -> None:
        """Store, on each candidate's last finished rung, why it went no further (each rung's
        results prepared once: `RungView`)."""
        last: dict[int, StoredRung] = {}
        for r in self.rows.values():
            if r.state in ("complete", "failed") and (r.cid not in last or r.rung > last[r.cid].rung):
                last[r.cid] = r
        groups: dict[tuple[int, int], list[RungResult]] = {}
        for r in self.rows.values():
            if r.state in ("complete", "failed"):
                groups.setdefault((r.bracket, r.rung), []).append(r.as_row().result)  # type: ignore[arg-type]
        views: dict[tuple[int, int], RungView] = {}
        for r in last.values():
            if (r.cid, r.rung + 1) in self.rows:
                continue
            g = (r.bracket, r.rung)
            if g not in views:
                views[g] = RungView(groups[g], self.eta)
            why = explain_row(r, views[g], len(self.ladders[r.bracket]))
            if why != r.why:
                r.why = why
                write_rung(self.store, r)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> Any:
        import signal
        import threading

        from .executors import make_executor
        from .search import COMMIT_INTERVAL, SearchInterrupted, _on_sigterm, _Terminated, seed_for
        from .store import Candidate

        s, cfg, store = self.s, self.s.config, self.store
        s._t0 = time.monotonic()
        s._elapsed0 = float(store.meta("elapsed", 0.0))
        stop = "budget"
        failures_in_row = 0
        last_error: str | None = None
        summary_every = max(5, int(s.strategy.options.get("population", 10)))
        # rungs that were running or paused when the last session stopped: run again first
        again = sorted((r for r in self.rows.values() if r.state in ("running", "paused")), key=lambda r: (r.started or 0, r.cid))
        fresh = [c for c in store.candidates(["queued", "running"]) if (c.id, 0) not in self.rows]  # asked, never started
        cands = {c.id: c for c in store.candidates()}
        cands.update({c.id: c for c in s._first.values()})  # the driver's own records: one object per candidate
        executor = make_executor(cfg, s)
        inflight: dict[int, tuple[Candidate, Any, StoredRung, float]] = {}
        sigterm = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if sigterm else None
        store.set_metas({"stopped": None, "elapsed": s._elapsed0, "elapsed_at": time.time(), "writer_pid": os.getpid(),
                         "ladders": [list(b) for b in self.ladders]})  # what status and the report show
        store.batch = True
        s._open_bar()
        try:
            while True:
                while len(inflight) < executor.capacity:
                    if s._out_of_time():
                        stop = "time budget"
                        break
                    job = self._next_job(again, fresh, cands, inflight)
                    if job is None:
                        break
                    if job == "exhausted":
                        stop = "exhausted"
                        break
                    cand, arch, row = job
                    if row.rung == 0:  # a promoted candidate stays on record as of its last rung while the next runs
                        store.start(cand.id, executor.worker_name())
                    row.state = "running"
                    write_rung(store, row)
                    s._maybe_commit(force=s._slow)  # a slow rung is seen running (fast ones are committed in groups, as the driver does)
                    checkpoint = load_checkpoint(store.path, cand.id, row.rung, partial=True)  # a rung paused mid-way
                    if checkpoint is None and row.rung > 0:
                        checkpoint = self._rung_checkpoint(cand.id, row.rung - 1)
                    inflight[cand.id] = (cand, arch, row, time.monotonic(), checkpoint is not None)
                    deadline = None
                    if cfg.time_budget is not None:
                        deadline = time.time() + max(0.0, cfg.time_budget - s._elapsed())
                    executor.submit(cand.id, s.space, arch, seed_for(cfg.seed, cand.key), s.constraints,
                                    epochs=row.epochs, checkpoint=checkpoint, deadline=deadline)
                if not inflight:
                    break
                s._maybe_commit(force=s._slow)
                for cid, ev in executor.wait():
                    cand, arch, row, submitted, resumed = inflight.pop(cid)
                    s._slow = time.monotonic() - submitted >= COMMIT_INTERVAL
                    self._finish(cand, arch, row, ev)
                    # A fast first rung trained from the start is committed with the next group (at
                    # most COMMIT_INTERVAL later, as the driver's fast evaluations are): a crash
                    # before then leaves only files no committed row names (its weights, its
                    # checkpoint), and the resumed run trains it again from the strategy state of
                    # the last commit, to the same result (so the checkpoints its result made
                    # unpromotable, deleted by `prune`, are unpromotable again before any promotion
                    # could want them). A rung that resumed from a checkpoint,
                    # or replaced a candidate's weights, or paused, is committed at once: its
                    # checkpoint and weights now differ from what the last commit names.
                    later = row.rung > 0 or resumed or row.state == "paused"
                    s._maybe_commit(force=s._slow or (later and (ev.state is not None or ev.checkpoint is not None)))
                    failures_in_row = failures_in_row + 1 if ev.status == "failed" else 0
                    last_error = ev.error if ev.status == "failed" else last_error
                    if row.rung == 0 and row.state != "paused":
                        s._advance(ev, cand, summary_every)
                if failures_in_row >= cfg.max_failures:
                    stop = "failures"
                    s.log(f"stopping: {failures_in_row} evaluations failed in a row (last: {last_error})")
                    executor.cancel_all()
                    inflight.clear()  # their rows stay running: evaluated again on resume
                    break
            if stop == "budget":
                delete_all_checkpoints(store.path)  # nothing left to promote: every checkpoint is of an unpromotable candidate
                self._checkpoints.clear()
                self._held.clear()
                self._held_bytes = 0
            self.explain()
            s._commit()
        except KeyboardInterrupt as exc:
            executor.cancel_all()
            s._stop_here("terminated" if isinstance(exc, _Terminated) else "interrupted")
            how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
            raise SearchInterrupted(f"{how}; everything finished so far is saved in {store.path}. Resume with: nas resume {store.path}") from None
        except BaseException as exc:
            executor.cancel_all()
            store.batch = False
            store.rollback()
            s._stop_here("error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            executor.shutdown()
            store.batch = False
            if sigterm:
                signal.signal(signal.SIGTERM, old_handler)
        s._close_bar()
        if stop == "exhausted":
            s.log("stopping: the strategy keeps proposing architectures that were already evaluated (the space may be exhausted)")
        return s.finish(stop)

    def _next_job(self, again: list[StoredRung], fresh: list[Any], cands: dict[int, Any], inflight: Mapping[int, Any]) -> Any:
        from .store import Candidate

        s, cfg, store = self.s, self.s.config, self.store
        now = time.time()
        if again:
            row = again.pop(0)
            cand = cands[row.cid]
            return cand, s.space.make(cand.arch), row
        promo = next_promotion(list(self.rows.values()), self.ladders, self.eta, self._promotable)
        if promo is not None:
            cid, bracket, rung = promo
            cand = cands[cid]
            row = StoredRung(cid, rung, bracket, self.ladders[bracket][rung], "running", started=now)
            self.rows[(cid, rung)] = row
            return cand, s.space.make(cand.arch), row
        while True:
            if fresh:
                cand = fresh.pop(0)
                arch = s.space.make(cand.arch)
            else:
                if cfg.budget is not None and self.started() >= cfg.budget:
                    return None
                proposal = s._ask_new()
                if proposal is None:
                    return "exhausted"
                arch = proposal.arch
                cid = store.add(arch.key, dict(arch), generation=proposal.generation, parents=proposal.parents)
                cand = Candidate(cid, arch.key, dict(arch), "queued", proposal.generation, tuple(proposal.parents))
                cands[cid] = cand
            twin = s._first.get(cand.key)
            if twin is not None:
                s._record(cand, arch, type(self)._evaluation(twin), duplicate_of=twin.id)
                continue
            if any(c.key == cand.key for c, *_ in inflight.values()):
                fresh.insert(0, cand)  # its twin is in flight: wait for it, then answer from the store
                return None
            bracket = bracket_of(self.started(), len(self.ladders), self.eta)
            row = StoredRung(cand.id, 0, bracket, self.ladders[bracket][0], "running", started=now)
            self.rows[(cand.id, 0)] = row
            return cand, arch, row

    @staticmethod
    def _evaluation(twin: Any) -> Any:
        from .evaluators import Evaluation

        return Evaluation(twin.state, dict(twin.metrics), twin.error)

    def _finish(self, cand: Any, arch: Any, row: StoredRung, ev: Any) -> None:
        """Record one finished (or paused) rung: its row, its checkpoint, the candidate."""
        s, store = self.s, self.store
        now = time.time()
        if ev.status == "infeasible":  # broke a constraint known before training: never trained, no rung
            del self.rows[(cand.id, row.rung)]
            with store._tx():
                store.conn.execute("DELETE FROM rungs WHERE cid=? AND rung=?", (cand.id, row.rung))
            s._record(cand, arch, ev)
            return
        if ev.status == "complete" and ev.metrics.get("stop_reason") == "deadline" and ev.checkpoint is not None:
            save_checkpoint(store.path, cand.id, row.rung, ev.checkpoint, partial=True)
            row.state, row.metrics = "paused", dict(ev.metrics)
            write_rung(store, row)
            if ev.history:
                store.set_curve(cand.id, ev.history)
            return
        first = store.candidate(cand.id) if row.rung > 0 else None
        metrics = {**(first.metrics if first is not None else {}), **ev.metrics,
                   "rung": row.rung, "rung_epochs": row.epochs, "bracket": row.bracket}
        ev.metrics = metrics
        ok = ev.status == "complete"
        acc = metrics.get("val_accuracy") if ok else None
        row.state = "complete" if ok else "failed"
        row.accuracy = float(acc) if acc is not None else None
        row.cheap = tuple(objmin(o, metrics, arch) for o in self.cheap) if ok else ()
        row.violation = float(_violation(metrics, s.constraints)) if ok else 0.0
        row.final = (not ok or metrics.get("stop_reason") in ("patience", "time limit")
                     or (self.trains and ev.checkpoint is None) or int(metrics.get("epochs") or row.epochs) < row.epochs)
        row.metrics, row.finished = {k: v for k, v in metrics.items()}, now
        if ok and ev.checkpoint is not None and not row.final and row.rung + 1 < len(self.ladders[row.bracket]):
            save_checkpoint(store.path, cand.id, row.rung, ev.checkpoint)
            self._checkpoints.add((cand.id, row.rung))
            self._hold((cand.id, row.rung), ev.checkpoint)
        write_rung(store, row)
        if row.rung == 0:
            s._record(cand, arch, ev)  # tells the strategy (the one time it hears of this candidate)
        elif ok:
            self._update(cand, arch, ev)
        if ev.status == "complete":  # every rung's result, by its epochs (the guided predictor's fidelities); _record may fail it
            s.strategy.observe(s._result(cand.id, arch, ev, cand.generation, cand.parents)[0], row.epochs)
            s._touched()
        # a later rung that failed (diverged, out of memory) leaves the candidate as its last rung
        # left it; the rung row says what happened
        self._delete_checkpoints(cand.id, range(row.rung))  # superseded by this rung's
        checkpoint_path(store.path, cand.id, row.rung, partial=True).unlink(missing_ok=True)
        self.prune((row.bracket, row.rung))

    def _update(self, cand: Any, arch: Any, ev: Any) -> None:
        """A later rung's outcome on the candidate's record, without telling the strategy."""
        s, store = self.s, self.store
        _, values, violation = s._result(cand.id, arch, ev, cand.generation, cand.parents)
        state = ev.status if ev.status in ("complete", "failed") else "failed"
        keep = s.config.keep_weights != "none" and ev.state is not None
        if ev.history:
            store.set_curve(cand.id, ev.history)
        store.finish(cand.id, state, metrics=ev.metrics, objectives=values, violation=violation, error=ev.error,
                     weights=ev.state if keep else None)
        was = any(f.id == cand.id for f in s._front)
        cand.state, cand.metrics, cand.error, cand.violation, cand.objectives = state, dict(ev.metrics), ev.error, violation, values
        if not was:  # the others are as they were: the front of them with this one's new values
            s._update_front(cand)
            return
        s._front = []  # a member changed: what it dominated may be on the front now
        for c in s._first.values():
            s._update_front(c)


def objmin(objective: Any, metrics: Mapping[str, Any], arch: Any) -> float:
    v = objective.value(metrics, arch)
    v = float("nan") if v is None else float(v)
    return -v if objective.direction == "max" else v


def _violation(metrics: Mapping[str, Any], constraints: Mapping[str, float]) -> float:
    from .objectives import violation

    return violation(metrics, constraints)


def explain_row(row: StoredRung, view: RungView, n_rungs: int) -> dict[str, Any]:
    """Why a candidate stopped at this rung (`view`: the rung's results), as stored and shown."""
    if row.state == "failed":
        return {"stopped": "failed"}
    if row.rung + 1 >= n_rungs:
        return {"stopped": "top rung"}
    if row.final:
        return {"stopped": (row.metrics or {}).get("stop_reason", "training ended")}
    return {"stopped": "not promoted", **view.standing(row.cid)}


def delete_all_checkpoints(run: Any) -> None:
    import shutil
    from pathlib import Path

    shutil.rmtree(Path(run) / "checkpoints", ignore_errors=True)


# -- what `nas status` and the report show ----------------------------------------------------
def cutoff_at(results: Sequence[RungResult], eta: int) -> dict[str, Any] | None:
    """Where a rung's promotion cutoff lies now: the last candidate inside its cut (`in_cut`: the
    top `floor(n / eta)` of its `n` finished results, whole fronts with several objectives): its
    id, accuracy and, with several objectives, its non-dominated front (1-based), and how many
    are inside. With one objective a result is promoted when its accuracy ranks above that one's;
    with several, every feasible result of that front and the earlier ones is inside. None while
    nothing is inside (fewer than eta results, or none of them feasible)."""
    inside = in_cut(results, eta)
    if not inside:
        return None
    by = {r.cid: r for r in results}
    last = by[inside[-1]]
    out: dict[str, Any] = {"cid": last.cid, "accuracy": last.accuracy, "inside": len(inside)}
    fronts = front_counts(results)
    if fronts:
        out["front"] = fronts[last.cid][0]
    return out


def front_counts(results: Sequence[RungResult]) -> dict[int, tuple[int, int]]:
    """With several objectives: for each feasible result, (its front, 1-based; how many results
    its front and the fronts before it hold together). Empty with one objective."""
    ok = sorted((r for r in results if r.ok), key=lambda r: r.cid)
    if not any(r.cheap for r in ok):
        return {}
    out: dict[int, tuple[int, int]] = {}
    through = 0
    for f, front in enumerate(_ranked_fronts(ok)):
        through += len(front)
        out.update((cid, (f + 1, through)) for cid in front)
    return out


def rung_summary(rows: Sequence[StoredRung], eta: int, ladders: Sequence[Sequence[int]] | None = None) -> list[dict[str, Any]]:
    """Per (bracket, rung): its epochs, candidates that reached it, finished, running or paused,
    went on to the next rung, the promotion cutoff (the top floor(n / eta) of n finished) and
    where it lies (`cutoff_at`: the last candidate inside it). With the run's `ladders` (its meta
    `ladders`), a bracket's top rung says `top: True` and has no cutoff (nothing goes on)."""
    groups: dict[tuple[int, int], list[StoredRung]] = {}
    for r in rows:
        groups.setdefault((r.bracket, r.rung), []).append(r)
    onward = {(r.cid, r.rung) for r in rows}
    out = []
    for (b, k), group in sorted(groups.items()):
        done = [r for r in group if r.state in ("complete", "failed")]
        results = [r.as_row().result for r in done]
        top = ladders is not None and b < len(ladders) and k + 1 >= len(ladders[b])
        out.append({"bracket": b, "rung": k, "epochs": group[0].epochs, "reached": len(group), "finished": len(done),
                    "in_flight": len(group) - len(done), "promoted": sum((r.cid, k + 1) in onward for r in group), "top": top,
                    "cutoff": None if top else cutoff(len(done), eta),
                    "cutoff_at": None if top else cutoff_at(results, eta)})  # type: ignore[arg-type]
    return out


def describe_cutoff(at: Mapping[str, Any] | None) -> str:
    """`cutoff_at` in words: "#12 0.9412" (one objective), "#12 0.9412 front 2" (several)."""
    if not at:
        return "-"
    acc = at.get("accuracy")
    return f"#{at['cid']} {acc:.4f}" + (f" front {at['front']}" if "front" in at else "")


def rung_table(rows: Sequence[StoredRung], eta: int, ladders: Sequence[Sequence[int]] | None = None) -> str:
    from .textfmt import table

    summary = rung_summary(rows, eta, ladders)
    body = [[s["bracket"], s["rung"], s["epochs"], s["reached"], s["finished"], s["in_flight"], s["promoted"], s["cutoff"],
             "top rung" if s["top"] else describe_cutoff(s["cutoff_at"])] for s in summary]
    return table(body, ["bracket", "rung", "epochs", "reached", "finished", "in flight", "promoted", "cutoff", "last inside cutoff"], "rrrrrrrrl")


def candidate_history(rows: Sequence[StoredRung], cid: int) -> list[dict[str, Any]]:
    """A candidate's rungs in order, each with its epochs, state, accuracy and (on the last) why
    it went no further."""
    return [{"rung": r.rung, "bracket": r.bracket, "epochs": r.epochs, "state": r.state, "val_accuracy": r.accuracy, "why": r.why}
            for r in rows if r.cid == cid]


def describe_why(why: Mapping[str, Any] | None) -> str:
    if not why:
        return "-"
    if why.get("stopped") != "not promoted":
        return str(why.get("stopped"))
    above = list(why.get("above", []))
    shown = ", ".join(f"#{c}" for c in above[:8]) + (f" and {len(above) - 8} more" if len(above) > 8 else "")
    beaten = why.get("beaten_by", [])
    front = (f", front {why['front']} (it and the fronts before it hold {why['through_front']}; whole fronts go on while they fit)"
             if "front" in why else "")
    return (f"not promoted: rank {why['rank']} of {why['of']}, cutoff top {why['cutoff']}{front}; ranked above it: {shown or 'none'}"
            f"; {len(beaten)} of them beat it outright")
