"""Helpers for the executor tests that worker processes import by name.

    backend_options={"evaluator_factory": "tests.executor_helpers:make",
                     "factory_options": {"log": LOG, "kill_after": 5, "delay": 0.02}}

`make` wraps the run's own evaluator (`make_evaluator(config)`): each evaluation first appends
"pid key" to LOG; once LOG holds `kill_after` lines, the next evaluation kills its own worker
process with SIGKILL, only once over all workers (a marker file beside LOG, created exclusively,
holds "pid key" of the killed evaluation).

Run as a script it is a search driver for the kill-the-driver test (process backend, 2 workers):

    python tests/executor_helpers.py start|resume RUN LOG BUDGET
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.evaluators import Evaluation  # noqa: E402
from nas.search import SearchConfig, make_evaluator, resume, search  # noqa: E402


def marker(log: str | Path) -> Path:
    return Path(str(log) + ".killed")


class Logged:
    """An evaluator that logs each evaluation and can kill its own process once."""

    def __init__(self, inner: Any, log: str | None = None, kill_after: int | None = None, delay: float = 0.0) -> None:
        self.inner = inner
        self.log = log
        self.kill_after = kill_after
        self.delay = delay

    def __getattr__(self, name: str) -> Any:  # fit_space, check_space, test, provides ...
        return getattr(self.inner, name)

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):  # type: ignore[no-untyped-def]
        if self.log:
            with open(self.log, "a") as fh:
                before = sum(1 for _ in open(self.log)) if os.path.exists(self.log) else 0
                fh.write(f"{os.getpid()} {arch.key}\n")
            if self.kill_after is not None and before >= self.kill_after:
                try:
                    fd = os.open(marker(self.log), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, f"{os.getpid()} {arch.key}\n".encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
        if self.delay:
            time.sleep(self.delay)
        return self.inner.evaluate(space, arch, seed=seed, constraints=constraints)


def make(config: SearchConfig) -> Logged:
    return Logged(make_evaluator(config), **config.backend_options.get("factory_options", {}))


class Instant:
    """Answers at once with an accuracy made from the architecture's key (for tiny spaces)."""

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):  # type: ignore[no-untyped-def]
        return Evaluation("complete", {"val_accuracy": int(arch.key[:4], 16) / 65535, "epochs": 1, "seconds": 0.0})


def make_instant(config: SearchConfig) -> Logged:
    return Logged(Instant(), **config.backend_options.get("factory_options", {}))


def broken(config: SearchConfig) -> Any:
    raise ValueError("no data here")


def main() -> None:
    mode, run, log, budget = sys.argv[1:5]
    if mode == "start":
        search("nb201", data="nb201:cifar10", objectives="accuracy,latency", strategy="nsga2", strategy_options={"population": 8},
               budget=int(budget), seed=5, run=run, progress=False, workers=2, backend="process",
               backend_options={"evaluator_factory": "tests.executor_helpers:make", "lock_dir": str(Path(run).parent / "locks"),
                                "factory_options": {"log": log, "delay": 0.1}})
        return
    session = resume(run, progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()

if __name__ == "__main__":
    main()
