"""Objectives and constraints by name, and the run's Pareto front, hypervolume and picks.

Objectives: `accuracy` (validation accuracy, maximised), `params`, `flops`, `latency`
(measured milliseconds), all minimised, and user functions in the Python API. Constraints such
as `params<=200000`, `flops<=5e6` or `latency<=2ms` make a candidate infeasible; those known
before training (all of these) are checked before anything is trained.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import pareto
from .errors import UsageError


@dataclass(frozen=True)
class Objective:
    """A named objective: a metric read from an evaluation (or computed by `fn`) and a direction."""

    name: str
    metric: str
    direction: str = "min"  # min | max
    fn: Callable[[Mapping[str, Any], Any], float] | None = None  # (metrics, arch) -> value

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise UsageError(f"objective {self.name!r}: direction must be 'min' or 'max', got {self.direction!r}")

    def value(self, metrics: Mapping[str, Any], arch: Any = None) -> float | None:
        if self.fn is not None:
            return float(self.fn(metrics, arch))
        v = metrics.get(self.metric)
        return None if v is None else float(v)


BUILTIN = {
    "accuracy": Objective("accuracy", "val_accuracy", "max"),
    "params": Objective("params", "params", "min"),
    "flops": Objective("flops", "flops", "min"),
    "latency": Objective("latency", "latency_ms", "min"),
}


def parse_objectives(spec: str | Sequence[str | Objective]) -> list[Objective]:
    """`"accuracy,params"` or a list of names / Objective objects -> objectives (accuracy first)."""
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    if not items:
        raise UsageError("give at least one objective, e.g. accuracy or accuracy,params")
    out: list[Objective] = []
    for item in items:
        if isinstance(item, Objective):
            out.append(item)
        elif item in BUILTIN:
            out.append(BUILTIN[item])
        else:
            raise UsageError(f"unknown objective {item!r}; use {', '.join(BUILTIN)} (or an Objective in the Python API)")
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise UsageError(f"objective listed twice in {', '.join(names)}")
    return out


_CONSTRAINT = re.compile(r"^\s*(params|flops|latency)\s*(<=|<)\s*([0-9.eE+_-]+)\s*(ms|k|m|g)?\s*$", re.IGNORECASE)


def parse_constraints(specs: Iterable[str] | None) -> dict[str, float]:
    """`["params<=200000", "latency<=2ms"]` -> {"max_params": 200000, "max_latency_ms": 2.0}."""
    out: dict[str, float] = {}
    for spec in specs or ():
        for part in filter(None, (p.strip() for p in spec.split(","))):
            m = _CONSTRAINT.match(part)
            if not m:
                raise UsageError(f"bad constraint {part!r}; write e.g. params<=200000, flops<=5e6 or latency<=2ms")
            name, op, number, unit = m.groups()
            if op == "<":  # bounds are inclusive: a strict < would silently mean <=
                raise UsageError(f"constraint {part!r}: write <= (a constraint is an upper bound that a candidate may reach)")
            try:
                value = float(number.replace("_", ""))
            except ValueError:
                raise UsageError(f"bad number in constraint {part!r}") from None
            unit = (unit or "").lower()
            if name.lower() == "latency":
                if unit not in ("", "ms"):
                    raise UsageError(f"latency constraints are in ms, got {part!r}")
                out["max_latency_ms"] = value
            else:
                if unit == "ms":
                    raise UsageError(f"{name} constraints take a plain number, got {part!r}")
                value *= {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[unit]
                out[f"max_{name.lower()}"] = value
            if value <= 0:
                raise UsageError(f"constraint {part!r} must be positive")
    return out


def violation(metrics: Mapping[str, Any], constraints: Mapping[str, float]) -> float:
    """Total relative amount by which `metrics` break `constraints` (0 when feasible)."""
    total = 0.0
    for name, limit in constraints.items():
        metric = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}[name]
        value = metrics.get(metric)
        if value is not None and value > limit:
            total += (value - limit) / limit
    return total


def to_min(values: Sequence[float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    return tuple(-v if o.direction == "max" else v for v, o in zip(values, objectives))


# -- fronts over candidates -------------------------------------------------------------------
def matrix(candidates: Sequence[Any], objectives: Sequence[Objective]) -> np.ndarray:
    """(n, m) minimisation matrix of the candidates' stored objective values."""
    if not candidates:
        return np.zeros((0, len(objectives)))
    sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    return np.array([c.objectives for c in candidates], dtype=float) * sign


