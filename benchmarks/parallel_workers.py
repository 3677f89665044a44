"""Parallel workers, side by side in one run: the same search on the `process` backend with one
worker and with four, NAS-Bench-201 cells trained for one epoch each.

    python benchmarks/parallel_workers.py                                     # on a GPU: 50,000 3x32x32 images
    python benchmarks/parallel_workers.py --device cpu --images 2000 --budget 6   # smoke run

The data is synthetic (random images with learnable labels, stored as uint8 in an .npz in a
temporary directory, which is what `--data file.npz` reads): speed does not depend on the pixels.
Each search uses the nb201.yaml space, random search with the same seed (so every run evaluates
the same architectures, whatever the order in which results come back), one epoch per candidate
with the trainer's fast defaults (device-resident data, bf16 autocast, channels_last, CUDA graphs)
and no weights kept. Workers share the GPU(s) as the `share` backend option says: `auto` makes
the four workers on one GPU threads of one process, each on its own CUDA stream, so that their
kernels run at the same time; `process` gives each its own process, and the GPU then takes
turns between them (time slicing). Both are run, side by side.

Printed per run: wall time of the search (including starting the workers and loading the data),
candidates per minute over the wall time and in the steady state (from the moment as many
candidates have finished as there are workers to the last finish; n/a when the budget is too
small for that), and the mean seconds one candidate took. The ratio lines compare each run with
the single worker. Target on one H100 (issue 7): 4 workers >= 1.5x the candidates per minute of
1 worker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.search import SearchConfig, space_config, start  # noqa: E402
from nas.space import load_space  # noqa: E402


def write_data(path: Path, images: int, seed: int = 0) -> Path:
    """Random uint8 images whose labels depend on the pixels (so training has something to learn)."""
    rng = np.random.default_rng(seed)
    val, test = max(10, images // 10), max(10, images // 50)
    x = rng.integers(0, 256, size=(images + val + test, 3, 32, 32), dtype=np.uint8)
    xf = x.astype(np.float32)
    y = (xf[:, :, :8, :8].mean(axis=(1, 2, 3)) > 127.5).astype(np.int64) + 2 * (xf[:, 0, 16:, 16:].mean(axis=(1, 2)) > 127.5)
    np.savez(path, x=x[:images], y=y[:images], x_val=x[images:images + val], y_val=y[images:images + val],
             x_test=x[images + val:], y_test=y[images + val:])
    return path


def one_search(data: Path, run: Path, workers: int, budget: int, device: str, seed: int, share: str = "auto") -> dict[str, float]:
    config = SearchConfig(space=space_config(load_space("nb201")), data=str(data), objectives=["accuracy"], strategy="random",
                          budget=budget, seed=seed, device=device, train={"max_epochs": 1}, keep_weights="none",
                          workers=workers, backend="process", backend_options={"lock_dir": str(run.parent / "locks"), "share": share})
    session = start(config, run, progress=False, log=lambda s: None)
    try:
        t0 = time.perf_counter()
        result = session.run()
        wall = time.perf_counter() - t0
    finally:
        session.store.close()
    done = [c for c in result.candidates if c.source is None]
    finished = sorted(c.finished for c in done if c.finished is not None)
    # steady state: from the workers-th finish on (every worker has started up by then) to the last
    w = workers
    steady = (len(finished) - w) / (finished[-1] - finished[w - 1]) * 60 if len(finished) > w and finished[-1] > finished[w - 1] else float("nan")
    failed = [c for c in done if c.state != "complete"]
    if failed:
        print(f"  {len(failed)} candidate(s) failed, first: #{failed[0].id} {failed[0].error}")
    return {"wall": wall, "per_min": len(done) / wall * 60, "steady_per_min": steady, "n": len(done),
            "mean_s": statistics.fmean(c.seconds or 0.0 for c in done),
            "acc": max((c.metrics.get("val_accuracy", 0.0) for c in done), default=0.0)}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="training device of every worker")
    ap.add_argument("--images", type=int, default=50_000, help="training images (plus 10%% validation, 2%% test)")
    ap.add_argument("--budget", type=int, default=40, help="candidates per search")
    ap.add_argument("--workers", default="1,4", help="worker counts to compare, comma-separated")
    ap.add_argument("--share", default="auto,process",
                    help="how workers share a GPU, for each count above 1: auto (threads of one process, each on a CUDA stream), process")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    shares = args.share.split(",")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"NB201 cells, 1 epoch each on {args.images:,} synthetic 3x32x32 images, random search, budget {args.budget}, "
          f"process backend on {args.device} ({name})")
    plan = [(w, share) for w in counts for share in (shares if w > 1 else shares[:1])]
    with tempfile.TemporaryDirectory(prefix="nas-parallel-") as tmp:
        data = write_data(Path(tmp) / "synthetic.npz", args.images, args.seed)
        rows = {}
        for w, share in plan:
            rows[w, share] = r = one_search(data, Path(tmp) / f"run-{w}-{share}", w, args.budget, args.device, args.seed, share)
            label = f"workers {w}" + (f" (share {share})" if w > 1 else "")
            print(f"{label}: {r['n']} candidates in {r['wall']:.1f} s: {r['per_min']:.1f} per minute "
                  f"(steady state {_num(r['steady_per_min'])}); {r['mean_s']:.2f} s per candidate; best val acc {r['acc']:.3f}", flush=True)
    base = rows[plan[0]]
    for w, share in plan[1:]:
        b = rows[w, share]
        print(f"ratio {w} workers (share {share}) vs {plan[0][0]}: {b['per_min'] / base['per_min']:.2f}x candidates per minute "
              f"(steady state {_num(b['steady_per_min'] / base['steady_per_min'], 'x')})")


def _num(value: float, unit: str = "") -> str:
    return "n/a" if value != value else f"{value:.2f}{unit}"


if __name__ == "__main__":
    main()
