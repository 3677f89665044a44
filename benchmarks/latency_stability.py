"""How repeatable is a latency measurement? The same network measured 5 times, side by side.

    python benchmarks/latency_stability.py [--device cpu|cuda] [--repeats 5] [--runs 50]

Prints, for a few networks of the shipped spaces, the median of each measurement and the
relative spread of those medians, (max - min) / mean. Target on the CPU: at most 10%.

Beside them it prints the machine's own drift: the same fixed torch workload (a 256x256 matrix
product, one thread) timed in windows as long as a measurement. On a virtual machine whose
speed for vector work changes for seconds at a time, no statistic of the timings can be steadier
than that line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.build import build_model  # noqa: E402
from nas.measure import measure_latency  # noqa: E402
from nas.space import load_space  # noqa: E402

NETWORKS = [
    ("mlp", "random:0", None),
    ("cnn", "random:1", (1, 28, 28)),
    ("resnet", "random:2", (1, 28, 28)),
    ("nb201", "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", None),
]


def machine_drift(windows: int, seconds: float = 0.25) -> list[float]:
    """Time of a fixed 256x256 matrix product on one thread (ms, median) in consecutive windows."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    out = []
    for _ in range(windows):
        begin, times = time.perf_counter(), []
        while time.perf_counter() - begin < seconds:
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times) * 1e3)
    torch.set_num_threads(old)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", default="eager", choices=("eager", "cuda_graph"))
    args = ap.parse_args()

    print(f"device {args.device}, {args.runs} timed runs after {args.warmup} warm-up runs, batch 1, "
          f"{args.threads} thread(s) on CPU, mode {args.mode}\n")
    print(f"{'network':<10} {'params':>9}  {'medians (ms)':<48} {'spread':>7}")
    worst = 0.0
    for name, arch_text, shape in NETWORKS:
        space = load_space(name)
        if shape is not None:
            space = space.with_input(shape)
        seed = int(arch_text.split(":")[1]) if arch_text.startswith("random:") else None
        arch = space.sample(seed) if seed is not None else space.parse_arch(arch_text)
        torch.manual_seed(0)
        model = build_model(space, arch)
        medians = [
            measure_latency(model, space.input_shape, device=args.device, runs=args.runs, warmup=args.warmup,
                            threads=args.threads, mode=args.mode).median_ms
            for _ in range(args.repeats)
        ]
        spread = (max(medians) - min(medians)) / statistics.mean(medians)
        worst = max(worst, spread)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<10} {params:>9,}  {' '.join(f'{m:8.3f}' for m in medians):<48} {spread:>6.1%}")
    drift = machine_drift(args.repeats)
    spread = (max(drift) - min(drift)) / statistics.mean(drift)
    print(f"{'machine':<10} {'':>9}  {' '.join(f'{d:8.3f}' for d in drift):<48} {spread:>6.1%}   (a fixed 256x256 matmul)")
    print(f"\nworst relative spread of the medians: {worst:.1%} (target <= 10%); the machine's own drift: {spread:.1%}")


if __name__ == "__main__":
    main()
