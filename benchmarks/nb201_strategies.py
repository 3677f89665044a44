"""Strategies on NAS-Bench-201 against Optuna, side by side in one run, through the real driver.

    python benchmarks/nb201_strategies.py [--seeds 100] [--budgets 50,100,200] [--datasets cifar10,cifar100,imagenet16]
            [--methods auto,evolution,nsga2,random,tpe] [--extra-methods nsga2+ensemble,random+ensemble,rl,auto+synflow,...]
        [--extra-seeds 20] [--extra-datasets cifar10] [--hv-seeds 20] [--hv-budget 300] [--jobs 2]

Every method searches the NB201 table for the 12-epoch validation accuracy; the budget counts
trained networks (distinct architecture keys: a proposal of a network already trained is
answered from the run store, for Optuna from a cache, and is not counted; Optuna's
suggestions of degenerate cells, which our spaces cannot propose, are answered with the table's
value and not counted either, which favours Optuna). One run per seed with the largest budget;
the pick at budget B is the best validation accuracy among the first B trained networks (no
method knows its budget, so this is the run it would have made with budget B).

Methods: `evolution`, `nsga2`, `random`, `rl` (ours, plain; `auto` is `--strategy auto`),
`NAME+ensemble` (the predictor), `NAME+PROXY` (a warm start from 100 samples by that proxy,
e.g. `evolution+synflow`), combinations such as `evolution+ensemble+synflow`, and Optuna's
`tpe` (TPESampler, defaults) and `optuna-nsga2-20` / `optuna-nsga2-50` (NSGAIISampler, population
20 / 50), each suggesting the six edge ops as categoricals (seeded with the run seed).

1. Accuracy only, on each dataset: the pick's 200-epoch test accuracy, mean +- standard
   deviation and the standard error of the mean over seeds; how many distinct cell strings each
   method proposed (duplicates included) up to the largest budget; proposals per second
   (everything the driver asked, over the wall clock); the published numbers beside them (NAS-
   Bench-201 paper, Dong & Yang 2020, Table 5, CIFAR-10: REA 93.92 +- 0.30, random 93.70 +- 0.36,
   REINFORCE 93.85 +- 0.37; White et al. 2021, BANANAS on NB201 CIFAR-10 at 150 queries about
   94.2), and the optimum (the best 200-epoch test accuracy of the cell with the best 12-epoch
   validation accuracy, which is what a perfect search on this signal picks).
2. Accuracy against `1080ti_bs1_ms` latency on CIFAR-10: the hypervolume of the front found
   within the budget as a fraction of the true front's (both objectives normalised over the
   whole table, reference point 1.1), mean +- standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas import pareto  # noqa: E402
from nas.nb201 import DATASETS, OPS, NB201Table  # noqa: E402
from nas.proxies import PROXIES  # noqa: E402
from nas.search import search  # noqa: E402
from nas.space import load_space  # noqa: E402

PUBLISHED = {("cifar10", "random"): "93.70 +- 0.36", ("cifar10", "evolution"): "93.92 +- 0.30", ("cifar10", "rl"): "93.85 +- 0.37",
             ("cifar10", "evolution+ensemble"): "BANANAS ~94.2 @150"}
OURS = ("auto", "evolution", "nsga2", "random", "rl")
LATENCY = "1080ti_bs1_ms"


def parse_method(method: str) -> tuple[str, dict[str, Any]]:
    """'evolution+ensemble+synflow' -> ('evolution', {'predictor': 'ensemble', 'warm_start': 'synflow'})."""
    name, *mods = method.split("+")
    if name not in OURS:
        raise SystemExit(f"unknown method {method!r}")
    options: dict[str, Any] = {}
    for m in mods:
        if m in ("ensemble", "none"):
            options["predictor"] = m
        elif m in PROXIES:
            options["warm_start"] = m
        else:
            raise SystemExit(f"unknown modifier {m!r} in {method!r}")
    return name, options


# -- one run -----------------------------------------------------------------------------------
def ours(method: str, dataset: str, objectives: str, budget: int, seed: int) -> dict[str, Any]:
    """Our search on the table; the trained networks in order, and what was proposed."""
    name, options = parse_method(method)
    space = load_space("nb201")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = search(space, data=f"nb201:{dataset}", strategy=name, objectives=objectives, budget=budget, seed=seed,
                        run=Path(tmp) / "run", progress=False, strategy_options=options, log=lambda s: None)
    seconds = time.perf_counter() - t0
    trained = [c for c in result.candidates if c.duplicate_of is None and "nb201_index" in c.metrics]
    return {"index": [int(c.metrics["nb201_index"]) for c in trained], "proposed": len(result.candidates),
            "cells": len({json_cell(c.arch) for c in result.candidates}), "seconds": seconds}


def json_cell(values: dict[str, Any]) -> str:
    return "|".join(f"{k}={values[k]}" for k in sorted(values))


def optuna_run(method: str, dataset: str, objectives: str, budget: int, seed: int) -> dict[str, Any]:
    """Optuna's sampler on the table, suggesting the six edge ops; stops at `budget` distinct keys."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("nb201")
    labels = space.cell_form[1]
    table = NB201Table.load()
    acc = table.column(DATASETS[dataset]["search"])
    lat = table.column(LATENCY)
    multi = objectives != "accuracy"
    if method == "tpe":
        sampler: Any = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.NSGAIISampler(population_size=int(method.rsplit("-", 1)[1]), seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"], sampler=sampler)
    keys: dict[str, int] = {}
    order: list[int] = []
    cells: set[tuple[str, ...]] = set()
    proposed = 0
    t0 = time.perf_counter()
    while len(keys) < budget and proposed < 50 * budget:
        trial = study.ask()
        ops = tuple(trial.suggest_categorical(label, list(OPS)) for label in labels)
        proposed += 1
        cells.add(ops)
        i = table.index(list(ops))
        arch = space.make(dict(zip(labels, ops)))
        if arch.valid and arch.key not in keys:
            keys[arch.key] = i
            order.append(i)
        value = float(acc[i])
        study.tell(trial, [value, float(lat[i])] if multi else value)
    return {"index": order, "proposed": proposed, "cells": len(cells), "seconds": time.perf_counter() - t0}


def one(args: tuple[str, str, str, int, int]) -> dict[str, Any]:
    method, dataset, objectives, budget, seed = args
    run = optuna_run if method == "tpe" or method.startswith("optuna-") else ours
    return run(method, dataset, objectives, budget, seed)


def runs(method: str, dataset: str, objectives: str, budget: int, seeds: int, jobs: int) -> list[dict[str, Any]]:
    work = [(method, dataset, objectives, budget, s) for s in range(seeds)]
    if jobs <= 1:
        return [one(w) for w in work]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(one, work))


