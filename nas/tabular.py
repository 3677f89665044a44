"""A tabular evaluator: NAS-Bench-201 answers from its tables instead of training.

`--data nb201:cifar10` (or `nb201:cifar100`, `nb201:imagenet16`) searches the nb201.yaml space
and looks each cell up: the search sees the 12-epoch validation accuracy (the benchmark's cheap
proxy), the final front is reported with the 200-epoch test accuracy, and parameters, FLOPs and
latency (any of the table's devices, `latency_device`) are read from the same row. These are the
benchmark's own numbers for the cell looked up: NAS-Bench-201 built and counted every edge, so
for a cell with edges that cannot reach the output they exceed what `nas.build_model` builds
(its minimal network).

Where the table has several fidelities (cifar10-valid at 12 and 200 epochs) a multi-fidelity
scheduler (`nas.schedulers`) asks for one with `epochs=`: the answer is the validation accuracy
after the largest fidelity that is at most `epochs` (the smallest when none is), so a search
with `--scheduler asha` runs on the table at no cost.
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


#: the validation-accuracy column of each fidelity (epochs) a dataset's table has
FIDELITIES: dict[str, dict[int, str]] = {
    "cifar10": {12: "c10valid_valid_acc_12ep", 200: "c10valid_valid_acc_200ep"},
    "cifar100": {12: "c100_valid_acc_12ep"},
    "imagenet16": {12: "in16_valid_acc_12ep"},
}


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
        self._by_epochs = {e: self.table.column(col) for e, col in FIDELITIES[dataset].items()}
        #: the epoch counts the table answers for (a scheduler's rungs are taken from these)
        self.fidelities: tuple[int, ...] = tuple(sorted(self._by_epochs))

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

    def fidelity(self, epochs: int | None) -> int:
        """The fidelity that answers for `epochs` of training (None: the search's 12 epochs)."""
        if epochs is None:
            return 12
        below = [e for e in self.fidelities if e <= epochs]
        return below[-1] if below else self.fidelities[0]

    def costs(self, space: SearchSpace, arch: Architecture) -> dict[str, Any]:
        """What the table knows of `arch` without training: its index, parameters, FLOPs and
        latency (the guided strategies read their cheap objectives here, not through `evaluate`)."""
        i = self.index(space, arch)
        return {
            "nb201_index": i,
            "params": int(round(float(self._params[i]) * 1e6)),
            "flops": int(round(float(self._flops[i]) * 1e6)),
            "latency_ms": float(self._latency[i]),
            "latency_device": self.latency_device,
        }

    def evaluate(self, space: SearchSpace, arch: Architecture, seed: int = 0, constraints: Mapping[str, float] | None = None,
                 on_epoch: Any = None, *, epochs: int | None = None, checkpoint: Any = None, deadline: float | None = None) -> Evaluation:
        """The table's row for `arch`; `epochs` picks the fidelity (`fidelity`); a table keeps
        no training state, so `checkpoint` and `deadline` change nothing."""
        metrics: dict[str, Any] = self.costs(space, arch)
        broken = violations(metrics, constraints)
        if broken:
            return Evaluation("infeasible", metrics, "; ".join(broken))
        fid = self.fidelity(epochs)
        metrics.update(val_accuracy=float(self._by_epochs[fid][metrics["nb201_index"]]) / 100.0, epochs=fid, seconds=0.0)
        return Evaluation("complete", metrics)

    def test(self, space: SearchSpace, arch: Architecture, state: Any = None) -> dict[str, float]:
        """The 200-epoch test accuracy of the benchmark (what a final pick would score)."""
        return {"test_accuracy": float(self._test[self.index(space, arch)]) / 100.0}
