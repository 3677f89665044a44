"""The ask/tell interface every search strategy implements, its records, and the registry.

A strategy proposes architectures and learns from their results; it never trains, measures or
stores anything itself (the driver does). It is steady-state: `ask` may be called several
times before the matching `tell`s (parallel workers), and results may come back in any order.
Everything it needs to carry on exactly -- every RNG state, its populations, its counters --
is in `state_dict()`, which `json.dumps` accepts.
"""

from __future__ import annotations

import array
import base64
import json
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar

from ..errors import UsageError
from ..space import Architecture, SearchSpace

STATE_VERSION = 1


@dataclass(frozen=True)
class Proposal:
    """What `ask` returns: an architecture to evaluate and where it came from."""

    arch: Architecture
    generation: int = 0
    parents: tuple[int, ...] = ()  # candidate ids of the parents (ids the driver gave in tell())


@dataclass(frozen=True)
class Result:
    """One evaluated candidate, as the driver reports it to `tell`."""

    id: int  # candidate id assigned by the driver (unique, increasing)
    arch: Architecture
    values: tuple[float, ...] | None  # objective values, ALL MINIMISED; None = failed candidate
    violation: float = 0.0  # >0: infeasible by that much; values may still be present
    generation: int = 0
    parents: tuple[int, ...] = ()

    @property
    def failed(self) -> bool:
        """No usable objective values: the evaluation failed, or gave NaN or +-inf."""
        return self.values is None or not all(math.isfinite(v) for v in self.values)

    @property
    def feasible(self) -> bool:
        return not self.failed and self.violation <= 0


def standing(result: Result) -> tuple[float, ...]:
    """Sort key on the FIRST objective, lower is better: every feasible result beats every
    infeasible one, infeasible ones rank by violation (then objective), failed ones come last."""
    if result.failed:
        return (2.0, 0.0, 0.0)
    assert result.values is not None
    if result.violation > 0:
        return (1.0, result.violation, result.values[0])
    return (0.0, 0.0, result.values[0])


# -- options ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One option of a strategy: its default, type, allowed range and a one-line help."""

    default: Any
    kind: type  # int or float
    check: Callable[[Any], bool]
    expect: str  # what `check` accepts, for the error message: "an integer >= 2"
    help: str
    optional: bool = False  # None is allowed (and means "derive it")

    def parse(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, str):  # from a command line `key=value`
            try:
                value = self.kind(value.strip())
            except ValueError:
                return _BAD
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _BAD
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                return _BAD
            value = int(value)
        else:
            value = float(value)
        return value if self.check(value) else _BAD


_BAD = object()


def standing_in(member: Result, result: Result) -> Result | None:
    """What `member` becomes when a scheduler observes `result` (a rung completed): `result`
    itself when it is of the same candidate; for a duplicate of it (another id, proposed as the
    same network and answered from its twin's record when it was proposed) the twin's new values
    under the member's own id, generation and parents, so that a twin promoted later does not leave
    its duplicate at the rung it had reached then. None when `result` is of another network, or
    is `member` already."""
    if member is result or member.arch.key != result.arch.key:
        return None
    if member.id == result.id:
        return result
    return replace(member, values=result.values, violation=result.violation)


