"""Multi-fidelity search at equal wall clock: no scheduler, ASHA, Hyperband, and Optuna's TPE with
its HyperbandPruner, on the same space, data, builder and trainer, over several seeds.

    python benchmarks/multifidelity.py                          # mlp on digits, 60 s a run, 3 seeds
    python benchmarks/multifidelity.py --seeds 5                # the table in benchmarks/results/multifidelity_cpu.txt
    python benchmarks/multifidelity.py --tasks mlp:digits,cnn:mnist5k --seconds 120 --seeds 3
    python benchmarks/multifidelity.py --tasks cnn:mnist5k --seconds 200 --seeds 1 --modes one --epochs 3 --constraints 'flops<=3m'
    python benchmarks/multifidelity.py --tasks mlp:mnist5k --modes two --methods none,asha --no-optuna --seeds 10   # 750 validation images: no ceiling
    python benchmarks/multifidelity.py --strategy random --modes one --methods none,asha   # the scheduler alone
    python benchmarks/multifidelity.py --modes two --strategy-option uniform=0             # a strategy option changed
    python benchmarks/multifidelity.py --seeds 5 --json a.json & python benchmarks/multifidelity.py --seeds 5 --first-seed 5 --json b.json
    python benchmarks/multifidelity.py --merge a.json b.json    # one table of both (two processes side by side)
    python benchmarks/multifidelity.py --device cuda --tasks cnn:mnist5k --seconds 12 --seeds 2 --epochs 9   # the GPU check
                                                                # (bash tools/gpu_checks.sh mf, under 5 min)

Each run gets the same wall-clock budget (`--seconds`; training stops at the first epoch boundary
past it, for every method) and one CPU thread. The nas methods run twice: with one objective
(accuracy, aging evolution) and with two (accuracy and parameters, NSGA-II); Optuna runs with one,
since it cannot prune several (optuna/optuna#3450). Optuna suggests each active decision of the
space as a categorical, define-by-run, builds the network with the same builder, trains it with
the same trainer and reports the validation accuracy after every epoch to the pruner.

Printed per method, as mean +- standard deviation over seeds: candidates trained (started), total
epochs, optimizer steps per epoch (averaged over the epochs trained: a smaller batch takes more steps
an epoch), the median parameter count of the candidates trained (the size of what the strategy
proposed: a larger network's epoch costs more), the best candidate's validation and test accuracy (best by validation), and the
hypervolume of the (accuracy, params) front of everything the run trained, on one normalisation
per task (accuracy error in [0, 1], parameters between the smallest and largest seen in any run of
the task, reference point 1.1); then the ratios against no scheduler and against Optuna.
Needs the `bench` extra (pip install 'nas[bench]') for Optuna.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nas import pareto  # noqa: E402
from nas.cli import parse_strategy_options  # noqa: E402
from nas.errors import UsageError  # noqa: E402
from nas.evaluators import TrainingEvaluator  # noqa: E402
from nas.objectives import parse_constraints  # noqa: E402
from nas.runs import SearchConfig, space_config  # noqa: E402
from nas.search import seed_for, start  # noqa: E402
from nas.space import load_space  # noqa: E402
from nas.train import resolve_device  # noqa: E402

METHODS = ("none", "asha", "hyperband")


def run_nas(space: Any, data: str, evaluator: TrainingEvaluator, scheduler: str, objectives: list[str], seconds: float,
            seed: int, epochs: int, min_epochs: int, eta: int, folder: Path, device: str = "cpu",
            constraints: dict[str, float] | None = None, strategy: str = "auto",
            strategy_options: dict[str, Any] | None = None) -> dict[str, Any]:
    config = SearchConfig(space=space_config(space), data=data, objectives=objectives, budget=None, time_budget=seconds, seed=seed,
                          strategy=strategy, strategy_options=dict(strategy_options or {}),
                          constraints=dict(constraints or {}),
                          device=device, train={"max_epochs": epochs}, scheduler=scheduler,
                          min_epochs=min_epochs if scheduler != "none" else 1, eta=eta if scheduler != "none" else 3)
    t0 = time.monotonic()
    session = start(config, folder / f"{scheduler}-{len(objectives)}-{seed}", evaluator=evaluator, progress=False, log=lambda s: None)
    try:
        result = session.run()
        wall = time.monotonic() - t0
        trained = [c for c in result.candidates if c.duplicate_of is None and c.state in ("complete", "failed")]
        done = [c for c in trained if c.state == "complete"]
        best = max(done, key=lambda c: (c.metrics["val_accuracy"], -c.id)) if done else None
        test = None
        if best is not None and session.store.weights_path(best.weights_id).exists():
            test = evaluator.test(session.space, session.space.make(best.arch), session.store.load_weights(best.weights_id))["test_accuracy"]
        points = [(c.metrics["val_accuracy"], c.metrics["params"]) for c in done]
        return {"trained": len(trained), "epochs": sum(int(c.metrics.get("epochs") or 0) for c in trained),
                "steps": steps_per_epoch(space, evaluator, [(c.arch, int(c.metrics.get("epochs") or 0)) for c in trained]),
                "val": best.metrics["val_accuracy"] if best else float("nan"), "test": test, "points": points, "wall": wall,
                "params": median_params([c.metrics.get("params") for c in trained]),
                "point_epochs": [int(c.metrics.get("epochs") or 0) for c in done]}
    finally:
        session.store.close()


def run_optuna(space: Any, evaluator: TrainingEvaluator, seconds: float, seed: int, epochs: int, min_epochs: int, eta: int,
               constraints: dict[str, float] | None = None) -> dict[str, Any]:
    import random

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not a warning per infeasible trial (a constraint, not trained)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs, reduction_factor=eta))
    deadline = time.time() + seconds
    log: list[dict[str, Any]] = []

    def categorical(trial: Any, decision: Any) -> tuple[Any]:
        values = list(decision.values)
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            return (trial.suggest_categorical(decision.label, values),)
        return (values[trial.suggest_categorical(decision.label, list(range(len(values))))],)

    def objective(trial: Any) -> float:
        values = space._complete({}, random.Random(0), fill=lambda d: categorical(trial, d))  # define-by-run: active decisions only
        arch = space._arch(values)
        if not arch.valid:
            return float("nan")  # a failed trial (the space's own search never proposes it)
        pruned: list[dict[str, Any]] = []
        seen: list[float] = []

        def on_epoch(record: dict[str, Any]) -> None:
            seen.append(record["val_accuracy"])
            trial.report(record["val_accuracy"], record["epoch"])
            if trial.should_prune():
                pruned.append(record)
                raise optuna.TrialPruned()

        ev = evaluator.evaluate(space, arch, seed=seed_for(seed, arch.key), constraints=constraints, on_epoch=on_epoch, deadline=deadline)
        if ev.status == "infeasible":
            return float("nan")  # broke a constraint known before training: not trained (as in nas's search)
        entry = {"arch": arch, "state": ev.state, "params": ev.metrics.get("params")}
        if pruned:
            entry.update(epochs=pruned[-1]["epoch"], val=max(seen))  # the best epoch so far, as fit reports it
            log.append(entry)
            raise optuna.TrialPruned()
        if not ev.ok:
            entry.update(epochs=int(ev.metrics.get("epochs") or 0), val=None)
            log.append(entry)
            return float("nan")
        entry.update(epochs=int(ev.metrics["epochs"]), val=float(ev.metrics["val_accuracy"]))
        log.append(entry)
        return entry["val"]

    t0 = time.monotonic()
    while time.time() < deadline:
        study.optimize(objective, n_trials=1)
    wall = time.monotonic() - t0
    done = [e for e in log if e["val"] is not None]
    best = max(done, key=lambda e: e["val"]) if done else None
    if best is not None and best["state"] is None:
        # the pick was pruned: its weights went with the trial. Training is seeded, so training it
        # again to the epoch it was pruned at (the schedule over the maximum epochs) gives the same
        # network, whose test accuracy is then Optuna's (outside the wall-clock budget, as every test)
        again = evaluator.evaluate(space, best["arch"], seed=seed_for(seed, best["arch"].key), constraints=constraints, epochs=best["epochs"])
        if again.ok and abs(float(again.metrics["val_accuracy"]) - best["val"]) < 1e-9:
            best["state"] = again.state
        else:
            print(f"  optuna seed {seed}: the pruned pick trained again gave val {again.metrics.get('val_accuracy')}, not {best['val']}:"
                  " no test accuracy", flush=True)
    test = evaluator.test(space, best["arch"], best["state"])["test_accuracy"] if best and best["state"] is not None else None
    return {"trained": len(log), "epochs": sum(e["epochs"] for e in log), "val": best["val"] if best else float("nan"), "test": test,
            "steps": steps_per_epoch(space, evaluator, [(e["arch"], e["epochs"]) for e in log]),
            "points": [(e["val"], e["params"]) for e in done], "wall": wall, "params": median_params([e["params"] for e in log])}


def median_params(values: list[Any]) -> float:
    """The median parameter count of the candidates a run trained: how large the networks its
    strategy proposed were (an epoch of a larger network costs more)."""
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def steps_per_epoch(space: Any, evaluator: TrainingEvaluator, trained: list[tuple[Any, int]]) -> float:
    """Optimizer steps per epoch, averaged over every epoch a run trained: an epoch of a network with
    a smaller batch takes more steps (the trainer's full batches, n // batch), so this says how much
    one epoch cost each method, apart from the number of epochs."""
    from nas.train import TrainConfig

    n = len(evaluator.dataset.y_train)
    steps = epochs = 0
    for arch, e in trained:
        cfg = TrainConfig.for_arch(space.resolve(arch).train, **evaluator.train_options)
        steps += e * max(1, n // min(cfg.batch_size, n))
        epochs += e
    return steps / epochs if epochs else float("nan")


def hypervolume(points: list[tuple[float, float]], lo: float, hi: float) -> float:
    if not points:
        return 0.0
    F = np.array([(1.0 - a, p) for a, p in points], dtype=float)
    return pareto.normalized_hypervolume(F, np.array([0.0, lo]), np.array([1.0, hi]))


def spread(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    mean = statistics.fmean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{mean:.4g} +- {sd:.2g}"


def mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(vals) if vals else float("nan")


def times(values: list[float], base: list[float]) -> str:
    """The ratio of the means, 2 decimals ("-" when the base's mean is 0 or undefined)."""
    a, b = mean(values), mean(base)
    return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "-"


def report(task: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    """The table, the hypervolumes per seed and the ratios of one task's runs (`runs`: method -> one
    result per seed), on one normalisation of the parameters over all of them."""
    params = [p for rs in runs.values() for r in rs for _, p in r["points"]]
    lo, hi = (min(params), max(params)) if params else (0.0, 1.0)
    for rs in runs.values():
        for r in rs:
            r["hv"] = hypervolume(r["points"], lo, hi)
    print(f"\n## {task}  (hypervolume of (1 - val accuracy, params), params normalised to [{lo:,.0f}, {hi:,.0f}], reference 1.1)")
    head = f"{'method':<28} {'trained':>16} {'epochs':>18} {'steps/epoch':>14} {'median params':>18} {'best val':>18} {'best test':>18} {'hypervolume':>18} {'wall s':>14}"
    print(head)
    print("-" * len(head))
    for name, rs in runs.items():
        print(f"{name:<28} {spread([r['trained'] for r in rs]):>16} {spread([r['epochs'] for r in rs]):>18} {spread([r['steps'] for r in rs]):>14}"
              f" {spread([r['params'] for r in rs]):>18} {spread([r['val'] for r in rs]):>18}"
              f" {spread([r['test'] for r in rs]):>18} {spread([r['hv'] for r in rs]):>18} {spread([r['wall'] for r in rs]):>14}")
    print("\nhypervolume per seed: " + "; ".join(f"{name} " + " ".join(f"{r['hv']:.4f}" for r in rs) for name, rs in runs.items()))
    print("\nratios (means): candidates trained x, best test accuracy difference in points, hypervolume x")
    for objectives in [o for o in ("acc", "acc,params") if f"none ({o})" in runs]:
        base = runs[f"none ({objectives})"]
        for m in [m for m in ("asha", "hyperband") if f"{m} ({objectives})" in runs]:
            rs = runs[f"{m} ({objectives})"]
            print(f"  {m} ({objectives}) vs none ({objectives}): trained x{times([r['trained'] for r in rs], [r['trained'] for r in base])},"
                  f" test {100 * (mean([r['test'] for r in rs]) - mean([r['test'] for r in base])):+.2f} points,"
                  f" hypervolume x{mean([r['hv'] for r in rs]) / max(mean([r['hv'] for r in base]), 1e-12):.3f}")
    if "optuna tpe+hyperband (acc)" in runs and "none (acc)" in runs:
        peer = runs["optuna tpe+hyperband (acc)"]
        for m in [m for m in METHODS if f"{m} (acc)" in runs]:
            rs = runs[f"{m} (acc)"]
            print(f"  {m} (acc) vs optuna: trained x{times([r['trained'] for r in rs], [r['trained'] for r in peer])},"
                  f" best val {100 * (mean([r['val'] for r in rs]) - mean([r['val'] for r in peer])):+.2f} points,"
                  f" test {100 * (mean([r['test'] for r in rs]) - mean([r['test'] for r in peer])):+.2f} points,"
                  f" hypervolume x{mean([r['hv'] for r in rs]) / max(mean([r['hv'] for r in peer]), 1e-12):.3f}")
    print(flush=True)


def merge(files: list[Path]) -> None:
    """One table of the runs several `--json` files hold (e.g. seeds run in two processes side by
    side), each method's seeds in the order of the files."""
    import json

    tasks: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for file in files:
        for task, methods in json.loads(file.read_text()).items():
            for name, rs in methods.items():
                tasks.setdefault(task, {}).setdefault(name, []).extend(rs)
    print(f"# multifidelity: merged {', '.join(str(f) for f in files)}")
    for task, runs in tasks.items():
        print(f"  {task}: " + ", ".join(f"{name} {len(rs)} seeds" for name, rs in runs.items()))
        report(task, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="mlp:digits", help="space:data pairs, comma-separated (default mlp:digits)")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-clock budget of each run (default 60)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="the seeds run are first-seed, first-seed + 1, ... (default 0)")
    ap.add_argument("--epochs", type=int, default=27, help="the maximum epochs of a candidate (default 27: rungs 1, 3, 9, 27)")
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--no-optuna", action="store_true", help="leave the peer out (when optuna is not installed)")
    ap.add_argument("--device", default="cpu", help="training device: cpu (default) or cuda")
    ap.add_argument("--modes", default="both", choices=("one", "two", "both"),
                    help="the nas methods with one objective (accuracy), two (accuracy, params) or both (default)")
    ap.add_argument("--methods", default="none,asha,hyperband", help="the nas methods to run (default none,asha,hyperband)")
    ap.add_argument("--constraints", default="", help="constraints on every method's candidates, e.g. flops<=2m (checked before training;"
                    " a violating candidate is not trained)")
    ap.add_argument("--strategy", default="auto", help="the nas methods' strategy (default auto, the search's default; e.g. random)")
    ap.add_argument("--strategy-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the nas methods' strategy, as nas search --strategy-option (repeatable; e.g. uniform=0)")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON", help="print one table of the runs in these --json files"
                    " (seeds run in separate processes) and run nothing")
    ap.add_argument("--json", type=Path, help="also write every run (its points included) to this JSON file")
    args = ap.parse_args()
    if args.merge:
        missing = [str(f) for f in args.merge if not f.is_file()]
        if missing:
            ap.exit(2, f"multifidelity.py: --merge: no such file: {', '.join(missing)}\n")
        merge(args.merge)
        return
    torch.set_num_threads(1)
    try:
        resolve_device(args.device)  # one clear line for a device that is not there, before any run
        constraints = parse_constraints([args.constraints]) if args.constraints else {}
        strategy_options = parse_strategy_options(args.strategy_option)
    except UsageError as exc:
        ap.exit(2, f"multifidelity.py: {exc}\n")
    print(f"# multifidelity: {args.seconds:g} s per run, seeds {args.seeds}{f' (from {args.first_seed})' if args.first_seed else ''}, max epochs {args.epochs}, rungs from {args.min_epochs} by eta {args.eta},"
          f" device {args.device} (1 CPU thread), strategy {args.strategy}{''.join(f' {k}={v}' for k, v in strategy_options.items())}, torch {torch.__version__}" + (f", constraints {args.constraints}" if constraints else "")
          + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""), flush=True)
    everything: dict[str, Any] = {}
    for task in args.tasks.split(","):
        space_name, data = task.split(":")
        space = load_space(space_name)
        evaluator = TrainingEvaluator(data, device=args.device, max_epochs=args.epochs)
        space = evaluator.fit_space(space)
        runs: dict[str, list[dict[str, Any]]] = {}
        chosen = [m for m in args.methods.split(",") if m]
        if any(m not in METHODS for m in chosen):
            ap.error(f"--methods: each of {', '.join(METHODS)}, got {args.methods!r}")
        methods = ([(m, ["accuracy"]) for m in chosen] if args.modes != "two" else []) + \
            ([(m, ["accuracy", "params"]) for m in chosen] if args.modes != "one" else [])
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for method, objectives in methods:
                    name = f"{method} ({'acc' if len(objectives) == 1 else 'acc,params'})"
                    out = run_nas(space, data, evaluator, method, objectives, args.seconds, seed, args.epochs, args.min_epochs, args.eta, Path(tmp), args.device,
                                  constraints, args.strategy, strategy_options)
                    runs.setdefault(name, []).append(out)
                    print(f"  {task} seed {seed} {name}: {out['trained']} trained, {out['epochs']} epochs, best val {out['val']:.4f}"
                          f" test {out['test'] if out['test'] is None else round(out['test'], 4)}, {out['wall']:.1f} s", flush=True)
                if not args.no_optuna:
                    out = run_optuna(space, evaluator, args.seconds, seed, args.epochs, args.min_epochs, args.eta, constraints)
                    runs.setdefault("optuna tpe+hyperband (acc)", []).append(out)
                    print(f"  {task} seed {seed} optuna: {out['trained']} trained, {out['epochs']} epochs, best val {out['val']:.4f}"
                          f" test {out['test'] if out['test'] is None else round(out['test'], 4)}, {out['wall']:.1f} s", flush=True)
        report(task, runs)
        if args.json is not None:
            import json

            everything.setdefault(task, {}).update({name: [{k: v for k, v in r.items()} for r in rs] for name, rs in runs.items()})
            args.json.write_text(json.dumps(everything, indent=1, default=float))


if __name__ == "__main__":
    main()
