"""Tests for nas.train, nas.evaluators and `nas train`: accuracy on real data, determinism,
early stopping, time limits, optimizers and schedules, failures as results, constraints and the
CLI. GPU tests are marked `gpu` and skipped without CUDA."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import nas
import nas.ops as ops
import nas.train as nt
from nas import cli
from nas import data as nd
from nas.data import Dataset, load_dataset
from nas.errors import UsageError
from nas.evaluators import Evaluation, TrainingEvaluator
from nas.space import SearchSpace, dsl, load_space
from nas.train import DeviceData, EarlyStopping, GraphSGD, TrainConfig, TrainingFailed, fit, make_optimizer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NB201_DEAD = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Module scope so it is in place before the module-scoped dataset fixtures: keeps the
    # on-disk dataset cache out of the user's home directory. One intra-op thread: these
    # networks are tiny, and on a busy machine OpenMP threads spinning against each other
    # make a CPU epoch up to 100x slower; it also keeps the numbers independent of the host.
    base = tmp_path_factory.mktemp("nas_dirs")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_CACHE_DIR", str(base / "cache"))
        mp.setenv("NAS_DATA_DIR", str(base / "data"))
        nd.clear_cache()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            nd.clear_cache()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def digits_cpu(digits: Dataset) -> DeviceData:
    return DeviceData(digits, "cpu")


@pytest.fixture(scope="module")
def mlp_space() -> SearchSpace:
    return load_space("mlp")


# --------------------------------------------------------------------------- helpers

_REP = "body[0].repeat"


def mlp_arch(space: SearchSpace, units: tuple[int, ...] = (256, 256), *, act: str = "relu", norm: str = "batch",
             dropout: float = 0.0, optimizer: str = "adam", lr: float = 0.003, weight_decay: float = 0.0,
             schedule: str = "cosine", batch_size: int = 64) -> Any:
    """A concrete architecture of the shipped mlp.yaml space."""
    values: dict[str, Any] = {
        f"{_REP}.times": len(units), "train.optimizer": optimizer, "train.lr": lr,
        "train.weight_decay": weight_decay, "train.schedule": schedule, "train.batch_size": batch_size,
    }
    if optimizer == "momentum":
        values["train.momentum"] = 0.9
    for i, u in enumerate(units):
        p = f"{_REP}[{i}].body[0].dense."
        values.update({p + "units": u, p + "act": act, p + "norm": norm, p + "dropout": dropout})
    arch = space.make(values)
    assert arch.error is None, arch.error
    return arch


def small_mlp(hidden: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def cpu_cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(device="cpu", optimizer="adam", lr=3e-3, epochs=3, patience=None, batch_size=64)
    base.update(kw)
    return TrainConfig(**base)


def synthetic(n_train: int, n_val: int, shape: tuple[int, ...], *, classes: int = 10, seed: int = 0,
              learnable: bool = True, name: str = "synthetic") -> Dataset:
    """Gaussian clusters around one random centre per class (learnable), or pure noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, *shape)).astype(np.float32)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, size=n).astype(np.int64)
        noise = rng.normal(size=(n, *shape)).astype(np.float32)
        x = (centres[y] + noise) if learnable else noise
        return x.astype(np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(n_val), split(n_val)
    return Dataset(name, xt, yt, xv, yv, xs, ys, classes)


# --------------------------------------------------------------------------- accuracy targets


def test_mlp_reaches_97_percent_on_digits(digits: Dataset, mlp_space: SearchSpace) -> None:
    # The acceptance target: a good default MLP (2 x 256 relu with batch norm, adam 3e-3,
    # cosine, batch 64; 60 epochs with patience 10) reaches >= 97% test accuracy on digits.
    arch = mlp_arch(mlp_space)
    m = nas.evaluate(arch, space=mlp_space, data=digits, device="cpu", seed=0, test=True, patience=10)
    assert m["status"] == "complete", m.get("error")
    assert m["test_accuracy"] >= 0.97, m
    assert m["val_accuracy"] >= 0.95
    assert 1 <= m["best_epoch"] <= m["epochs"] <= 60
    assert len(m["history"]) == m["epochs"]
    # dense layers followed by batch norm carry no bias: weights + BN affine, twice, + head
    assert m["params"] == 64 * 256 + 2 * 256 + 256 * 256 + 2 * 256 + 256 * 10 + 10
    assert m["device"] == "cpu" and m["cuda_graph"] is False


@pytest.mark.slow
def test_cnn_reaches_95_percent_on_mnist5k() -> None:
    # Two stages of conv 32/64 k3 + batch norm + relu + 2x2 max pool, a linear head on the
    # flattened 64x7x7 features; adam 1e-3 cosine, batch 64, 5 epochs (well within 10).
    space = dsl.space(
        input=[1, 28, 28],
        body=[dsl.conv(out=32, kernel=3, norm="batch", act="relu"), dsl.pool(kind="max", size=2),
              dsl.conv(out=64, kernel=3, norm="batch", act="relu"), dsl.pool(kind="max", size=2)],
        head={"pool": "flatten"},
        train={"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "batch_size": 64, "epochs": 5},
        name="cnn2",
    )
    evaluator = TrainingEvaluator("mnist5k", device="cpu")
    arch = space.make({})
    result = evaluator.evaluate(space, arch, seed=0)
    assert result.ok, result.error
    assert result.metrics["epochs"] <= 10
    test = evaluator.test(space, arch, result.state)
    assert test["test_accuracy"] >= 0.95, (test, result.metrics)
    assert math.isfinite(test["test_loss"])


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_metrics(digits: Dataset, mlp_space: SearchSpace) -> None:
    # dropout and batch norm included, so every random stream (init, shuffle, dropout) matters
    arch = mlp_arch(mlp_space, (64, 32), dropout=0.1)
    opts = dict(space=mlp_space, data=digits, device="cpu", max_epochs=4, patience=None)
    a = nas.evaluate(arch, seed=3, **opts)
    b = nas.evaluate(arch, seed=3, **opts)
    c = nas.evaluate(arch, seed=4, **opts)
    assert a["status"] == b["status"] == c["status"] == "complete"
    assert a["val_accuracy"] == b["val_accuracy"]
    assert a["val_loss"] == b["val_loss"]
    assert a["train_loss"] == b["train_loss"]

    def strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]

    assert strip(a["history"]) == strip(b["history"])
    assert len(a["history"]) == 4
    assert strip(a["history"]) != strip(c["history"])
    assert [r["train_loss"] for r in a["history"]] != [r["train_loss"] for r in c["history"]]


def test_fit_determinism_and_best_weights(digits_cpu: DeviceData) -> None:
    r1 = fit(small_mlp(), digits_cpu, cpu_cfg(seed=1))
    m2 = small_mlp()
    r2 = fit(m2, digits_cpu, cpu_cfg(seed=1))
    assert r1.history[-1]["train_loss"] == r2.history[-1]["train_loss"]
    assert r1.val_accuracy == r2.val_accuracy
    # the best epoch's weights are loaded back, so evaluating the model gives the best metrics
    loss, acc = nt.evaluate(m2, digits_cpu, "val")
    assert acc == r2.val_accuracy and loss == pytest.approx(r2.val_loss)
    assert r2.state is not None and set(r2.state) == set(m2.state_dict())


def test_fit_seeds_its_own_randomness(digits_cpu: DeviceData) -> None:
    # Same initial weights, different global RNG state before the call: the shuffle and the
    # dropout masks come from cfg.seed alone.
    def dropout_mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))

    runs = []
    for noise_seed in (1, 2):
        model = dropout_mlp()
        torch.manual_seed(noise_seed)
        runs.append(fit(model, digits_cpu, cpu_cfg(seed=5, epochs=2)))
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    other = fit(dropout_mlp(), digits_cpu, cpu_cfg(seed=6, epochs=2))
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in runs[0].history]


