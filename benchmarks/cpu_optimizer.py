"""The trainer's CPU optimizer step, side by side in one run: torch's fused CPU kernel for Adam,
AdamW and Adagrad (what `nas.train.make_optimizer` uses on a CPU) against torch's default CPU
implementation (a Python loop of about ten tensor ops per parameter), on sampled networks of a
space, trained by the same trainer on the same data from the same seed.

    python benchmarks/cpu_optimizer.py                         # 12 mlp networks on digits, 3 epochs each
    python benchmarks/cpu_optimizer.py --space cnn --data mnist5k --networks 4 --epochs 1

Each network trains twice with each kernel, alternating (default, fused, default, fused); the
printed time of an epoch is a run's wall clock (building the network and validation included)
over its epochs, the mean of its two runs. Networks whose optimizer is SGD or momentum
(the trainer's own foreach SGD either way) are left out. One untimed training first (the
process's first one pays for imports). One CPU thread.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nas.train as trainer  # noqa: E402
from nas.evaluators import TrainingEvaluator  # noqa: E402
from nas.space import load_space  # noqa: E402


def default_kernel(cls, params, device, **kw):  # type: ignore[no-untyped-def]
    return cls(params, **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--networks", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    evaluator = TrainingEvaluator(args.data, device="cpu", max_epochs=args.epochs)
    space = evaluator.fit_space(load_space(args.space))
    rng = random.Random(args.seed)
    fused = trainer._fused_on_cpu
    print(f"# cpu_optimizer: {args.space} on {args.data}, {args.epochs} epochs a run, 1 CPU thread, torch {torch.__version__}")
    print(f"{'network':>8} {'optimizer':>10} {'params':>9} {'default ms/epoch':>17} {'fused ms/epoch':>15} {'speed-up':>9} {'val default':>12} {'val fused':>10}")
    evaluator.evaluate(space, space.sample(random.Random(-1)), seed=args.seed)  # warm-up, untimed: the process's first training
    ratios, totals = [], {"default": 0.0, "fused": 0.0}
    shown = 0
    while shown < args.networks:
        arch = space.sample(rng)
        if str(space.resolve(arch).train.get("optimizer")) not in ("adam", "adamw", "adagrad"):
            continue
        times: dict[str, list[float]] = {"default": [], "fused": []}
        vals: dict[str, float] = {}
        for name in ("default", "fused", "default", "fused"):
            trainer._fused_on_cpu = default_kernel if name == "default" else fused  # type: ignore[assignment]
            t0 = time.perf_counter()
            ev = evaluator.evaluate(space, arch, seed=args.seed)
            times[name].append((time.perf_counter() - t0) / args.epochs)
            vals[name] = float(ev.metrics.get("val_accuracy", float("nan")))
        trainer._fused_on_cpu = fused  # type: ignore[assignment]
        d, f = statistics.fmean(times["default"]), statistics.fmean(times["fused"])
        totals["default"] += d
        totals["fused"] += f
        ratios.append(d / f)
        shown += 1
        print(f"{shown:>8} {space.resolve(arch).train.get('optimizer'):>10} {ev.metrics.get('params', 0):>9,} {d * 1e3:>17.1f} {f * 1e3:>15.1f}"
              f" {d / f:>8.2f}x {vals['default']:>12.4f} {vals['fused']:>10.4f}", flush=True)
    print(f"\nall {shown} networks: {totals['default'] / totals['fused']:.2f}x the epochs a second with the fused kernel"
          f" (per network: median {statistics.median(ratios):.2f}x, from {min(ratios):.2f}x to {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
