"""Strategies on NAS-Bench-201, side by side in one run, through the real driver and run store.

    python benchmarks/nb201_strategies.py [--seeds 20] [--hv-seeds 10] [--strategies random,evolution,nsga2,rl]

1. CIFAR-10, accuracy only: each strategy searches on the 12-epoch cifar10-valid validation
   accuracy for 100 evaluations; the pick is the candidate with the best validation accuracy;
   its 200-epoch CIFAR-10 test accuracy is reported (mean +- standard deviation over seeds),
   beside the published numbers (NAS-Bench-201 paper, Dong & Yang 2020, Table 5 / NATS-Bench):
   regularised evolution 93.92 +- 0.30, random search 93.70 +- 0.36, REINFORCE 93.85 +- 0.37,
   optimum 94.37. Evaluations count distinct networks (a proposal whose canonical key was already
   evaluated is answered from the store and not counted). Below the table, whether each
   strategy learns: the mean validation accuracy of its proposals (duplicates included) in the
   first and the last quarter of each run, and in how many seeds the last quarter is higher.
2. Accuracy vs latency (`1080ti_bs1_ms`): hypervolume of the front found, as a fraction of the
   true front's (from the whole table); both objectives normalised to [0, 1] over the table
   (validation accuracy maximised, latency minimised), reference point 1.1. nsga2 with 300
   evaluations against random with 1,000, averaged over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas import pareto  # noqa: E402
from nas.nb201 import NB201Table  # noqa: E402
from nas.search import SearchResult, search  # noqa: E402
from nas.space import load_space  # noqa: E402

PUBLISHED = {"random": "93.70 +- 0.36", "evolution": "93.92 +- 0.30", "rl": "93.85 +- 0.37"}


def table_runs(strategy: str, objectives: str, budget: int, seeds: int) -> Iterator[SearchResult]:
    """One search per seed on the NB201 table, each in a throw-away run directory."""
    space = load_space("nb201")
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            yield search(space, data="nb201:cifar10", strategy=strategy, objectives=objectives, budget=budget, seed=seed,
                         run=Path(tmp) / "run", progress=False)


def accuracy_only(strategies: list[str], seeds: int, budget: int) -> None:
    print(f"1. CIFAR-10, accuracy only, {budget} evaluations, {seeds} seeds: 200-epoch test accuracy of the pick")
    print(f"{'strategy':<10} {'mean':>7} {'std':>6} {'min':>7} {'max':>7}   published        seconds")
    means = {}
    quarters: dict[str, list[tuple[float, float]]] = {}
    for name in strategies:
        accs = []
        t0 = time.perf_counter()
        for result in table_runs(name, "accuracy", budget, seeds):
            accs.append(100 * result.best.test["test_accuracy"])
            sampled = [100 * c.metrics["val_accuracy"] for c in result.candidates if "val_accuracy" in c.metrics]
            q = max(1, len(sampled) // 4)
            quarters.setdefault(name, []).append((statistics.mean(sampled[:q]), statistics.mean(sampled[-q:])))
        means[name] = statistics.mean(accs)
        print(f"{name:<10} {statistics.mean(accs):>7.2f} {statistics.stdev(accs):>6.2f} {min(accs):>7.2f} {max(accs):>7.2f}   "
              f"{PUBLISHED.get(name, '-'):<16} {time.perf_counter() - t0:>6.1f}")
    print(f"{'optimum':<10} {94.37:>7.2f}")
    print("validation accuracy of the proposals, first -> last quarter of each run (mean over seeds):")
    for name, qs in quarters.items():
        first, last = statistics.mean(a for a, _ in qs), statistics.mean(b for _, b in qs)
        print(f"   {name:<10} {first:6.2f} -> {last:6.2f}   higher in {sum(b > a for a, b in qs)} of {len(qs)} seeds")
    if "evolution" in means and "random" in means:
        print(f"evolution >= 93.9: {'yes' if means['evolution'] >= 93.9 else 'NO'}; evolution beats random: "
              f"{'yes' if means['evolution'] > means['random'] else 'NO'}")
    if "rl" in means and "random" in means:
        print(f"rl beats random: {'yes' if means['rl'] > means['random'] else 'NO'}")
    print()


def latency_hypervolume(seeds: int, nsga2_budget: int, random_budget: int, extra: list[str]) -> None:
    table = NB201Table.load()
    acc = table.column("c10valid_valid_acc_12ep").astype(float)
    lat = table.column("1080ti_bs1_ms").astype(float)
    ok = ~table.degenerate
    F = np.stack([-acc[ok], lat[ok]], axis=1)
    lower, upper = F.min(axis=0), F.max(axis=0)
    true_front = F[pareto.pareto_mask(F)]
    true_hv = pareto.normalized_hypervolume(true_front, lower, upper, ref_offset=0.1)
    print(f"2. accuracy vs latency (1080ti_bs1_ms), {seeds} seeds: hypervolume as a fraction of the true front's")
    print(f"   true front: {len(true_front)} cells, hypervolume {true_hv:.4f} (normalised over the table, reference 1.1)")
    runs = [("nsga2", nsga2_budget), ("random", random_budget)] + [(name, nsga2_budget) for name in extra]
    fractions: dict[str, list[float]] = {}
    for name, budget in runs:
        fr = []
        t0 = time.perf_counter()
        for result in table_runs(name, "accuracy,latency", budget, seeds):
            found = np.array([[-c.metrics["val_accuracy"] * 100, c.metrics["latency_ms"]] for c in result.front])
            fr.append(pareto.normalized_hypervolume(found, lower, upper, ref_offset=0.1) / true_hv)
        fractions[f"{name}@{budget}"] = fr
        print(f"   {name:<8} {budget:>5} evaluations: {statistics.mean(fr):.4f} +- {statistics.stdev(fr):.4f}   ({time.perf_counter() - t0:.1f} s)")
    a, b = statistics.mean(fractions[f"nsga2@{nsga2_budget}"]), statistics.mean(fractions[f"random@{random_budget}"])
    print(f"   nsga2 with {nsga2_budget} >= random with {random_budget}: {'yes' if a >= b else 'NO'} ({a:.4f} vs {b:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--hv-seeds", type=int, default=10)
    ap.add_argument("--strategies", default="random,evolution,nsga2,rl")
    ap.add_argument("--skip", choices=("accuracy", "hypervolume"))
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    if args.skip != "accuracy":
        accuracy_only(strategies, args.seeds, args.budget)
    if args.skip != "hypervolume":
        latency_hypervolume(args.hv_seeds, 300, 1000, [s for s in strategies if s not in ("nsga2", "random", "evolution")])


if __name__ == "__main__":
    main()