def test_fit_restores_the_best_epochs_weights(digits_cpu: DeviceData) -> None:
    # momentum 0.5 at a fixed rate overshoots: the best validation accuracy is not the last one
    model = small_mlp()
    r = fit(model, digits_cpu, cpu_cfg(optimizer="momentum", lr=0.5, schedule="fixed", epochs=6))
    accs = [h["val_accuracy"] for h in r.history]
    assert r.best_epoch < r.epochs, accs  # the premise of this test
    assert r.val_accuracy == max(accs) == accs[r.best_epoch - 1] != accs[-1]
    loss, acc = nt.evaluate(model, digits_cpu, "val")
    assert acc == r.val_accuracy and loss == pytest.approx(r.val_loss)
    assert r.state is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, r.state[k])


# --------------------------------------------------------------------------- early stopping


def test_early_stopping_max_mode() -> None:
    es = EarlyStopping(patience=2)
    assert es.mode == "max" and es.best is None
    assert es.step(0.5, 1) is False and es.best == 0.5 and es.best_epoch == 1
    assert es.step(0.6, 2) is False and es.best_epoch == 2 and es.bad_epochs == 0
    assert es.step(0.6, 3) is False and es.bad_epochs == 1  # equal is not an improvement
    assert es.step(0.7, 4) is False and es.bad_epochs == 0  # an improvement resets the count
    assert es.step(0.1, 5) is False
    assert es.step(0.69, 6) is True
    assert es.best == 0.7 and es.best_epoch == 4