def feasible(candidates: Iterable[Any]) -> list[Any]:
    """Complete, feasible candidates with objective values, one per architecture key."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.state == "complete" and c.violation <= 0 and c.objectives is not None and c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out


def front(candidates: Iterable[Any], objectives: Sequence[Objective]) -> list[Any]:
    """The non-dominated feasible candidates, best first by the first objective."""
    pool = feasible(candidates)
    if not pool:
        return []
    mask = pareto.pareto_mask(matrix(pool, objectives))
    chosen = [c for c, keep in zip(pool, mask) if keep]
    first = objectives[0]
    return sorted(chosen, key=lambda c: -c.objectives[0] if first.direction == "max" else c.objectives[0])


def add_to_front(front: list[Any], candidate: Any, objectives: Sequence[Objective]) -> bool:
    """The one incremental front: keep `front` (a list, changed in place) the front of every
    candidate added so far. `candidate` joins unless it is not complete and feasible, its key is
    already there, or a member dominates it (`nas.pareto.dominates`; an equal vector does not);
    members it dominates leave. True when the front changed. Adding a run's candidates one by one
    this way gives the members of `front(candidates, objectives)`, in the order they joined."""
    if candidate.state != "complete" or candidate.violation > 0 or candidate.objectives is None:
        return False
    if any(f.key == candidate.key for f in front):
        return False
    keep = _join_front([to_min(f.objectives, objectives) for f in front], to_min(candidate.objectives, objectives))
    if keep is None:
        return False
    front[:] = [front[i] for i in keep]
    front.append(candidate)
    return True


def _join_front(vectors: Sequence[Sequence[float]], mine: Sequence[float]) -> list[int] | None:
    """The rule of `add_to_front` on minimised vectors: None when a vector of `vectors` dominates
    `mine`, else the indices of those `mine` does not dominate (they stay; `mine` joins them)."""
    keep = []
    for i, other in enumerate(vectors):
        if pareto.dominates(other, mine):
            return None
        if not pareto.dominates(mine, other):
            keep.append(i)
    return keep


# -- hypervolume: one definition ----------------------------------------------------------------
HV_FIXED_BY = 10  # feasible evaluations whose values fix the run's normalisation bounds
HV_REF = 1.1  # reference point in every normalised objective, so a lone best point still counts
_COSTS = ("params", "flops", "latency")  # built-in objectives that are never negative
HV_RULE = (f"objectives normalised with bounds fixed by the run's first {HV_FIXED_BY} feasible evaluations "
           "(accuracy 0 to 1; params, FLOPs and latency 0 to the largest of those; other objectives their range), "
           f"reference point {HV_REF} in every normalised objective")
_FINISHED = ("complete", "failed", "infeasible")


def hv_bounds(candidates: Iterable[Any], objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's hypervolume normalisation (lower, upper) in minimised form, or None until it is fixed.

    Fixed by the first `HV_FIXED_BY` feasible evaluations in id order (duplicates answered from the
    store do not count): accuracy spans [0, 1], a cost (params, FLOPs, latency) [0, the largest
    value among them], any other objective [their smallest, their largest]. Fixed means: that many
    exist and every candidate with a smaller id has finished; from then on later candidates never
    change the bounds, so the run's hypervolume only rises when its front improves and never
    moves when a dominated candidate arrives. Give every candidate of the run, in any state."""
    first: list[Any] = []
    for c in sorted((c for c in candidates if c.source is None), key=lambda c: c.id):
        if c.state not in _FINISHED:
            return None  # an earlier candidate may still be one of the first feasible ones
        if c.state == "complete" and c.violation <= 0 and c.objectives is not None:
            first.append(c)
            if len(first) == HV_FIXED_BY:
                break
    if len(first) < HV_FIXED_BY:
        return None
    F = matrix(first, objectives)
    lower, upper = F.min(axis=0), F.max(axis=0)
    for j, o in enumerate(objectives):
        if o.name == "accuracy" and o.metric == "val_accuracy":
            lower[j], upper[j] = -1.0, 0.0  # minimised form: -accuracy in [-1, 0]
        elif o.name in _COSTS and o.fn is None:
            lower[j] = min(0.0, lower[j])
        if not upper[j] > lower[j]:  # one value among the first: give the scale of that value
            upper[j] = lower[j] + max(abs(lower[j]), 1.0)
    return lower, upper


def hypervolume(candidates: Iterable[Any], objectives: Sequence[Objective],
                bounds: tuple[np.ndarray, np.ndarray] | None = None) -> float | None:
    """The run's hypervolume: that of the feasible front of `candidates`, normalised by `bounds`
    (default `hv_bounds(candidates, objectives)`), reference point `HV_REF`. None when it is not
    defined: one objective, more than three (no exact computation), or bounds not fixed yet. 0.0
    while nothing is feasible. Every number shown as a run's hypervolume comes from here."""
    cands = list(candidates)
    if not 2 <= len(objectives) <= 3:
        return None
    if bounds is None:
        bounds = hv_bounds(cands, objectives)
        if bounds is None:
            return None
    pool = feasible(cands)
    return hypervolume_of(matrix(pool, objectives), bounds)


