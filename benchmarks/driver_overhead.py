"""Driver overhead: distinct evaluations per second through ask, evaluate (NAS-Bench-201 table),
tell and the run store, for each strategy, side by side in one run.

    python benchmarks/driver_overhead.py [--budget 2000] [--strategies random,evolution,nsga2]

Target on a 2-core CPU: random search at least 2,000 distinct evaluations per second, with the
run's durability kept (synchronous=FULL commits; fast evaluations committed in groups at most
`nas.search.COMMIT_INTERVAL` apart, see README "What a crash can lose"). Each proposal costs
the strategy's ask (sampling or breeding, which resolves the network and hashes it into the
key), then a table lookup, the objective bookkeeping and a row in the store (a duplicate of an
evaluated network is answered from the store). The `ask s` column is the strategies' share
(nas/strategies, nas/space), `driver s` the rest (nas/search, nas/store, the table), and `cpu s`
the process's CPU time, which the machine's other load does not inflate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.search import search  # noqa: E402
from nas.space import load_space  # noqa: E402
from nas.strategies import base  # noqa: E402


class AskTimer:
    """Time spent in the strategies' ask (wraps every registered strategy class while active)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._saved: list[tuple[type, object]] = []

    def __enter__(self) -> "AskTimer":
        for cls in {c for c in base.STRATEGIES.values()}:
            original = cls.__dict__.get("ask")
            if original is None:
                continue

            def timed(self_: object, _original=original) -> object:
                t = time.perf_counter()
                try:
                    return _original(self_)
                finally:
                    self.seconds += time.perf_counter() - t

            self._saved.append((cls, original))
            cls.ask = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, original in self._saved:
            cls.ask = original  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--strategies", default="random,evolution,nsga2")
    ap.add_argument("--objectives", default="accuracy,latency")
    args = ap.parse_args()
    space = load_space("nb201")
    print(f"NAS-Bench-201 cifar10, objectives {args.objectives}, {args.budget} distinct candidates per strategy\n")
    print(f"{'strategy':<10} {'evaluated':>9} {'duplicates':>10} {'seconds':>8} {'cpu s':>6} {'ask s':>6} {'driver s':>8} {'cand/s':>8} {'incl. dup/s':>11}")
    for name in args.strategies.split(","):
        objectives = "accuracy" if name == "evolution" else args.objectives
        with tempfile.TemporaryDirectory() as tmp, AskTimer() as asked:
            t0, c0 = time.perf_counter(), time.process_time()
            result = search(space, data="nb201:cifar10", strategy=name, objectives=objectives, budget=args.budget,
                            run=Path(tmp) / "run", progress=False, log=lambda line: None)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        dups = sum(1 for c in result.candidates if c.duplicate_of is not None)
        evaluated = len(result.candidates) - dups
        print(f"{name:<10} {evaluated:>9} {dups:>10} {seconds:>8.2f} {cpu:>6.2f} {asked.seconds:>6.2f} {seconds - asked.seconds:>8.2f}"
              f" {evaluated / seconds:>8.0f} {len(result.candidates) / seconds:>11.0f}")
    print("\ntarget: random >= 2,000 distinct evaluations per second (cand/s counts distinct evaluations only)")


if __name__ == "__main__":
    main()
