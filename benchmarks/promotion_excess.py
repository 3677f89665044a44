"""How many results ASHA's promotion rule sends on from one rung, with one objective and with two.

    python benchmarks/promotion_excess.py                # 150 results a rung, 5 synthetic streams
    python benchmarks/promotion_excess.py --n 300 --trials 10

ASHA (Li et al. 2018) promotes a result as soon as it ranks in the top floor(n / eta) of the n
results recorded at its rung, and a promotion is never taken back. So more than n / eta go on:
a result inside the cut when it arrives goes on even if later ones push it out, and one outside
it goes on when the cut grows past it. How much more depends on how much the ranking moves as
results arrive. This replays synthetic rungs through `nas.schedulers.rank_rung` (the rule the
scheduler uses) and counts what went on, checking after every arrival as a free worker would:

- one objective: accuracy only;
- two objectives: (accuracy, parameters), non-dominated sorting then crowding distance;

each for a stationary stream (results arrive in random order) and an improving one (sorted by a
noisy copy of their accuracy: what a learning strategy's proposals look like at the first rung).
The accuracies are drawn as on mlp/digits after one epoch: rising with log parameters, with
noise, rounded to a 269-image validation split. No training: a second of CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.schedulers import RungResult, cutoff, rank_rung  # noqa: E402


def promoted(results: list[RungResult], eta: int) -> int:
    """How many of `results`, arriving in this order, ASHA promotes at some point."""
    out: set[int] = set()
    seen: list[RungResult] = []
    for r in results:
        seen.append(r)
        out.update(rank_rung(seen)[:cutoff(len(seen), eta)])
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150, help="results at the rung (default 150)")
    ap.add_argument("--trials", type=int, default=5, help="synthetic streams (default 5)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.trials):
        logp = rng.uniform(np.log(1e3), np.log(5e5), args.n)
        acc = np.round((0.80 + 0.03 * (logp - logp.mean()) + rng.normal(0, 0.04, args.n)) * 269) / 269
        one = [RungResult(i, float(a)) for i, a in enumerate(acc)]
        two = [RungResult(i, float(a), (float(np.exp(p)),)) for i, (a, p) in enumerate(zip(acc, logp))]
        order = np.argsort(acc + rng.normal(0, 0.04, args.n), kind="stable")
        shuffled = rng.permutation(args.n)
        rows.append((promoted([one[i] for i in shuffled], args.eta), promoted([two[i] for i in shuffled], args.eta),
                     promoted([one[i] for i in order], args.eta), promoted([two[i] for i in order], args.eta)))
    a = np.array(rows, dtype=float) / args.n
    print(f"# promotion_excess: {args.n} results a rung, eta {args.eta}, {args.trials} streams; the rule's share is 1/{args.eta} = {1 / args.eta:.3f}")
    print(f"{'stream':<12} {'one objective':>16} {'two objectives':>16}")
    for name, j in (("stationary", 0), ("improving", 2)):
        print(f"{name:<12} {a[:, j].mean():>9.3f} +- {a[:, j].std():.3f} {a[:, j + 1].mean():>9.3f} +- {a[:, j + 1].std():.3f}")


if __name__ == "__main__":
    main()
