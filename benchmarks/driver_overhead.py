"""Driver overhead: candidates per second through ask, evaluate (NAS-Bench-201 table), tell and
the run store, for each strategy, side by side in one run.

    python benchmarks/driver_overhead.py [--budget 2000]

Target on a 2-core CPU: at least 500 candidates per second. Each candidate costs a proposal by
the strategy (sampling or breeding, which builds and hashes the architecture's network spec), a
table lookup, the objective bookkeeping, and two SQLite transactions (proposed, finished), each
saving the strategy's state with its RNG.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--strategies", default="random,evolution,nsga2")
    ap.add_argument("--objectives", default="accuracy,latency")
    args = ap.parse_args()
    space = load_space("nb201")
    print(f"NAS-Bench-201 cifar10, objectives {args.objectives}, {args.budget} distinct candidates per strategy\n")
    print(f"{'strategy':<10} {'evaluated':>9} {'duplicates':>10} {'seconds':>8} {'cand/s':>8} {'incl. dup/s':>11}")
    for name in args.strategies.split(","):
        objectives = "accuracy" if name == "evolution" else args.objectives
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = search(space, data="nb201:cifar10", strategy=name, objectives=objectives, budget=args.budget,
                            run=Path(tmp) / "run", progress=False, log=lambda line: None)
            seconds = time.perf_counter() - t0
        dups = sum(1 for c in result.candidates if c.source)
        evaluated = len(result.candidates) - dups
        print(f"{name:<10} {evaluated:>9} {dups:>10} {seconds:>8.2f} {evaluated / seconds:>8.0f} {len(result.candidates) / seconds:>11.0f}")
    print("\ntarget: >= 500 candidates per second (cand/s counts distinct evaluations only)")


if __name__ == "__main__":
    main()