# -- the two sections --------------------------------------------------------------------------
def accuracy_only(methods: list[str], datasets: list[str], budgets: list[int], seeds: int, jobs: int,
                  seeds_of: dict[str, int]) -> dict[tuple[str, str, int], list[float]]:
    table = NB201Table.load()
    out: dict[tuple[str, str, int], list[float]] = {}
    top = max(budgets)
    for dataset in datasets:
        valid = table.column(DATASETS[dataset]["search"]).astype(float)
        test = table.column(DATASETS[dataset]["test"]).astype(float)
        best = np.where(table.degenerate, -np.inf, valid)
        tied = np.flatnonzero(best == best.max())  # cells tied for the best validation accuracy
        optimum = f"{test[tied].min():.2f}" if len(tied) == 1 else f"{test[tied].min():.2f}..{test[tied].max():.2f} ({len(tied)} cells tie)"
        print(f"1. {dataset}, accuracy only: 200-epoch test accuracy of the pick (best 12-epoch validation accuracy)")
        head = "".join(f"   @{b:<4} mean +- std (se)   " for b in budgets)
        print(f"{'method':<28}{'seeds':>5}{head}cells@{top:<5} prop/s   published")
        for method in methods:
            n = seeds_of.get(method, seeds)
            t0 = time.perf_counter()
            rs = runs(method, dataset, "accuracy", top, n, jobs)
            cols = ""
            for b in budgets:
                accs = [float(test[r["index"][:b][int(np.argmax(valid[r["index"][:b]]))]]) for r in rs if r["index"]]
                out[(dataset, method, b)] = accs
                sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
                cols += f"   {statistics.mean(accs):6.2f} +- {sd:4.2f} ({sd / math.sqrt(len(accs)):.3f})"
            cells = statistics.mean(r["cells"] for r in rs)
            rate = sum(r["proposed"] for r in rs) / sum(r["seconds"] for r in rs)
            print(f"{method:<28}{n:>5}{cols}   {cells:>7.0f} {rate:>7.0f}   {PUBLISHED.get((dataset, method), '-')}"
                  f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"{'optimum (best 12-ep valid)':<28}      {optimum}")
        print()
    return out