def hypervolume_of(F: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> float:
    """`hypervolume`'s computation on a minimised (n, m) matrix: normalised by `bounds`, reference
    point `HV_REF` in every objective. 0.0 for no rows."""
    if len(F) == 0:
        return 0.0
    return pareto.normalized_hypervolume(F, bounds[0], bounds[1], ref_offset=HV_REF - 1.0)


def hypervolume_text(candidates: Iterable[Any], objectives: Sequence[Objective]) -> str | None:
    """What `status` and the report show for the hypervolume: the number (4 decimals) and how it is
    normalised, or why there is none. None for one objective (no hypervolume to speak of)."""
    cands = list(candidates)
    if len(objectives) < 2:
        return None
    if len(objectives) > 3:
        return "n/a (more than 3 objectives)"
    hv = hypervolume(cands, objectives)
    if hv is None:
        got = sum(1 for c in cands if c.source is None and c.state == "complete" and c.violation <= 0 and c.objectives is not None)
        return f"n/a until the first {HV_FIXED_BY} feasible evaluations have fixed its normalisation ({got} feasible so far)"
    return f"{hv:.4f} ({HV_RULE})"


# -- picks --------------------------------------------------------------------------------------
NEAR_BEST = 0.01  # the default pick's tolerance: one point of validation accuracy
PICKS = ("near-best", "knee", "best-accuracy")
DEFAULT_PICK = "near-best"
PICK_RULES = {
    "near-best": f"the smallest network of the front within {NEAR_BEST:g} validation accuracy of the best "
                 "(smallest by the other objectives in the order given, e.g. params)",
    "knee": "the knee of the front (normalised to its own range, farthest from the line through its extremes)",
    "best-accuracy": "the highest validation accuracy",
}


def pick(candidates: Iterable[Any], objectives: Sequence[Objective], rule: str = DEFAULT_PICK, *,
         max_params: float | None = None, max_latency_ms: float | None = None) -> Any:
    """One candidate of the front, by `rule` (see `PICK_RULES`), among those within `max_params` /
    `max_latency_ms` when given. `near-best`, the default, is the network a user would take: of the
    front members whose validation accuracy is within `NEAR_BEST` of the best, the one with the
    best other objectives (lexicographically, in the run's order; ties by id). Without an accuracy
    objective it is the knee; with accuracy alone, the best. UsageError when nothing qualifies."""
    if rule not in PICKS:
        raise UsageError(f"unknown pick {rule!r}; use {', '.join(PICKS)} or a candidate id")
    pool = feasible(candidates)
    if max_params is not None:
        pool = [c for c in pool if c.metrics.get("params") is not None and c.metrics["params"] <= max_params]
    if max_latency_ms is not None:
        pool = [c for c in pool if c.metrics.get("latency_ms") is not None and c.metrics["latency_ms"] <= max_latency_ms]
    if not pool:
        limits = ", ".join(t for t in (f"params <= {max_params:g}" if max_params else "", f"latency <= {max_latency_ms:g} ms" if max_latency_ms else "") if t)
        raise UsageError("no complete candidate" + (f" with {limits}" if limits else "") + " to pick from")
    if rule == "best-accuracy":
        return max(pool, key=lambda c: (c.metrics.get("val_accuracy", -math.inf), -c.id))
    chosen = front(pool, objectives)
    if len(objectives) == 1:
        return chosen[0]
    names = [o.name for o in objectives]
    if rule == "near-best" and "accuracy" in names:
        j = names.index("accuracy")
        best = max(c.objectives[j] for c in chosen)
        near = [c for c in chosen if c.objectives[j] >= best - NEAR_BEST - 1e-12]
        others = [k for k in range(len(objectives)) if k != j]
        return min(near, key=lambda c: (*(to_min(c.objectives, objectives)[k] for k in others), c.id))
    if len(chosen) < 3:
        return chosen[0]
    return chosen[pareto.knee_point(matrix(chosen, objectives))]


def try_pick(candidates: Iterable[Any], objectives: Sequence[Objective], rule: str = DEFAULT_PICK) -> Any | None:
    """`pick`, or None when there is nothing to pick (for tables that mark the pick)."""
    try:
        return pick(candidates, objectives, rule)
    except UsageError:
        return None
