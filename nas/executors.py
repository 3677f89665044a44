"""Where evaluations run: `inline` (in the driver's process, the default), `process` (a local
pool) and `ray` (a cluster). The driver submits (candidate id, space, architecture, seed,
constraints) and collects `Evaluation`s; workers never touch the run store."""

from __future__ import annotations

import traceback
from typing import Any, Mapping

from .errors import UsageError
from .evaluators import Evaluation
from .space import Architecture, SearchSpace

BACKENDS = ("inline",)


def safe_evaluate(evaluator: Any, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float]) -> Evaluation:
    """An evaluation that never raises (but for Ctrl-C): a crash of the evaluator is a failed candidate."""
    try:
        return evaluator.evaluate(space, arch, seed=seed, constraints=constraints)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        return Evaluation("failed", {}, f"evaluator error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}")


class InlineExecutor:
    """One evaluation at a time, in the driver's own process."""

    capacity = 1

    def __init__(self, evaluator: Any) -> None:
        self.evaluator = evaluator
        self._done: list[tuple[int, Evaluation]] = []

    def worker_name(self) -> str:
        return "inline"

    def submit(self, cid: int, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float]) -> None:
        self._done.append((cid, safe_evaluate(self.evaluator, space, arch, seed, constraints)))

    def wait(self) -> list[tuple[int, Evaluation]]:
        done, self._done = self._done, []
        return done

    def cancel_all(self) -> None:
        self._done.clear()

    def shutdown(self) -> None:
        pass


def check_backend(config: Any) -> None:
    """UsageError for a backend / worker combination that cannot run (before a run is created)."""
    if config.backend not in BACKENDS:
        raise UsageError(f"unknown backend {config.backend!r}; use {', '.join(BACKENDS)}")
    if config.backend == "inline" and config.workers != 1:
        raise UsageError("the inline backend runs one evaluation at a time; use --backend process or ray for --workers > 1")


def make_executor(config: Any, search: Any) -> Any:
    check_backend(config)
    return InlineExecutor(search.evaluator)
