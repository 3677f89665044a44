"""A search process for the kill-and-resume tests (run as a script, killed with SIGKILL).

    python tests/resume_worker.py start|resume RUN LOG STRATEGY SEED BUDGET

It searches NAS-Bench-201 through the tabular evaluator, slowed down a little so that a kill
lands in the middle of things, and appends one line per evaluation to LOG (pid and key), so the
test can tell which candidates were evaluated more than once.
"""

from __future__ import annotations

import os
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
    evaluator = SlowLoggedTable(log, delay)
    if mode == "start":
        config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy", "latency"],
                              strategy=strategy, budget=int(budget), seed=int(seed), strategy_options={"population": 8})
        session = start(config, run, evaluator=evaluator, progress=False, log=lambda s: None)
    else:
        session = resume(run, evaluator=evaluator, progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()


if __name__ == "__main__":
    main()
