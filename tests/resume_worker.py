"""A search process for the kill-and-resume tests (run as a script, killed with SIGKILL).

    python tests/resume_worker.py start|resume RUN LOG STRATEGY SEED BUDGET [DELAY [OPTIONS_JSON]]

It searches NAS-Bench-201 (accuracy and latency) through the tabular evaluator, slowed down a
little so that a kill lands in the middle of things, and appends one line per evaluation to LOG
(pid and key), so the test can tell which candidates were evaluated more than once.
`kill_and_resume` drives it from a test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.search import SearchConfig, resume, space_config, start  # noqa: E402
from nas.space import load_space  # noqa: E402
from nas.tabular import TabularEvaluator  # noqa: E402


class SlowLoggedTable(TabularEvaluator):
    def __init__(self, log: str, delay: float) -> None:
        super().__init__("cifar10")
        self.log = log
        self.delay = delay

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):  # type: ignore[override]
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {arch.key}\n")
        time.sleep(self.delay)
        return super().evaluate(space, arch, seed, constraints)


def main() -> None:
    mode, run, log, strategy, seed, budget = sys.argv[1:7]
    delay = float(sys.argv[7]) if len(sys.argv) > 7 else 0.01
    options = json.loads(sys.argv[8]) if len(sys.argv) > 8 else {"population": 8}
    evaluator = SlowLoggedTable(log, delay)
    if mode == "start":
        config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy", "latency"],
                              strategy=strategy, budget=int(budget), seed=int(seed), strategy_options=options)
        session = start(config, run, evaluator=evaluator, progress=False, log=lambda s: None)
    else:
        session = resume(run, evaluator=evaluator, progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()


def kill_and_resume(args: list[str], run: Path, log: Path, times: int, rng: random.Random, max_delay: float = 0.4) -> int:
    """Start the worker on `run`, SIGKILL it `times` times (each time once it has evaluated
    something, after a random delay), resume it after each kill, then let it finish. Returns the
    number of kills that landed (a process may finish before its kill)."""
    worker = [sys.executable, str(Path(__file__).resolve())]
    kills, mode = 0, "start"
    for _ in range(times):
        proc = subprocess.Popen(worker + [mode, str(run), str(log)] + args)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (log.exists() and f"{proc.pid} " in log.read_text()):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, max_delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        mode = "resume"
    subprocess.run(worker + ["resume", str(run), str(log)] + args, check=True, timeout=300)
    return kills


if __name__ == "__main__":
    main()