# -- RNG state in JSON --------------------------------------------------------------------------
def rng_state(rng: random.Random) -> list[Any]:
    """`rng.getstate()` in JSON: the 625 words of the Mersenne Twister as one base64 string (the
    state is saved with every candidate, and a string is far cheaper to encode than 625 ints)."""
    version, internal, gauss = rng.getstate()
    return [version, base64.b64encode(array.array("Q", internal).tobytes()).decode("ascii"), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    if isinstance(internal, str):
        words = array.array("Q")
        words.frombytes(base64.b64decode(internal))
        internal = words.tolist()
    rng.setstate((version, tuple(int(w) for w in internal), gauss))


def result_to_json(result: Result) -> dict[str, Any]:
    return {
        "id": result.id,
        "arch": result.arch.to_dict()["values"],
        "values": None if result.values is None else list(result.values),
        "violation": result.violation,
        "generation": result.generation,
        "parents": list(result.parents),
    }


def result_from_json(space: SearchSpace, d: Mapping[str, Any]) -> Result:
    return Result(
        id=int(d["id"]),
        arch=space.make(d["arch"]),
        values=None if d["values"] is None else tuple(float(v) for v in d["values"]),
        violation=float(d["violation"]),
        generation=int(d["generation"]),
        parents=tuple(int(p) for p in d["parents"]),
    )


def arch_token(arch: Architecture) -> str:
    """A canonical string of an architecture's values (a dict key that survives JSON)."""
    return json.dumps(arch.to_dict()["values"], sort_keys=True, separators=(",", ":"), default=str)


# -- the interface ------------------------------------------------------------------------------
class Strategy(ABC):
    """Proposes architectures (`ask`) and learns from their results (`tell`).

    `n_objectives` values come back per result, all minimised; `objectives` names them
    (`accuracy` comes negated, as `-accuracy`; costs such as `params` or `latency` as they are);
    `seed` fixes every random choice; `options` are the strategy's own (see its `OPTIONS`),
    checked here.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, space: SearchSpace, n_objectives: int = 1, seed: int = 0, *, objectives: Sequence[str] | None = None,
                 **options: Any) -> None:
        if isinstance(n_objectives, bool) or not isinstance(n_objectives, int) or n_objectives < 1:
            raise UsageError(f"n_objectives of strategy {self.name!r} must be an integer >= 1, got {n_objectives!r}")
        if objectives is not None and len(objectives) != n_objectives:
            raise UsageError(f"strategy {self.name!r} got {len(objectives)} objective names for {n_objectives} objectives")
        self.objective_names: tuple[str, ...] = tuple(objectives) if objectives is not None else tuple(f"objective{i}" for i in range(n_objectives))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UsageError(f"seed of strategy {self.name!r} must be an integer, got {seed!r}")
        self.space = space
        self.n_objectives = n_objectives
        self.seed = seed
        self.options = self._parse_options(options)
        self.rng = random.Random(seed)
        self.n_asked = 0
        self.n_told = 0

    @classmethod
    def _parse_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in given if k not in cls.OPTIONS]
        if unknown:
            valid = ", ".join(cls.OPTIONS) or "none"
            raise UsageError(f"unknown option {unknown[0]!r} for strategy {cls.name!r}; valid options: {valid}")
        out: dict[str, Any] = {}
        for key, opt in cls.OPTIONS.items():
            if key not in given:
                out[key] = opt.default
                continue
            value = opt.parse(given[key])
            if value is _BAD:
                raise UsageError(f"option {key!r} of strategy {cls.name!r} must be {opt.expect}, got {given[key]!r}")
            out[key] = value
        return out

    @abstractmethod
    def ask(self) -> Proposal:
        """The next architecture to evaluate."""

    @abstractmethod
    def tell(self, result: Result) -> None:
        """Learn from one evaluated candidate (in any order, any number of asks later)."""

    def observe(self, result: Result, epochs: int) -> None:
        """A multi-fidelity scheduler's result of `result.id` after `epochs` epochs of training, for
        every rung it completes (its first rung too, after the one `tell`). Strategies that model
        accuracy by fidelity use it (the predictor of `guided.Guided`); evolution and NSGA-II put it
        in place of the member's result (and of its duplicates': `standing_in`), so their selection
        compares each member at the highest rung it reached; the default ignores it (rl, random).
        `tell` still comes once per candidate, at its first rung."""

    def _check(self, result: Result) -> None:
        """Reject results the driver should never send (a driver bug, not bad user input)."""
        if result.arch.fingerprint != self.space.fingerprint:
            raise ValueError(f"result {result.id} holds an architecture of another space (fingerprint {result.arch.fingerprint}, this space {self.space.fingerprint})")
        if result.values is not None and len(result.values) != self.n_objectives:
            raise ValueError(f"result {result.id} has {len(result.values)} objective values; strategy {self.name!r} expects {self.n_objectives}")
        if not (math.isfinite(result.violation) and result.violation >= 0):
            raise ValueError(f"result {result.id} has violation {result.violation!r}; expected a finite number >= 0")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to carry on exactly, as JSON-able values."""
        return {
            "strategy": self.name,
            "version": STATE_VERSION,
            "space": self.space.fingerprint,
            "n_objectives": self.n_objectives,
            "seed": self.seed,
            "options": dict(self.options),
            "rng": rng_state(self.rng),
            "asked": self.n_asked,
            "told": self.n_told,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Carry on from `state_dict()` output; the strategy must be built like the saved one."""
        mine = self.state_dict()
        differ = [k for k in ("strategy", "version", "space", "n_objectives", "options") if state.get(k) != mine[k]]
        if differ:
            what = "; ".join(f"{k}: saved {state.get(k)!r}, now {mine[k]!r}" for k in differ)
            raise UsageError(f"cannot resume strategy {self.name!r} from a state saved with other settings ({what})")
        set_rng_state(self.rng, state["rng"])
        self.n_asked = int(state["asked"])
        self.n_told = int(state["told"])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.space.name!r}, n_objectives={self.n_objectives}, seed={self.seed}{', ' if opts else ''}{opts})"


# -- registry -----------------------------------------------------------------------------------
STRATEGIES: dict[str, type[Strategy]] = {}

S = TypeVar("S", bound=type[Strategy])


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: make a strategy available to `make_strategy` (and the CLI) as `name`."""

    def deco(cls: S) -> S:
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"a strategy named {name!r} is already registered ({STRATEGIES[name].__qualname__})")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def make_strategy(name: str, space: SearchSpace, n_objectives: int = 1, seed: int = 0, *, objectives: Sequence[str] | None = None,
                  **options: Any) -> Strategy:
    """The strategy registered as `name`; UsageError for unknown names and bad options."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise UsageError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    return cls(space, n_objectives, seed, objectives=objectives, **options)


def default_strategy(n_objectives: int) -> str:
    """Aging evolution for one objective, NSGA-II for several."""
    if isinstance(n_objectives, bool) or not isinstance(n_objectives, int) or n_objectives < 1:
        raise UsageError(f"n_objectives must be an integer >= 1, got {n_objectives!r}")
    return "evolution" if n_objectives == 1 else "nsga2"
