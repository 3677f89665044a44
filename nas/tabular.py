"""A tabular evaluator: NAS-Bench-201 answers from its tables instead of training.

`--data nb201:cifar10` (or `nb201:cifar100`, `nb201:imagenet16`) searches the nb201.yaml space
and looks each cell up: the search sees the 12-epoch validation accuracy (the benchmark's cheap
proxy), the final front is reported with the 200-epoch test accuracy, and parameters, FLOPs and
latency (any of the table's devices, `latency_device`) are read from the same row.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import UsageError
from .evaluators import Evaluation, violations
from .nb201 import DATASETS, LATENCY_DEVICES, OPS, NB201Table
from .space import Architecture, SearchSpace


def parse_tabular(spec: str) -> str | None:
    """'nb201:cifar10' -> 'cifar10'; None when `spec` is not a tabular benchmark."""
    if not spec.startswith("nb201"):
        return None
    _, _, dataset = spec.partition(":")
    dataset = dataset or "cifar10"
    if dataset not in DATASETS:
        raise UsageError(f"unknown NAS-Bench-201 dataset {dataset!r}; use nb201:{', nb201:'.join(DATASETS)}")
    return dataset


class TabularEvaluator:
    """Look candidates up in the NAS-Bench-201 tables (no training, no randomness)."""

    provides = ("val_accuracy", "params", "flops", "latency_ms")
    test_needs_weights = False

    def __init__(self, dataset: str = "cifar10", latency_device: str = "1080ti_bs1_ms") -> None:
        if dataset not in DATASETS:
            raise UsageError(f"unknown NAS-Bench-201 dataset {dataset!r}; use one of {', '.join(DATASETS)}")
        if latency_device not in LATENCY_DEVICES:
            raise UsageError(f"unknown NAS-Bench-201 latency column {latency_device!r}; use one of {', '.join(LATENCY_DEVICES)}")
        self.dataset = dataset
        self.latency_device = latency_device
        self.table = NB201Table.load()
        cols = DATASETS[dataset]
        self._search = self.table.column(cols["search"])
        self._test = self.table.column(cols["test"])
        self._params = self.table.column(cols["params"])
        self._flops = self.table.column(cols["flops"])
        self._latency = self.table.column(latency_device)
        self._labels: dict[str, list[str]] = {}

    def check_space(self, space: SearchSpace) -> list[str]:
        """The space's edge labels in NAS-Bench-201 edge order; UsageError if it is not an NB201 cell space."""
        have = self._labels.get(space.fingerprint)
        if have is not None:
            return have
        form = space.cell_form
        if form is None or form[0] != 4 or any(set(space.decision(l).values) - set(OPS) for l in form[1]):
            raise UsageError(f"the NAS-Bench-201 tables answer only for NB201 cell spaces (4 nodes, ops from {', '.join(OPS)}); {space.source} is not one; use --space nb201")
        self._labels[space.fingerprint] = form[1]
        return form[1]

    def index(self, space: SearchSpace, arch: Architecture) -> int:
        return self.table.index([arch[label] for label in self.check_space(space)])

    def evaluate(self, space: SearchSpace, arch: Architecture, seed: int = 0, constraints: Mapping[str, float] | None = None,
                 on_epoch: Any = None) -> Evaluation:
        i = self.index(space, arch)
        metrics: dict[str, Any] = {
            "nb201_index": i,
            "params": int(round(float(self._params[i]) * 1e6)),
            "flops": int(round(float(self._flops[i]) * 1e6)),
            "latency_ms": float(self._latency[i]),
            "latency_device": self.latency_device,
        }
        broken = violations(metrics, constraints)
        if broken:
            return Evaluation("infeasible", metrics, "; ".join(broken))
        metrics.update(val_accuracy=float(self._search[i]) / 100.0, epochs=12, seconds=0.0)
        return Evaluation("complete", metrics)

    def test(self, space: SearchSpace, arch: Architecture, state: Any = None) -> dict[str, float]:
        """The 200-epoch test accuracy of the benchmark (what a final pick would score)."""
        return {"test_accuracy": float(self._test[self.index(space, arch)]) / 100.0}