def test_early_stopping_min_delta_and_min_mode() -> None:
    es = EarlyStopping(patience=3, min_delta=0.1, mode="max")
    es.step(0.5, 1)
    assert not es.improved(0.6)  # must beat the best by more than min_delta
    assert es.improved(0.61)
    steps = [es.step(v, e) for e, v in enumerate([0.55, 0.6, 0.65, 0.58, 0.7, 0.74], start=2)]
    assert steps == [False, False, False, False, False, True]  # 0.65 reset the count; 0.7 and 0.74 do not beat 0.75
    assert es.best == 0.65 and es.best_epoch == 4

    es = EarlyStopping(patience=2, min_delta=0.05, mode="min")
    assert [es.step(v, e) for e, v in enumerate([1.0, 0.9, 0.87, 0.8, 0.9, 0.78], start=1)] == [False, False, False, False, False, True]
    assert es.best == pytest.approx(0.8) and es.best_epoch == 4
    assert es.improved(0.74) and not es.improved(0.76)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(patience=0), r"patience must be a positive integer"),
        (dict(patience=-1), r"patience must be a positive integer"),
        (dict(patience=2.5), r"patience must be a positive integer"),
        (dict(patience=True), r"patience must be a positive integer"),
        (dict(patience=2, min_delta=-0.1), r"min_delta must be a number >= 0"),
        (dict(patience=2, min_delta="0.1"), r"min_delta must be a number >= 0"),
        (dict(patience=2, mode="avg"), r"mode must be 'max' or 'min'"),
    ],
)
def test_early_stopping_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_fit_stops_when_validation_stalls(digits_cpu: DeviceData) -> None:
    # A learning rate so small that the validation accuracy cannot move: patience ends the run.
    cfg = cpu_cfg(optimizer="sgd", lr=1e-9, schedule="fixed", epochs=30, patience=3)
    r = fit(small_mlp(), digits_cpu, cfg)
    accs = [h["val_accuracy"] for h in r.history]
    assert len(set(accs)) == 1, accs  # nothing improved
    assert r.stop_reason == "patience" and r.stopped_early
    assert r.epochs == len(r.history) == cfg.patience + 1 < cfg.epochs
    assert r.best_epoch == 1


def test_fit_min_delta_stops_a_learning_run(digits_cpu: DeviceData) -> None:
    # The network learns (val loss falls), but never by more than a huge min_delta.
    cfg = cpu_cfg(epochs=20, patience=2, min_delta=100.0, monitor="val_loss", schedule="fixed")
    r = fit(small_mlp(), digits_cpu, cfg)
    losses = [h["val_loss"] for h in r.history]
    assert losses[-1] < losses[0]
    assert r.stop_reason == "patience" and r.stopped_early
    assert r.epochs == 3 < cfg.epochs
    # early stopping's min_delta does not change which weights are kept: the lowest loss
    assert r.val_loss == min(losses) and r.best_epoch == losses.index(min(losses)) + 1


def test_no_patience_runs_all_epochs_and_max_epochs_caps(digits_cpu: DeviceData) -> None:
    r = fit(small_mlp(), digits_cpu, cpu_cfg(epochs=60, max_epochs=2, patience=None))
    assert r.epochs == 2 and r.stop_reason == "max epochs" and not r.stopped_early
    assert [h["epoch"] for h in r.history] == [1, 2]


def test_time_limit_stops_after_one_epoch(digits_cpu: DeviceData) -> None:
    r = fit(small_mlp(), digits_cpu, cpu_cfg(epochs=50, time_limit=1e-6))
    assert r.stop_reason == "time limit" and r.stopped_early
    assert r.epochs == 1 and len(r.history) == 1 and r.best_epoch == 1


def test_time_limit_through_the_evaluator(digits: Dataset, mlp_space: SearchSpace) -> None:
    m = nas.evaluate(mlp_arch(mlp_space, (32,)), space=mlp_space, data=digits, device="cpu", time_limit=1e-6)
    assert m["status"] == "complete"
    assert m["stop_reason"] == "time limit" and m["epochs"] == 1 and m["stopped_early"] is True


# --------------------------------------------------------------------------- optimizers, schedules


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05),
                                           ("adagrad", 0.05), ("adam", 3e-3), ("adamw", 3e-3)])
def test_every_optimizer_learns_digits(digits_cpu: DeviceData, optimizer: str, lr: float) -> None:
    r = fit(small_mlp(), digits_cpu, cpu_cfg(optimizer=optimizer, lr=lr, schedule="fixed", weight_decay=1e-4))
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < losses[0]
    assert r.val_accuracy > 0.5  # chance is 0.1


