"""Runs: what a search is configured with, and a run opened read-only.

This module sits below the driver (`nas.search`) and the executors: the config, the evaluator
factory and the training seed live here, and everything that only reads a run (`nas status`,
`report`, `export`, the Python API) opens it through `Run`:

    with nas.open_run("runs/demo") as run:
        print(run.best.metrics, len(run.front), [o.name for o in run.objectives])

A `Run` never writes and may be opened while a search is writing the run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import objectives as objmod
from .errors import UsageError
from .objectives import Objective
from .space import SearchSpace
from .store import Candidate, RunStore

RUN_VERSION = 1
KEEP_WEIGHTS = ("all", "front", "none")


@dataclass
class SearchConfig:
    """What the command said. Stored with the run; `nas resume` starts from it."""

    space: dict[str, Any]  # {"raw": the space as a dict, "source": where it came from}
    data: str = "digits"
    data_seed: int = 0
    data_dir: str | None = None  # where torchvision datasets live (default NAS_DATA_DIR or ~/.cache/nas/data)
    download: bool = False  # fetch torchvision datasets that are not there yet
    objectives: list[str] = field(default_factory=lambda: ["accuracy"])
    constraints: dict[str, float] = field(default_factory=dict)
    strategy: str = "auto"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    budget: int | None = 50  # trained networks (distinct architectures evaluated; infeasible proposals do not count)
    time_budget: float | None = None  # seconds of search, summed over sessions
    seed: int = 0
    device: str = "auto"
    train: dict[str, Any] = field(default_factory=dict)  # run options for TrainConfig (max_epochs, patience, ...)
    latency: dict[str, Any] = field(default_factory=dict)  # measure latency: device, batch, mode, threads (or NB201 column)
    keep_weights: str = "all"
    max_failures: int = 10  # stop after this many failed evaluations in a row
    workers: int = 1
    backend: str = "inline"
    backend_options: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "none"  # none | asha | hyperband: epochs per candidate by rungs (nas.schedulers)
    min_epochs: int = 1  # the first rung (a scheduler's R)
    eta: int = 3  # a scheduler's reduction factor: the top 1/eta of a rung is promoted

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def check(self) -> None:
        if self.budget is None and self.time_budget is None:
            raise UsageError("give a budget (evaluations) or a time budget (seconds), or both")
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise UsageError(f"budget must be a positive number of evaluations, got {self.budget!r}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UsageError(f"time budget must be positive seconds, got {self.time_budget!r}")
        if self.keep_weights not in KEEP_WEIGHTS:
            raise UsageError(f"keep_weights must be one of {', '.join(KEEP_WEIGHTS)}, got {self.keep_weights!r}")
        if not isinstance(self.max_failures, int) or self.max_failures < 1:
            raise UsageError(f"max_failures must be a positive integer, got {self.max_failures!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"workers must be a positive integer, got {self.workers!r}")
        from .schedulers import SCHEDULERS, check_settings

        if self.scheduler not in SCHEDULERS:
            raise UsageError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.scheduler != "none":
            check_settings(self.min_epochs, self.eta)


def seed_for(run_seed: int, key: str) -> int:
    """The training seed of an architecture: fixed by the run seed and the architecture's key, so a
    candidate gets the same seed whenever and wherever it is evaluated (exact resume, parallel)."""
    return int(hashlib.sha256(f"{run_seed}:{key}".encode()).hexdigest()[:8], 16)


def make_evaluator(config: SearchConfig) -> Any:
    """The evaluator a config asks for: NB201 tables for `nb201:*`, else training on the data."""
    from .tabular import TabularEvaluator, parse_tabular

    dataset = parse_tabular(config.data)
    if dataset is not None:
        return TabularEvaluator(dataset, latency_device=config.latency.get("device") or "1080ti_bs1_ms")
    from .evaluators import TrainingEvaluator

    lat = config.latency
    return TrainingEvaluator(
        config.data, device=config.device, data_seed=config.data_seed, data_dir=config.data_dir, download=config.download,
        latency=bool(lat) or "latency" in config.objectives or "max_latency_ms" in config.constraints,
        latency_device=lat.get("device", "cpu"), latency_batch=lat.get("batch", 1), latency_mode=lat.get("mode", "eager"),
        latency_threads=lat.get("threads", 1), keep_weights=config.keep_weights != "none", **config.train,
    )


def space_config(space: SearchSpace) -> dict[str, Any]:
    """The space as the config stores it (plain values only)."""
    try:
        raw = json.loads(json.dumps(space.raw))
    except (TypeError, ValueError):
        raise UsageError("the space must be made of plain values (numbers, strings, lists, dicts) to be saved with the run") from None
    return {"raw": raw, "source": space.source}


# -- objectives as the run stores them ---------------------------------------------------------
def objectives_meta(objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """Each objective's name, metric and direction, and whether a Python function computes it
    (functions are not stored: a resume asks for them again)."""
    return [{"name": o.name, "metric": o.metric, "direction": o.direction, "function": o.fn is not None} for o in objectives]


def objectives_from_meta(stored: Sequence[Mapping[str, Any]] | None, names: Sequence[str]) -> list[Objective]:
    """The run's objectives for reading it: built-ins as themselves, function objectives by name,
    metric and direction (their stored values are what a reader needs). Runs from before the
    objectives were stored have only names: built-ins are known, other names are read as
    minimised metrics of that name."""
    if stored:
        out = []
        for d in stored:
            builtin = objmod.BUILTIN.get(d["name"])
            if builtin is not None and not d.get("function") and builtin.metric == d["metric"] and builtin.direction == d["direction"]:
                out.append(builtin)
            else:
                out.append(Objective(d["name"], d["metric"], d["direction"]))
        return out
    return [objmod.BUILTIN.get(n) or Objective(n, n, "min") for n in (names or ["accuracy"])]


def function_objectives(stored: Sequence[Mapping[str, Any]] | None) -> list[str]:
    return [d["name"] for d in stored or () if d.get("function")]


# -- the writer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Writer:
    """Whether a process is writing the run now (it holds `<run>/.lock`), and which."""

    alive: bool
    pid: int | None


def writer(path: str | Path) -> Writer:
    """Tell a live run from a dead one: a writer holds an exclusive flock on `.lock` for as long
    as it runs (the OS drops it when the process dies, kill -9 included). Trying a non-blocking
    shared lock from here never disturbs the writer."""
    import fcntl

    lock = Path(path) / ".lock"
    try:
        fh = open(lock, "r")
    except OSError:
        return Writer(False, None)
    with fh:
        text = fh.read().strip()
        pid = int(text.split()[-1]) if text.startswith("pid ") and text.split()[-1].isdigit() else None
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return Writer(True, pid)
        fcntl.flock(fh, fcntl.LOCK_UN)
    return Writer(False, pid)


# -- a run, read-only ----------------------------------------------------------------------------
class Run:
    """A run opened read-only (also while a search writes it); a context manager.

    `.path`, `.store` (the RunStore), `.config` (SearchConfig), `.space` (the space as the run
    used it, for the data's input shape), `.objectives` (every objective, built-in or not, in the
    order of the stored vectors), `.candidates`, `.front`, `.best`, `.meta(key)`, `.writer`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = RunStore.open(self.path)
        try:
            self.config = SearchConfig.from_dict(self.store.meta("config"))
            space = SearchSpace.from_dict(self.config.space["raw"], self.config.space.get("source", "<run>"))
            shape, classes = self.store.meta("input_shape"), self.store.meta("classes")
            if shape and (tuple(shape) != space.input_shape or classes != space.classes):
                space = space.with_input(shape, classes)
            self.space = space
            self.stored_objectives = self.store.meta("objectives")
            self.objectives = objectives_from_meta(self.stored_objectives, self.config.objectives)
        except BaseException:
            self.store.close()
            raise

    # -- lifetime
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- contents (read afresh on each access: a live run grows)
    def meta(self, key: str, default: Any = None) -> Any:
        return self.store.meta(key, default)

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate, in id order."""
        return self.store.candidates()

    @property
    def front(self) -> list[Candidate]:
        """The feasible non-dominated candidates, best first by the first objective."""
        return objmod.front(self.store.candidates(["complete"]), self.objectives)

    @property
    def best(self) -> Candidate | None:
        front = self.front
        return front[0] if front else None

    @property
    def function_objectives(self) -> list[str]:
        """Names of objectives computed by Python functions (a resume must be given them again)."""
        return function_objectives(self.stored_objectives)

    @property
    def writer(self) -> Writer:
        return writer(self.path)

    def elapsed(self) -> float:
        """Seconds of search so far, summed over sessions; for a live run, up to now."""
        import time

        elapsed = float(self.store.meta("elapsed", 0.0))
        at = self.store.meta("elapsed_at")
        if at is not None and self.writer.alive:
            elapsed += max(0.0, time.time() - float(at))
        return elapsed

    def state(self) -> str:
        """running (a writer holds the lock), finished (a session ended by its budget, time budget,
        failures or exhaustion) or stopped (interrupted, terminated or killed)."""
        if self.writer.alive:
            return "running"
        stopped = self.store.meta("stopped")
        return "finished" if stopped in ("budget", "time budget", "failures", "exhausted", "infeasible") else "stopped"

    # -- trials (nas.trials; issue 15) --------------------------------------------------------------
    def trials(self, states: Sequence[str] | None = None, sort: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Every candidate as a flat dict, the columns of `nas trials` (see `nas.trials`):
        id, state, key, obj_<objective>..., val_accuracy, test_accuracy, params, flops, latency_ms,
        epochs, seconds, worker, generation, parents, source, duplicate_of, derived_from, violation,
        error, summary, arch, created, started, finished. `sort` names a column (`-col`: descending)."""
        from .trials import trials

        return trials(self, states=states, sort=sort, limit=limit)

    def curve(self, cid: int) -> list[dict[str, Any]]:
        """A candidate's learning curve: one dict per epoch (epoch, train_loss, val_loss, val_accuracy, ...)."""
        return self.store.curve(cid)

    def to_dataframe(self, states: Sequence[str] | None = None) -> Any:
        """`trials()` as a pandas DataFrame indexed by id (pandas is not a dependency of nas:
        `pip install pandas`)."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_dataframe needs pandas (pip install pandas); trials() gives the same rows as dicts") from None
        return pd.DataFrame(self.trials(states=states)).set_index("id", drop=False)


def open_run(run: str | Path) -> Run:
    """A run opened read-only: `with nas.open_run("runs/demo") as run: run.front ...`."""
    return Run(run)

