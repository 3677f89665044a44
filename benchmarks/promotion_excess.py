"""How many results ASHA's promotion rule sends on from one rung, with one objective and with two.

    python benchmarks/promotion_excess.py                # 150 results a rung, 5 synthetic streams
    python benchmarks/promotion_excess.py --n 300 --trials 10

ASHA (Li et al. 2018) promotes a result as soon as it ranks in the top floor(n / eta) of the n
results recorded at its rung, and a promotion is never taken back. So more than n / eta go on:
a result inside the cut when it arrives goes on even if later ones push it out, and one outside
it goes on when the cut grows past it. How much more depends on how much the ranking moves as
results arrive. This replays synthetic rungs through `nas.schedulers.in_cut` (the rule the
scheduler uses) and counts what went on, checking after every arrival as a free worker would:

- one objective: accuracy only;
- two objectives: (accuracy, parameters), whole non-dominated fronts while they fit in the cut
  (the scheduler's rule), and, for comparison, the ranking's top floor(n / eta) with fronts split
  by crowding distance (the rule before: a split front's order moves with every arrival);

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

from nas.schedulers import RungResult, cutoff, in_cut, rank_rung  # noqa: E402


def promoted(results: list[RungResult], eta: int, split: bool = False) -> int:
    """How many of `results`, arriving in this order, ASHA promotes at some point (`split`: the
    ranking's top floor(n / eta), fronts split by crowding, instead of `in_cut`)."""
    out: set[int] = set()
    seen: list[RungResult] = []
    for r in results:
        seen.append(r)
        out.update(rank_rung(seen)[:cutoff(len(seen), eta)] if split else in_cut(seen, eta))
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
        rows.append(tuple(promoted([x[i] for i in o], args.eta, split) for o in (shuffled, order)
                          for x, split in ((one, False), (two, False), (two, True))))
    a = np.array(rows, dtype=float) / args.n
    print(f"# promotion_excess: {args.n} results a rung, eta {args.eta}, {args.trials} streams; the rule's share is 1/{args.eta} = {1 / args.eta:.3f}")
    print(f"{'stream':<12} {'one objective':>16} {'two: whole fronts':>18} {'two: split fronts':>18}")
    for name, j in (("stationary", 0), ("improving", 3)):
        print(f"{name:<12} " + " ".join(f"{a[:, j + i].mean():>11.3f} +- {a[:, j + i].std():.3f}" for i in range(3)))


if __name__ == "__main__":
    main()