@pytest.mark.parametrize("schedule", ["fixed", "exponential", "cosine"])
def test_every_schedule_learns_digits(digits_cpu: DeviceData, schedule: str) -> None:
    cfg = cpu_cfg(optimizer="momentum", lr=0.05, schedule=schedule, gamma=0.5)
    r = fit(small_mlp(), digits_cpu, cfg)
    assert r.val_accuracy > 0.5
    assert [h["lr"] for h in r.history] == [cfg.lr_at(e) for e in range(3)]


def test_lr_at_each_schedule() -> None:
    fixed = TrainConfig(lr=0.1, schedule="fixed", epochs=10)
    assert [fixed.lr_at(e) for e in (0, 5, 9)] == [0.1, 0.1, 0.1]
    exp = TrainConfig(lr=0.1, schedule="exponential", gamma=0.5, epochs=10)
    assert [exp.lr_at(e) for e in (0, 1, 2, 3)] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    cos = TrainConfig(lr=0.1, schedule="cosine", epochs=10)
    assert cos.lr_at(0) == pytest.approx(0.1)
    assert cos.lr_at(5) == pytest.approx(0.05)
    assert cos.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    assert cos.lr_at(9) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.9))) and cos.lr_at(9) > 0
    values = [cos.lr_at(e) for e in range(10)]
    assert values == sorted(values, reverse=True)
    # the cosine runs over the epochs actually trained when max_epochs caps them
    capped = TrainConfig(lr=0.1, schedule="cosine", epochs=100, max_epochs=4)
    assert capped.total_epochs == 4
    assert capped.lr_at(2) == pytest.approx(0.05)


