"""Multi-fidelity evaluation: the table's two fidelities, pause-and-resume training."""

from __future__ import annotations

import pytest

from nas.nb201 import NB201Table
from nas.space import load_space
from nas.tabular import TabularEvaluator


def test_the_table_serves_12_and_200_epochs_of_cifar10_valid():
    table = TabularEvaluator("cifar10")
    assert table.fidelities == (12, 200)
    assert TabularEvaluator("cifar100").fidelities == (12,)
    space = load_space("nb201")
    raw = NB201Table.load()
    low, high = raw.column("c10valid_valid_acc_12ep"), raw.column("c10valid_valid_acc_200ep")
    seen_gain = False
    for s in range(20):
        arch = space.sample(s)
        i = table.index(space, arch)
        default = table.evaluate(space, arch)
        at12 = table.evaluate(space, arch, epochs=12)
        at200 = table.evaluate(space, arch, epochs=200)
        assert default.metrics == at12.metrics  # no epochs asked: the search's 12 epochs, as before
        assert at12.metrics["val_accuracy"] == pytest.approx(float(low[i]) / 100)
        assert at200.metrics["val_accuracy"] == pytest.approx(float(high[i]) / 100)
        assert (at12.metrics["epochs"], at200.metrics["epochs"]) == (12, 200)
        assert table.evaluate(space, arch, epochs=100).metrics["epochs"] == 12  # the largest at most 100
        assert table.evaluate(space, arch, epochs=3).metrics["epochs"] == 12  # none below: the smallest
        seen_gain |= at200.metrics["val_accuracy"] > at12.metrics["val_accuracy"]
    assert seen_gain
