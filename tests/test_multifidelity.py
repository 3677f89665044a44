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


# -- pause and resume -----------------------------------------------------------------------------
import io  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nas.data import load_dataset  # noqa: E402
from nas.train import DeviceData, TrainConfig, fit  # noqa: E402


@pytest.fixture(scope="module")
def digits_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield DeviceData(load_dataset("digits", seed=0), "cpu")
    torch.set_num_threads(threads)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.3), nn.Linear(48, 10))


def _through_disk(checkpoint):
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def _same_history(a, b):
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    return drop(a) == drop(b)


@pytest.mark.parametrize("settings", [
    dict(optimizer="adam", schedule="cosine", lr=3e-3),
    dict(optimizer="momentum", schedule="exponential", lr=0.05, gamma=0.8, weight_decay=1e-4),
    dict(optimizer="adagrad", schedule="fixed", lr=0.05, l1=1e-5),
    dict(optimizer="adamw", schedule="cosine", lr=0.05, patience=2),  # a large rate: early stopping in the middle
])
def test_rungs_1_3_9_give_exactly_one_9_epoch_training(digits_cpu, settings):
    settings = {"patience": None, **settings}
    cfg = TrainConfig(device="cpu", epochs=9, batch_size=64, seed=3, **settings)
    one_model = _net()
    one = fit(one_model, digits_cpu, cfg)

    model = _net()
    r1 = fit(model, digits_cpu, cfg, stop_at=1)
    assert r1.epochs == 1 and r1.stop_reason == "paused" and r1.checkpoint is not None and not r1.stopped_early
    resumed = _net(seed=99)  # other initial weights: everything comes from the checkpoint
    r3 = fit(resumed, digits_cpu, cfg, resume=_through_disk(r1.checkpoint), stop_at=3)
    assert r3.epochs == 3
    last = fit(_net(seed=7), digits_cpu, cfg, resume=_through_disk(r3.checkpoint) if r3.checkpoint else None, stop_at=9) \
        if r3.checkpoint is not None else r3
    assert last.checkpoint is None  # nothing left to resume
    assert last.stop_reason == one.stop_reason and last.epochs == one.epochs and last.best_epoch == one.best_epoch
    assert (last.val_accuracy, last.val_loss, last.train_loss) == (one.val_accuracy, one.val_loss, one.train_loss)
    assert _same_history(last.history, one.history)
    assert set(last.state) == set(one.state)
    for k in one.state:
        assert torch.equal(last.state[k], one.state[k]), k
    if settings.get("patience"):
        assert one.stop_reason == "patience" and one.epochs < 9  # the premise: it stopped early


def test_a_deadline_pauses_at_the_next_epoch_boundary(digits_cpu):
    import time

    cfg = TrainConfig(device="cpu", epochs=6, batch_size=64, seed=1, patience=None)
    one = fit(_net(), digits_cpu, cfg)
    first = fit(_net(), digits_cpu, cfg, deadline=time.time())  # already past: one epoch, then pause
    assert first.stop_reason == "deadline" and first.epochs == 1 and first.checkpoint["epoch"] == 1
    rest = fit(_net(), digits_cpu, cfg, resume=first.checkpoint)
    assert rest.stop_reason == "max epochs" and rest.epochs == 6 and rest.val_accuracy == one.val_accuracy
    assert _same_history(rest.history, one.history)
    assert rest.seconds >= first.seconds


def test_resume_refuses_a_checkpoint_of_another_schedule(digits_cpu):
    cfg = TrainConfig(device="cpu", epochs=4, batch_size=64, patience=None)
    r = fit(_net(), digits_cpu, cfg, stop_at=2)
    with pytest.raises(ValueError, match="schedule over 4 epochs, this config has 5"):
        fit(_net(), digits_cpu, TrainConfig(device="cpu", epochs=5, batch_size=64, patience=None), resume=r.checkpoint)
    with pytest.raises(ValueError, match="stop_at must be an epoch after the 2 already trained"):
        fit(_net(), digits_cpu, cfg, resume=r.checkpoint, stop_at=2)


def test_pausing_after_every_epoch_keeps_the_early_stopping_state(digits_cpu):
    cfg = TrainConfig(device="cpu", epochs=12, batch_size=64, seed=0, optimizer="adamw", lr=0.05, patience=2)
    one = fit(_net(), digits_cpu, cfg)
    assert one.stop_reason == "patience" and one.epochs < 12  # the premise
    r = fit(_net(), digits_cpu, cfg, stop_at=1)
    while r.checkpoint is not None:
        r = fit(_net(), digits_cpu, cfg, resume=_through_disk(r.checkpoint), stop_at=r.epochs + 1)
    assert (r.stop_reason, r.epochs, r.best_epoch, r.val_accuracy) == (one.stop_reason, one.epochs, one.best_epoch, one.val_accuracy)
    assert _same_history(r.history, one.history)


def test_the_training_evaluator_trains_in_rungs(digits_cpu):
    from nas.evaluators import TrainingEvaluator

    space = load_space("mlp")
    arch = space.sample(4)
    ev = TrainingEvaluator("digits", device="cpu", max_epochs=9, patience=None)
    one = ev.evaluate(space, arch, seed=5)
    assert one.checkpoint is None and one.metrics["epochs"] == 9
    r1 = ev.evaluate(space, arch, seed=5, epochs=1)
    assert r1.metrics["epochs"] == 1 and r1.metrics["stop_reason"] == "paused"
    assert all(v.device.type == "cpu" for v in r1.checkpoint["model"].values())
    r3 = ev.evaluate(space, arch, seed=5, epochs=3, checkpoint=_through_disk(r1.checkpoint))
    r9 = ev.evaluate(space, arch, seed=5, epochs=9, checkpoint=_through_disk(r3.checkpoint))
    assert r9.checkpoint is None and r9.metrics["epochs"] == 9
    for key in ("val_accuracy", "val_loss", "train_loss", "best_epoch", "params", "flops"):
        assert r9.metrics[key] == one.metrics[key], key
    assert all(torch.equal(r9.state[k], one.state[k]) for k in one.state)