@pytest.mark.parametrize("optimizer", nt.OPTIMIZERS)
def test_make_optimizer_sets_lr(optimizer: str) -> None:
    model = small_mlp(8)
    opt, set_lr = make_optimizer(model, TrainConfig(optimizer=optimizer, lr=0.1), torch.device("cpu"), graph=False)
    assert isinstance(opt, GraphSGD) == (optimizer in ("sgd", "momentum", "nesterov"))
    set_lr(0.025)
    for group in opt.param_groups:
        assert float(group["lr"]) == pytest.approx(0.025)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.0, False, 1e-2), (0.8, True, 5e-4), (0.9, False, 1e-3),
])
def test_graph_sgd_matches_torch_sgd(momentum: float, nesterov: bool, weight_decay: float) -> None:
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    ours = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    ours.load_state_dict(ref.state_dict())
    lr = 0.05
    lr_t = torch.tensor(lr)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    opt_ours = GraphSGD(ours.parameters(), lr_t, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    start = [p.detach().clone() for p in ours.parameters()]
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        x, y = torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        if step == 3:  # a schedule changes the rate between steps: plain float vs. tensor fill
            for g in opt_ref.param_groups:
                g["lr"] = 0.02
            lr_t.fill_(0.02)
        for model, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        for p, q in zip(ref.parameters(), ours.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    assert all(not torch.allclose(p, q) for p, q in zip(ours.parameters(), start))  # it did move


def test_graph_sgd_skips_parameters_without_gradients() -> None:
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = GraphSGD([a, b], torch.tensor(0.5), momentum=0.9)
    (a * 2).sum().backward()
    opt.step()
    assert torch.allclose(a, torch.zeros(3)) and torch.equal(b, torch.ones(3))


def test_l1_penalty_shrinks_weights(digits_cpu: DeviceData) -> None:
    def weight_l1(m: nn.Module) -> float:
        return sum(float(p.detach().abs().sum()) for p in m.parameters() if p.dim() > 1)

    plain, sparse = small_mlp(), small_mlp()
    start = weight_l1(plain)
    fit(plain, digits_cpu, cpu_cfg(epochs=4, l1=0.0))
    fit(sparse, digits_cpu, cpu_cfg(epochs=4, l1=1e-2))
    assert weight_l1(sparse) < 0.6 * weight_l1(plain)
    assert weight_l1(sparse) < start


# --------------------------------------------------------------------------- failures are results


def test_diverging_run_fails_and_the_process_stays_healthy(digits: Dataset, mlp_space: SearchSpace) -> None:
    arch = mlp_arch(mlp_space, (64,), norm="none")
    bad = nas.evaluate(arch, space=mlp_space, data=digits, device="cpu", optimizer="sgd", lr=1e6,
                       schedule="fixed", max_epochs=5, patience=None)
    assert bad["status"] == "failed"
    assert bad["error"].startswith("diverged"), bad["error"]
    assert re.search(r"loss (nan|-?inf)", bad["error"]), bad["error"]
    assert "params" in bad and "seconds" in bad and "val_accuracy" not in bad
    good = nas.evaluate(arch, space=mlp_space, data=digits, device="cpu", max_epochs=3, patience=None)
    assert good["status"] == "complete" and good["val_accuracy"] > 0.5


def test_fit_raises_training_failed_on_divergence(digits_cpu: DeviceData) -> None:
    with pytest.raises(TrainingFailed, match=r"^diverged: training loss (nan|-?inf) in epoch 1$") as info:
        fit(small_mlp(), digits_cpu, cpu_cfg(optimizer="sgd", lr=1e6, schedule="fixed", epochs=5))
    assert info.value.reason.startswith("diverged")


def test_invalid_nb201_cell_fails(digits: Dataset) -> None:
    space = load_space("nb201")
    m = nas.evaluate(NB201_DEAD, space=space, data=digits, device="cpu")
    assert m["status"] == "failed"
    assert m["error"].startswith("invalid architecture"), m["error"]
    assert "cut off" in m["error"]


def test_too_deep_for_8x8_fails(digits: Dataset) -> None:
    # Fine on 28x28; four 2x2 poolings take 8x8 input to nothing.
    space = dsl.space(input=[1, 28, 28], body=[dsl.repeat(4, dsl.conv(out=8), dsl.pool(kind="max", size=2))], name="deep")
    arch = space.make({})
    assert arch.error is None
    result = TrainingEvaluator(digits, device="cpu").evaluate(space, arch)
    assert result.status == "failed" and not result.ok
    assert result.error.startswith("invalid architecture"), result.error
    assert "too many downsampling" in result.error


@pytest.mark.parametrize("make_error, expected", [
    (lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of memory"),
    (lambda: RuntimeError("CUDA error: out of memory"), "out of memory"),
    (lambda: ValueError("boom"), "ValueError: boom"),
])
def test_errors_in_the_training_step_are_results(digits: Dataset, mlp_space: SearchSpace, monkeypatch: pytest.MonkeyPatch,
                                                   make_error: Any, expected: str) -> None:
    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=2, patience=None)
    arch = mlp_arch(mlp_space, (32,))
    released: list[Any] = []
    real_release = nt.release_memory

    def body(self: Any) -> None:
        raise make_error()

    def release(device: Any = None) -> None:
        released.append(device)
        real_release(device)

    with monkeypatch.context() as mp:
        mp.setattr(nt._Step, "_body", body)
        mp.setattr(nt, "release_memory", release)
        result = evaluator.evaluate(mlp_space, arch, seed=0)
    assert isinstance(result, Evaluation)
    assert result.status == "failed" and result.error == expected
    assert result.state is None and result.history == []
    assert result.metrics["params"] > 0 and "seconds" in result.metrics and "val_accuracy" not in result.metrics
    assert released, "memory was not released after the failure"
    # the same evaluator, in the same process, trains the next candidate normally
    again = evaluator.evaluate(mlp_space, arch, seed=0)
    assert again.ok and again.metrics["epochs"] == 2 and again.metrics["val_accuracy"] > 0.5


def test_fit_turns_oom_into_training_failed_and_releases_memory(digits_cpu: DeviceData, monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[Any] = []

    def body(self: Any) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(nt._Step, "_body", body)
    monkeypatch.setattr(nt, "release_memory", lambda device=None: released.append(device))
    with pytest.raises(TrainingFailed, match="^out of memory$"):
        fit(small_mlp(), digits_cpu, cpu_cfg())
    assert released == [torch.device("cpu")]


def test_oom_while_counting_flops_is_a_result(digits: Dataset, mlp_space: SearchSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    import nas.measure

    def count_flops(model: Any, shape: Any) -> int:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB")

    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=1)
    arch = mlp_arch(mlp_space, (16,))
    with monkeypatch.context() as mp:
        mp.setattr(nas.measure, "count_flops", count_flops)
        result = evaluator.evaluate(mlp_space, arch)
    assert result.status == "failed" and result.error == "out of memory"
    assert evaluator.evaluate(mlp_space, arch).ok


def test_oom_in_forward_is_a_result(digits: Dataset, mlp_space: SearchSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    # The model's own forward pass runs out of memory (after count_flops' forward has passed).
    calls = {"n": 0}
    real_forward = ops.Network.forward

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if self.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, x)

    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=1)
    arch = mlp_arch(mlp_space, (16,))
    with monkeypatch.context() as mp:
        mp.setattr(ops.Network, "forward", forward)
        result = evaluator.evaluate(mlp_space, arch)
    assert calls["n"] >= 2
    assert result.status == "failed" and result.error == "out of memory"
    assert evaluator.evaluate(mlp_space, arch).ok


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_real_cuda_oom_is_a_result(cuda_graph: bool) -> None:
    # 2**17 samples in one batch through a 2**20-unit dense layer: its output alone is 256 GiB.
    data = synthetic(2**17, 256, (64,), learnable=False, name="oom")
    space = dsl.space(input=[64], body=[dsl.dense(units=2**20, norm="none")], name="wide",
                      train={"optimizer": "adam", "lr": 1e-3, "batch_size": 2**17, "epochs": 1})
    evaluator = TrainingEvaluator(data, device="cuda", cuda_graph=cuda_graph, patience=None)
    result = evaluator.evaluate(space, space.make({}))
    assert result.status == "failed" and result.error == "out of memory", result.error
    del result
    torch.cuda.synchronize()
    # the process, and the device, are fine afterwards
    small = dsl.space(input=[64], body=[dsl.dense(units=32)], name="small", train={"lr": 3e-3, "batch_size": 64, "epochs": 3})
    ok = TrainingEvaluator(synthetic(1024, 256, (64,)), device="cuda", cuda_graph=cuda_graph).evaluate(small, small.make({}))
    assert ok.ok, ok.error
    assert ok.metrics["val_accuracy"] > 0.5


# --------------------------------------------------------------------------- constraints


def test_constraints_make_a_candidate_infeasible_without_training(digits: Dataset, mlp_space: SearchSpace,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=1)
    arch = mlp_arch(mlp_space, (32,))

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an infeasible candidate must not be trained")

    with monkeypatch.context() as mp:
        mp.setattr(nt, "fit", no_training)
        result = evaluator.evaluate(mlp_space, arch, constraints={"max_params": 10})
        flops = evaluator.evaluate(mlp_space, arch, constraints={"max_flops": 100, "max_params": None})
    assert result.status == "infeasible" and not result.ok
    assert "epochs" not in result.metrics and "val_accuracy" not in result.metrics
    assert result.metrics["params"] > 10 and "flops" in result.metrics
    assert result.error == f"params {result.metrics['params']} > max_params 10"
    assert flops.status == "infeasible" and "flops" in flops.error and "params" not in flops.error
    # generous limits do not get in the way
    fine = evaluator.evaluate(mlp_space, arch, constraints={"max_params": 10**9, "max_flops": 10**12})
    assert fine.ok and fine.metrics["epochs"] == 1


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("kwargs, field", [
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=1.5), "batch_size"),
    (dict(patience=0), "patience"),
    (dict(schedule="step"), "schedule"),
    (dict(monitor="train_loss"), "monitor"),
    (dict(lr=0.0), "lr"),
    (dict(epochs=-1), "epochs"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(time_limit=0), "time_limit"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(l1=-1.0), "l1"),
    (dict(min_delta=-0.5), "min_delta"),
    (dict(momentum=1.0), "momentum"),
    (dict(gamma=0.0), "gamma"),
])
def test_train_config_rejects_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageError, match=rf"^{field} must be"):
        TrainConfig(**kwargs)


