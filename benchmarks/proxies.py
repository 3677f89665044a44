"""Zero-cost proxies against NAS-Bench-201: Spearman correlation with the 200-epoch test accuracy.

    python benchmarks/proxies.py [--cells 1000] [--dataset cifar10] [--seed 0] [--proxies synflow,naswot,...]

Scores `--cells` cells drawn uniformly (seeded) from the 15,284 non-degenerate NB201 cells with
every proxy of `nas.proxies` (untrained network, weights from seed 0, the synthetic fixed-seed
batch of a tabular run for the proxies that need data), and prints each proxy's Spearman rank
correlation with the table's 200-epoch test accuracy and with the 12-epoch validation accuracy
the search sees, the median seconds per cell, and the correlations Abdelfattah et al. 2021
(Table 2, NAS-Bench-201 CIFAR-10, all cells, real CIFAR-10 batches) report beside them. The
table's own NASWOT column (computed by its authors on CIFAR-10 images) is shown as a reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas import proxies  # noqa: E402
from nas.nb201 import DATASETS, OPS, NB201Table  # noqa: E402
from nas.space import load_space  # noqa: E402

# Abdelfattah et al. 2021, "Zero-cost proxies for lightweight NAS", Table 2 (NB201 CIFAR-10)
PUBLISHED = {"synflow": 0.74, "naswot": None, "grad_norm": 0.58, "snip": 0.58, "jacob_cov": 0.73}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--proxies", default=",".join(proxies.PROXIES), help="which proxies (comma-separated)")
    args = ap.parse_args()
    table = NB201Table.load()
    space = load_space("nb201")
    labels = space.cell_form[1]
    rng = np.random.default_rng(args.seed)
    cells = rng.choice(np.flatnonzero(~table.degenerate), size=args.cells, replace=False)
    archs = [space.make({lab: OPS[int(o)] for lab, o in zip(labels, table.ops[i])}) for i in cells]
    test = table.column(DATASETS[args.dataset]["test"])[cells].astype(float)
    valid = table.column(DATASETS[args.dataset]["search"])[cells].astype(float)
    print(f"zero-cost proxies on {args.cells} NAS-Bench-201 cells ({args.dataset}), Spearman rank correlation")
    print(f"batch: {proxies.describe_batch(None, space.input_shape)}")
    print(f"{'proxy':<10} {'vs test 200ep':>13} {'vs valid 12ep':>13} {'s/cell':>7}   published (Abdelfattah et al. 2021, CIFAR-10 images)")
    proxies.score(space, archs[0], "synflow")  # warm-up
    for name in args.proxies.split(","):
        values, times = [], []
        for arch in archs:
            t0 = time.perf_counter()
            values.append(proxies.score(space, arch, name))
            times.append(time.perf_counter() - t0)
        v = np.array(values)
        v = np.where(np.isfinite(v), v, -np.inf)
        pub = PUBLISHED[name]
        print(f"{name:<10} {spearman(v, test):>13.3f} {spearman(v, valid):>13.3f} {statistics.median(times):>7.3f}   "
              f"{'-' if pub is None else f'{pub:.2f}'}", flush=True)
    ref = table.column("naswot_v1_score")[cells].astype(float)
    print(f"{'table naswot_v1_score':<22} {spearman(ref, test):>1.3f} vs test, {spearman(ref, valid):.3f} vs valid (the table authors' score on real images)")


if __name__ == "__main__":
    main()