def latency_hypervolume(methods: list[str], seeds: int, budget: int, jobs: int) -> dict[str, list[float]]:
    table = NB201Table.load()
    acc = table.column(DATASETS["cifar10"]["search"]).astype(float)
    lat = table.column(LATENCY).astype(float)
    ok = ~table.degenerate
    F_all = np.stack([-acc, lat], axis=1)
    F = F_all[ok]
    lower, upper = F.min(axis=0), F.max(axis=0)
    true_hv = pareto.normalized_hypervolume(F[pareto.pareto_mask(F)], lower, upper, ref_offset=0.1)
    print(f"2. cifar10, accuracy against {LATENCY} latency, {budget} trained networks, {seeds} seeds: hypervolume / true front's")
    out: dict[str, list[float]] = {}
    for method in methods:
        t0 = time.perf_counter()
        rs = runs(method, "cifar10", "accuracy,latency", budget, seeds, jobs)
        fr = []
        for r in rs:
            found = F_all[r["index"][:budget]]
            found = found[pareto.pareto_mask(found)]
            fr.append(pareto.normalized_hypervolume(found, lower, upper, ref_offset=0.1) / true_hv)
        out[method] = fr
        rate = sum(r["proposed"] for r in rs) / sum(r["seconds"] for r in rs)
        sd = statistics.stdev(fr) if len(fr) > 1 else 0.0
        print(f"   {method:<26} {statistics.mean(fr):.4f} +- {sd:.4f} (se {sd / math.sqrt(len(fr)):.4f})   "
              f"{rate:>6.0f} proposals/s   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--budgets", default="50,100,200")
    ap.add_argument("--datasets", default="cifar10,cifar100,imagenet16")
    ap.add_argument("--methods", default="auto,evolution,nsga2,random,tpe", help="auto is evolution+ensemble for one objective")
    ap.add_argument("--extra-methods", default="nsga2+ensemble,random+ensemble,rl,evolution+synflow,auto+synflow",
                    help="a second group, with fewer seeds (warm starts are slower: proxies)")
    ap.add_argument("--extra-seeds", type=int, default=20)
    ap.add_argument("--extra-datasets", default="cifar10")
    ap.add_argument("--hv-methods", default="auto,nsga2,nsga2+ensemble,random+ensemble,optuna-nsga2-20,optuna-nsga2-50")
    ap.add_argument("--hv-seeds", type=int, default=20)
    ap.add_argument("--hv-budget", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--skip", choices=("accuracy", "hypervolume"))
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    t0 = time.perf_counter()
    summary = []
    if args.skip != "accuracy":
        methods = [m for m in args.methods.split(",") if m]
        warm = [m for m in args.extra_methods.split(",") if m]
        res = accuracy_only(methods, [d for d in args.datasets.split(",") if d], budgets, args.seeds, args.jobs, {})
        if warm:
            res.update(accuracy_only(warm, [d for d in args.extra_datasets.split(",") if d], budgets, args.extra_seeds, args.jobs, {}))
        key = ("cifar10", "auto", 100)
        if key in res and ("cifar10", "tpe", 100) in res:
            a, t = res[key], res[("cifar10", "tpe", 100)]
            se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(t) / len(t))
            diff = statistics.mean(a) - statistics.mean(t)
            summary.append(f"cifar10 @100: auto {statistics.mean(a):.2f} (>= 94.30: {'yes' if statistics.mean(a) >= 94.30 else 'NO'}); "
                           f"auto - tpe = {diff:.3f}, {diff / se if se else float('inf'):.1f} standard errors of the difference "
                           f"(>= 2: {'yes' if se and diff / se >= 2 else 'NO'})")
    if args.skip != "hypervolume":
        hv = latency_hypervolume([m for m in args.hv_methods.split(",") if m], args.hv_seeds, args.hv_budget, args.jobs)
        if "auto" in hv and "optuna-nsga2-20" in hv:
            a, o = statistics.mean(hv["auto"]), statistics.mean(hv["optuna-nsga2-20"])
            summary.append(f"hypervolume @{args.hv_budget}: auto {a:.4f} (>= 0.995: {'yes' if a >= 0.995 else 'NO'}), "
                           f"optuna-nsga2-20 {o:.4f} (auto ahead: {'yes' if a > o else 'NO'})")
    for line in summary:
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