def test_train_config_for_arch() -> None:
    cfg = TrainConfig.for_arch({"optimizer": "sgd", "lr": 0.5, "epochs": 7, "not_a_train_field": 1}, seed=3, patience=None, lr=None)
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.seed, cfg.patience) == ("sgd", 0.5, 7, 3, None)
    assert TrainConfig.for_arch({"lr": 0.5}, lr=0.01).lr == 0.01  # run options win
    with pytest.raises(UsageError, match="unknown training option 'learning_rate'"):
        TrainConfig.for_arch({}, learning_rate=0.1)
    with pytest.raises(UsageError, match="^optimizer must be"):
        TrainingEvaluator(synthetic(20, 10, (4,)), device="cpu", optimizer="rmsprop")


def test_resolve_device() -> None:
    assert nt.resolve_device("cpu") == torch.device("cpu")
    assert nt.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device"):
        nt.resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            nt.resolve_device("cuda")


def test_device_data(digits: Dataset) -> None:
    dd = DeviceData(digits, "cpu")
    x, y = dd.split("train")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape[1:]) == dd.input_shape == (1, 8, 8)
    assert dd.size("train") == len(digits.y_train) and dd.size("val") == len(digits.y_val) and dd.size("test") == len(digits.y_test)
    assert dd.num_classes == 10 and dd.name == "digits"
    assert torch.equal(dd.split("test")[1], torch.from_numpy(digits.y_test))


