"""The default strategy against the plain ones on real training, at the same number of trainings.

    python benchmarks/guided_training.py                                   # cnn on mnist5k, 30 networks, 3 seeds
    python benchmarks/guided_training.py --space mlp --data digits --budget 30 --seeds 3 --epochs 20
    python benchmarks/guided_training.py --device cuda                     # the GPU check (bash tools/gpu_checks.sh guided)

For each seed, four searches with the same space, data, trainer, seed and number of trained
networks (`--budget`, distinct networks; every candidate trains `--epochs` epochs at most, with
the usual early stopping): `auto` against plain `evolution` with one objective (validation
accuracy), and `auto` against plain `nsga2` with two (accuracy and parameters). Printed per
method, as mean +- standard deviation over seeds: the best validation accuracy, the test
accuracy of that pick (its trained weights on the held-out test split), the best validation
accuracy after the first half of the budget, and for two objectives the hypervolume of the
(1 - validation accuracy, parameters) front, normalised over every run of the benchmark
(parameters between the smallest and largest seen, reference point 1.1). One CPU thread.
"""

from __future__ import annotations

import argparse
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
from nas.evaluators import TrainingEvaluator  # noqa: E402
from nas.objectives import parse_constraints  # noqa: E402
from nas.runs import SearchConfig, space_config  # noqa: E402
from nas.search import start  # noqa: E402
from nas.space import load_space  # noqa: E402

RUNS = (("auto", "accuracy"), ("evolution", "accuracy"), ("auto", "accuracy,params"), ("nsga2", "accuracy,params"))


def one(space: Any, data: str, evaluator: TrainingEvaluator, strategy: str, objectives: str, budget: int, seed: int,
        epochs: int, constraints: dict[str, float], folder: Path, device: str = "cpu") -> dict[str, Any]:
    options = {} if strategy == "auto" else {"predictor": "none"}  # what `nas search --strategy X` runs
    config = SearchConfig(space=space_config(space), data=data, objectives=objectives.split(","), budget=budget, seed=seed,
                          strategy=strategy, strategy_options=options, constraints=constraints, device=device,
                          train={"max_epochs": epochs})
    t0 = time.monotonic()
    session = start(config, folder / f"{strategy}-{objectives.replace(',', '-')}-{seed}", evaluator=evaluator, progress=False,
                    log=lambda s: None)
    try:
        result = session.run()
        done = [c for c in result.candidates if c.duplicate_of is None and c.state == "complete"]
        best = max(done, key=lambda c: (c.metrics["val_accuracy"], -c.id))
        half = [c for c in done if c.id < sorted(x.id for x in done)[len(done) // 2]] or done
        test = evaluator.test(session.space, session.space.make(best.arch), session.store.load_weights(best.weights_id))["test_accuracy"]
        return {"val": best.metrics["val_accuracy"], "test": test, "half": max(c.metrics["val_accuracy"] for c in half),
                "points": [(1.0 - c.metrics["val_accuracy"], float(c.metrics["params"])) for c in done],
                "trained": len(done), "wall": time.monotonic() - t0}
    finally:
        session.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="cnn")
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--constraint", action="append", default=[], help="e.g. 'flops<=20e6' (the same for every run)")
    ap.add_argument("--runs", default=",".join(f"{s}:{o.replace(',', '+')}" for s, o in RUNS),
                    help="strategy:objectives,... with objectives joined by '+', e.g. auto:accuracy+params")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space)
    constraints = parse_constraints(args.constraint)
    evaluator = TrainingEvaluator(args.data, device=args.device, max_epochs=args.epochs)  # the evaluator given to a session trains with its own options
    runs = [(r.split(":", 1)[0], r.split(":", 1)[1].replace("+", ",")) for r in args.runs.split(",") if r]
    print(f"# guided_training: {args.space} on {args.data}, {args.budget} networks, {args.epochs} epochs at most, seeds {args.seeds}, "
          f"constraints {args.constraint or 'none'}, device {args.device}, 1 CPU thread, torch {torch.__version__}", flush=True)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for strategy, objectives in runs:
                r = one(space, args.data, evaluator, strategy, objectives, args.budget, seed, args.epochs, constraints, Path(tmp),
                        args.device)
                out.setdefault((strategy, objectives), []).append(r)
                print(f"  seed {seed} {strategy:<9} ({objectives}): {r['trained']} trained, best val {r['val']:.4f} test {r['test']:.4f}, "
                      f"best val at half budget {r['half']:.4f}, {r['wall']:.0f} s", flush=True)
    pts = np.array([p for rs in out.values() for r in rs for p in r["points"]], dtype=float)
    lower, upper = np.array([0.0, pts[:, 1].min()]), np.array([1.0, pts[:, 1].max()])

    def hv(points: list[tuple[float, float]]) -> float:
        F = np.array(points, dtype=float)
        return float(pareto.normalized_hypervolume(F[pareto.pareto_mask(F)], lower, upper, ref_offset=0.1))

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.4f} +- {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"

    print()
    print(f"{'method':<28}{'best val':>20}{'test of pick':>20}{'val @ half budget':>20}{'hypervolume':>20}")
    for (strategy, objectives), rs in out.items():
        h = ms([hv(r["points"]) for r in rs]) if "," in objectives else "-"
        print(f"{strategy + ' (' + objectives + ')':<28}{ms([r['val'] for r in rs]):>20}{ms([r['test'] for r in rs]):>20}"
              f"{ms([r['half'] for r in rs]):>20}{h:>20}")
    print()
    for objectives, plain in (("accuracy", "evolution"), ("accuracy,params", "nsga2")):
        a, p = out.get(("auto", objectives)), out.get((plain, objectives))
        if not a or not p:
            continue
        line = (f"auto vs {plain} ({objectives}): best val {statistics.mean(r['val'] for r in a) - statistics.mean(r['val'] for r in p):+.4f}, "
                f"test {statistics.mean(r['test'] for r in a) - statistics.mean(r['test'] for r in p):+.4f}")
        if "," in objectives:
            line += f", hypervolume x{statistics.mean(hv(r['points']) for r in a) / statistics.mean(hv(r['points']) for r in p):.3f}"
        print(line)


if __name__ == "__main__":
    from nas.errors import UsageError

    try:
        main()
    except UsageError as e:  # a bad flag or an unusable device: one line, exit 2
        print(f"guided_training: {e}", file=sys.stderr)
        sys.exit(2)
