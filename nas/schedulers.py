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
  then id. Crowding is the one NSGA-II uses to cut a front, so "top 1/eta" keeps what NSGA-II's
  selection would keep; unlike Syne Tune's MOASHA, the sort position is the rank, never used as a
  score;
- constraint violators come after every feasible result (by violation, smaller first, then id),
  failed ones last (by id). Neither is ever promoted.

Everything here is plain data in, plain data out: the driver derives every decision from the
rung rows it stored, so a resumed run takes the same decisions as one that never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import pareto
from .errors import UsageError

SCHEDULERS = ("none", "asha", "hyperband")


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


def check_settings(min_epochs: int, eta: int, max_epochs: int) -> None:
    for name, value in (("min_epochs", min_epochs), ("max_epochs", max_epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(eta, int) or isinstance(eta, bool) or eta < 2:
        raise UsageError(f"eta must be an integer >= 2, got {eta!r}")
    if min_epochs > max_epochs:
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
    F = np.array([(-r.accuracy, *r.cheap) for r in ok], dtype=float)  # type: ignore[operator]
    out: list[int] = []
    for front in pareto.nondominated_sort(F):
        crowd = pareto.crowding_distance(F[front])
        order = sorted(range(len(front)), key=lambda j: (-crowd[j], -ok[front[j]].accuracy, ok[front[j]].cid))  # type: ignore[operator]
        out.extend(ok[front[j]].cid for j in order)
    return out


def cutoff(n: int, eta: int) -> int:
    """How many of `n` results at a rung may be promoted: the top `floor(n / eta)`."""
    return n // eta


def promotable(results: Sequence[RungResult], eta: int, promoted: Iterable[int] = ()) -> list[int]:
    """Ids in the top `floor(n / eta)` of a rung that were not promoted yet, best first (only
    feasible, finished results are ever promoted)."""
    done = set(promoted)
    ok = {r.cid for r in results if r.ok}
    top = rank_rung(results)[:cutoff(len(results), eta)]
    return [cid for cid in top if cid in ok and cid not in done]


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


def standing(cid: int, results: Sequence[RungResult], eta: int) -> dict[str, object]:
    """Why a candidate stands where it does at a rung: its rank (1-based) among `n`, the cutoff,
    the candidates ranked above it and those that beat it outright (`beats`)."""
    order = rank_rung(results)
    if cid not in order:
        raise ValueError(f"candidate {cid} has no result at this rung")
    pos = order.index(cid)
    me = next(r for r in results if r.cid == cid)
    return {"rank": pos + 1, "of": len(order), "cutoff": cutoff(len(order), eta), "above": order[:pos],
            "beaten_by": [r.cid for r in results if beats(r, me)]}


def never_promotable(cid: int, results: Sequence[RungResult], eta: int, most: float) -> bool:
    """True when the candidate cannot be promoted however the rung fills up to `most` results
    (math.inf when unbounded): failed or infeasible, or beaten outright by at least
    `floor(most / eta)` others (each of those ranks above it at every later size)."""
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


def next_promotion(rows: Sequence[RungRow], ladders: Sequence[Sequence[int]], eta: int) -> tuple[int, int, int] | None:
    """ASHA's choice for a free worker: (candidate id, bracket, rung to train to) of the best
    promotable candidate of the highest rung that has one, over all brackets, or None.
    Brackets are looked at from the least aggressive, so that with equal rungs longer training
    that was started goes first."""
    by: dict[tuple[int, int], list[RungRow]] = {}
    for row in rows:
        by.setdefault((row.bracket, row.rung), []).append(row)
    best: tuple[tuple[int, int], tuple[int, int, int]] | None = None
    for (b, k), group in sorted(by.items()):
        if k + 1 >= len(ladders[b]):
            continue
        finished = [r for r in group if r.state in ("complete", "failed")]
        results = [r.result for r in finished if r.result is not None]
        stopped = {r.cid for r in finished if r.final}
        promoted = {r.cid for r in by.get((b, k + 1), [])} | stopped
        cand = promotable(results, eta, promoted)
        if cand:
            order = (-(b + k), -b)  # the highest absolute rung of the ladder first
            if best is None or order < best[0]:
                best = (order, (cand[0], b, k + 1))
    return None if best is None else best[1]


def parse_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise UsageError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    return name


def rung_results(rows: Sequence[RungRow]) -> Mapping[tuple[int, int], list[RungResult]]:
    """(bracket, rung) -> the results recorded there."""
    out: dict[tuple[int, int], list[RungResult]] = {}
    for row in rows:
        if row.result is not None:
            out.setdefault((row.bracket, row.rung), []).append(row.result)
    return out