# --------------------------------------------------------------------------- CUDA training


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_nb201_trains_on_cuda(cuda_graph: bool) -> None:
    data = synthetic(1024, 256, (3, 32, 32), learnable=False, name="noise")
    space = load_space("nb201")
    m = nas.evaluate(NB201_ARCH, space=space, data=data, device="cuda", cuda_graph=cuda_graph,
                     max_epochs=2, patience=None, batch_size=128)
    assert m["status"] == "complete", m.get("error")
    assert m["epochs"] == 2 and m["device"].startswith("cuda")
    assert m["cuda_graph"] is cuda_graph, m.get("graph_note")
    if cuda_graph:
        assert m["graph_note"] is None
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in m["history"])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("optimizer, lr", [("adam", 3e-3), ("nesterov", 0.05)])
def test_cuda_graph_and_eager_agree(optimizer: str, lr: float) -> None:
    data = synthetic(2048, 512, (3, 8, 8), name="clusters")
    space = dsl.space(input=[3, 8, 8], name="cnn_small",
                      body=[dsl.conv(out=16, kernel=3), dsl.pool(kind="max", size=2), dsl.conv(out=32, kernel=3)],
                      head={"pool": "flatten"},
                      train={"optimizer": optimizer, "lr": lr, "batch_size": 128, "epochs": 4, "schedule": "cosine"})
    arch = space.make({})
    runs = {g: nas.evaluate(arch, space=space, data=data, device="cuda", cuda_graph=g, patience=None, seed=0) for g in (True, False)}
    for g, m in runs.items():
        assert m["status"] == "complete", m.get("error")
        assert m["cuda_graph"] is g, m.get("graph_note")
        assert m["val_accuracy"] > 0.8, m
    assert abs(runs[True]["val_accuracy"] - runs[False]["val_accuracy"]) <= 0.05
    assert runs[True]["val_loss"] == pytest.approx(runs[False]["val_loss"], rel=0.25, abs=0.05)


# --------------------------------------------------------------------------- nas train


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_cli_train_prints_an_epoch_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "mlp", "--arch", "random:1", "--data", "digits", "--epochs", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [line for line in out.splitlines() if re.match(r"^\s*\d+\s+-?\d+\.\d{4}\s+\d+\.\d{4}\s+[01]\.\d{4}\s", line)]
    assert len(rows) == 3, out
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3]
    assert re.search(r"^\s*epoch\s+train loss\s+val loss\s+val acc", out, re.M)
    assert "val accuracy" in out and "stopped by max epochs" in out


def test_cli_train_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "mlp", "--arch", "random:1", "--data", "digits", "--epochs", "2", "--json", "--test"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "complete" and doc["epochs"] == 2 and len(doc["history"]) == 2
    assert 0.0 <= doc["test_accuracy"] <= 1.0 and "arch" in doc and "key" in doc


@pytest.mark.parametrize("content", [None, "{not json", '{"no_such_decision": 1}'])
def test_cli_train_bad_arch_file(tmp_path: Any, capsys: pytest.CaptureFixture[str], content: str | None) -> None:
    path = tmp_path / "arch.json"
    if content is not None:
        path.write_text(content)
    code = cli.main(["train", "mlp", "--arch", str(path), "--data", "digits", "--epochs", "1"])
    out, err = capsys.readouterr()
    assert code == 2
    line = _one_line(err)
    assert line.startswith("nas: error: --arch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_train_cuda_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "mlp", "--arch", "random:1", "--data", "digits", "--device", "cuda"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "CUDA is not available" in _one_line(err)


# --------------------------------------------------------------------------- issue 11: trust


def test_fit_and_build_leave_the_global_rng_alone(digits: Dataset, digits_cpu: DeviceData, mlp_space: SearchSpace) -> None:
    # other threads draw from the process-wide RNG: training (dropout, shuffling) must not
    # reseed or advance it, and a build puts back what it seeded
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    before = torch.get_rng_state()
    fit(model, digits_cpu, cpu_cfg(seed=5, epochs=1))
    assert torch.equal(torch.get_rng_state(), before)
    evaluator = TrainingEvaluator(digits, device="cpu")
    evaluator.build(mlp_space, mlp_arch(mlp_space, (32,), dropout=0.1), seed=7)
    assert torch.equal(torch.get_rng_state(), before)


def test_thread_workers_give_the_metrics_of_inline(digits: Dataset, mlp_space: SearchSpace) -> None:
    # two candidates with dropout trained side by side in two threads of one process (as
    # thread-shared workers do) get exactly the metrics each gets alone
    import threading

    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=3, patience=None)
    archs = [mlp_arch(mlp_space, (64, 32), dropout=0.3, batch_size=32), mlp_arch(mlp_space, (32,), dropout=0.1, batch_size=32)]
    seeds = [11, 12]
    keys = ("val_accuracy", "val_loss", "train_loss", "params")
    inline = [{k: evaluator.evaluate(mlp_space, a, seed=s).metrics[k] for k in keys} for a, s in zip(archs, seeds)]
    threaded: list[dict[str, Any]] = [{}, {}]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        ev = evaluator.evaluate(mlp_space, archs[i], seed=seeds[i], on_epoch=lambda rec: time_slice())
        threaded[i] = {k: ev.metrics[k] for k in keys}

    def time_slice() -> None:  # hand the interpreter to the other thread between epochs
        import time
        time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert threaded == inline


