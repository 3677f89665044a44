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
            name, _, number, unit = m.groups()
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
    return np.array([to_min(c.objectives, objectives) for c in candidates], dtype=float)


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


def bounds(candidates: Sequence[Any], objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation bounds for hypervolume: accuracy in [0, 1]; every other objective from 0
    to the largest value seen (so the bounds do not depend on the smallest value found)."""
    F = matrix(feasible(candidates), objectives)
    lower = np.zeros(len(objectives))
    upper = np.ones(len(objectives))
    for j, o in enumerate(objectives):
        if o.name == "accuracy":
            lower[j], upper[j] = -1.0, 0.0  # minimised form: -accuracy in [-1, 0]
        elif len(F):
            lower[j] = min(0.0, F[:, j].min())
            upper[j] = max(F[:, j].max(), lower[j] + 1e-12)
    return lower, upper


def hypervolume(candidates: Sequence[Any], objectives: Sequence[Objective], lower: np.ndarray | None = None,
                upper: np.ndarray | None = None) -> float:
    """Hypervolume of the feasible front, objectives normalised to [0, 1] by `bounds`, reference
    point 1.1 in every objective (so a lone best point still counts). 0 when nothing is feasible."""
    pool = feasible(candidates)
    if not pool or len(objectives) > 3:
        return 0.0 if not pool else float("nan")
    if lower is None or upper is None:
        lower, upper = bounds(candidates, objectives)
    return pareto.normalized_hypervolume(matrix(pool, objectives), lower, upper, ref_offset=0.1)


PICKS = ("knee", "best-accuracy")


def pick(candidates: Iterable[Any], objectives: Sequence[Objective], rule: str = "knee", *,
         max_params: float | None = None, max_latency_ms: float | None = None) -> Any:
    """One candidate of the front: `knee` (the Pareto knee) or `best-accuracy`, among those within
    `max_params` / `max_latency_ms` when given. UsageError when nothing qualifies."""
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
    if len(objectives) == 1 or len(chosen) < 3:
        return chosen[0]
    return chosen[pareto.knee_point(matrix(chosen, objectives))]