def test_unwrap_state_takes_torch_compile_prefix_off() -> None:
    net = nn.Sequential(nn.Linear(4, 3))
    wrapped = {f"_orig_mod.{k}": v for k, v in net.state_dict().items()}
    plain = nt.unwrap_state(wrapped)
    assert set(plain) == set(net.state_dict())
    nn.Sequential(nn.Linear(4, 3)).load_state_dict(plain)


@pytest.mark.slow
def test_compiled_training_keeps_the_networks_own_state(digits: Dataset, mlp_space: SearchSpace) -> None:
    # torch.compile on a tiny MLP (about 10 s on a CPU): the kept weights are the network's, so
    # test scoring (and export) load them into the plain network
    evaluator = TrainingEvaluator(digits, device="cpu", max_epochs=1, compile=True)
    arch = mlp_arch(mlp_space, (16,), dropout=0.1)
    ev = evaluator.evaluate(mlp_space, arch, seed=3)
    assert ev.ok, ev.error
    assert ev.state is not None and not any(k.startswith("_orig_mod.") for k in ev.state)
    scores = evaluator.test(mlp_space, arch, ev.state)
    assert 0.0 <= scores["test_accuracy"] <= 1.0


# -- nas search flags that would be ignored are refused ---------------------------------------
@pytest.mark.parametrize("flags", [["--epochs", "3"], ["--patience", "2"], ["--latency-mode", "eager"], ["--device", "cpu"],
                                   ["--time-limit", "10"], ["--no-cuda-graph"], ["--data-seed", "1"], ["--keep-weights", "none"],
                                   ["--latency-batch", "4"]])
def test_search_refuses_training_flags_for_tables(tmp_path: Any, capsys: pytest.CaptureFixture[str], flags: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["search", "--data", "nb201:cifar10", "--budget", "3", "--no-progress", "--run", "r", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flags[0] in err[0] and "nb201:cifar10" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("expr", ["params<5000", "flops<1e6,params<=10", "latency<2ms"])
def test_search_refuses_strict_constraints(tmp_path: Any, capsys: pytest.CaptureFixture[str], expr: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["search", "--data", "nb201:cifar10", "--budget", "3", "--no-progress", "--run", "r", "--constraint", expr])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "write <=" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("expr", ["params<5000", "flops<1e6,params<=10", "latency<2ms"])
def test_python_api_refuses_strict_constraints(tmp_path: Any, expr: str) -> None:
    """The same refusal through `nas.search` and `parse_constraints` (they once read `<` as `<=`)."""
    import nas
    from nas.errors import UsageError
    from nas.objectives import parse_constraints

    with pytest.raises(UsageError, match="write <="):
        parse_constraints([expr])
    with pytest.raises(UsageError, match="write <="):
        nas.search("nb201", data="nb201:cifar10", budget=3, constraints=[expr], run=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    assert parse_constraints(["params<=5000"]) == {"max_params": 5000.0}


def test_no_progress_still_prints_the_generation_rows(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["search", "--data", "nb201:cifar10", "--strategy", "random", "--budget", "10", "--no-progress", "--run", "r"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("evaluated")]
    assert len(rows) >= 1 and "front" in rows[0], out


def test_optimizer_state_copy_shares_nothing_and_equals_a_deep_copy() -> None:
    """The checkpoint's copy of an optimizer state (`_copy_state`, in place of copy.deepcopy):
    the same values and structure, and no tensor or container shared with the live state, so
    training on after a checkpoint does not change it."""
    import copy

    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    live = opt.state_dict()
    ours, theirs = nt._copy_state(live), copy.deepcopy(live)

    def flat(obj, path=()):
        if isinstance(obj, dict):
            return [x for k, v in obj.items() for x in flat(v, path + (k,))]
        if isinstance(obj, (list, tuple)):
            return [(path, type(obj))] + [x for i, v in enumerate(obj) for x in flat(v, path + (i,))]
        return [(path, obj)]

    a, b = flat(ours), flat(theirs)
    assert [p for p, _ in a] == [p for p, _ in b]
    for (_, x), (_, y) in zip(a, b):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    live_tensors = {id(v) for s in live["state"].values() for v in s.values()}
    assert not live_tensors & {id(v) for s in ours["state"].values() for v in s.values()}
    assert ours["param_groups"][0] is not live["param_groups"][0] and ours["param_groups"][0]["params"] is not live["param_groups"][0]["params"]
    before = {k: {n: t.clone() for n, t in s.items()} for k, s in ours["state"].items()}
    model(torch.randn(4, 6)).sum().backward()
    opt.step()  # training on updates the live moments in place
    assert all(torch.equal(ours["state"][k][n], t) for k, s in before.items() for n, t in s.items())
