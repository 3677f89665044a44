"""Tests for nas.measure: parameter and FLOP counts on hand-computable networks, and latency."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import nas
from nas.devices import device_lock
from nas.measure import Latency, count_flops, count_params, hardware_fingerprint, measure_latency

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # tiny networks; one thread keeps them fast on a busy machine (tests that care set their own)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def conv_linear() -> nn.Module:
    # 3x8x8 -> conv 3->8 k3 pad 1 (with bias) -> 8x8x8 = 512 outputs -> flatten -> linear 512->10
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))


# --------------------------------------------------------------------------- parameters and FLOPs


def test_count_params_by_hand() -> None:
    model = conv_linear()
    conv, linear = 8 * 3 * 3 * 3 + 8, 512 * 10 + 10
    assert count_params(model) == conv + linear == 5354
    model[0].weight.requires_grad_(False)
    assert count_params(model) == 8 + linear
    assert count_params(model, trainable_only=False) == conv + linear


def test_count_flops_conv_and_linear_by_hand() -> None:
    # NAS-Bench-201's convention: multiply-accumulates of conv and linear layers, plus one add
    # per output for a bias; the ReLU is free.
    conv_outputs = 8 * 8 * 8
    conv = conv_outputs * (3 * 3 * 3) + conv_outputs  # 13,824 MACs + 512 bias adds
    linear = 10 * 512 + 10  # 5,120 MACs + 10 bias adds
    assert count_flops(conv_linear(), (3, 8, 8)) == conv + linear == 19466


def test_count_flops_stride_groups_and_no_bias() -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 6, kernel_size=3, stride=2, bias=False),  # 9x9 -> 4x4: 6*4*4 outputs x 4*3*3
        nn.BatchNorm2d(6),  # normalisation is not counted
        nn.Conv2d(6, 6, kernel_size=3, padding=1, groups=6),  # depthwise: 96 outputs x (1*3*3 + bias)
        nn.AdaptiveAvgPool2d(1),  # pooling is not counted
        nn.Flatten(),
        nn.Linear(6, 3, bias=False),  # 3 x 6
    )
    assert count_flops(model, (4, 9, 9)) == 96 * 36 + 96 * 10 + 18 == 4434


def test_count_flops_matches_nb201_table() -> None:
    from nas.nb201 import NB201Table

    table = NB201Table.load()
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    space = nas.load_space("nb201")
    model = nas.build_model(space, space.parse_arch(arch))
    row = table.row(table.index(arch))
    assert count_flops(model, space.input_shape) / 1e6 == pytest.approx(row["flops_M_c10"], abs=1e-5)
    assert count_params(model) / 1e6 == pytest.approx(row["params_M_c10"], abs=1e-6)


def test_count_flops_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model.train()
    model(torch.randn(5, 1, 8, 8))  # non-trivial running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (1, 8, 8))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert int(after["1.num_batches_tracked"]) == 1
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed

    # an eval-mode model stays in eval mode, and mixed modes (a frozen BN) survive
    model.eval()
    count_flops(model, (1, 8, 8))
    assert not any(m.training for m in model.modules())
    model.train()
    model[1].eval()
    count_flops(model, (1, 8, 8))
    assert model.training and not model[1].training and model[3].training


def test_count_flops_restores_modes_after_an_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))
    model.train()
    with pytest.raises(RuntimeError):
        count_flops(model, (3, 3))  # 9 features into a 10-input layer
    assert model.training and not any(m._forward_hooks for m in model.modules())


# --------------------------------------------------------------------------- latency


def test_measure_latency_cpu() -> None:
    model = conv_linear()
    model.train()
    torch.set_num_threads(2)
    lat = measure_latency(model, (3, 8, 8), batch_size=4, warmup=2, runs=7, threads=1, min_seconds=0)
    assert isinstance(lat, Latency)
    assert lat.median_ms > 0 and lat.min_ms > 0 and lat.min_ms <= lat.median_ms
    assert lat.iqr_ms >= 0 and lat.spread >= 0
    assert lat.runs == 7 and lat.batch_size == 4 and lat.mode == "eager"
    hw = lat.hardware
    assert hw["device"] == "cpu" and hw["torch"] == torch.__version__ and hw["threads"] == 1
    assert hw["device_name"] and hw["cpu"] and hw["python"]
    assert torch.get_num_threads() == 2  # restored
    assert model.training  # measured on a copy in eval mode; the original is untouched
    d = lat.as_dict()
    assert d["median_ms"] == lat.median_ms and d["spread"] == lat.spread and d["hardware"] == hw


def test_measure_latency_threads_none_and_min_seconds() -> None:
    torch.set_num_threads(1)
    lat = measure_latency(nn.Linear(4, 2), (4,), warmup=0, runs=1, threads=None, min_seconds=0.05)
    assert lat.runs > 1  # kept timing until min_seconds had passed
    assert lat.hardware["threads"] == 1 == torch.get_num_threads()


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="cuda_graph"), "needs a CUDA device"),
    (dict(mode="graph"), "mode must be 'eager' or 'cuda_graph'"),
    (dict(runs=0), "runs must be >= 1"),
    (dict(batch_size=0), "batch_size"),
    (dict(warmup=-1), "warmup >= 0"),
])
def test_measure_latency_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match=match):
        measure_latency(nn.Linear(4, 2), (4,), device="cpu", **kwargs)
    assert torch.get_num_threads() == threads


def test_hardware_fingerprint_and_device_lock() -> None:
    hw = hardware_fingerprint("cpu")
    assert hw["device"] == "cpu" and hw["torch"] == torch.__version__
    assert hw["threads"] == torch.get_num_threads()
    assert hardware_fingerprint("cpu", threads=3)["threads"] == 3
    assert device_lock("cpu") is device_lock(torch.device("cpu"))


@pytest.mark.gpu
@needs_cuda
def test_measure_latency_cuda_eager_and_graph() -> None:
    model = conv_linear()
    results = {mode: measure_latency(model, (3, 8, 8), device="cuda", batch_size=8, warmup=3, runs=20, mode=mode)
               for mode in ("eager", "cuda_graph")}
    for mode, lat in results.items():
        assert lat.mode == mode and lat.runs >= 20 and lat.batch_size == 8  # min_seconds keeps timing past runs
        assert lat.median_ms > 0 and lat.min_ms <= lat.median_ms
        assert lat.hardware["device"] == "cuda" and lat.hardware["cuda"] == torch.version.cuda
        assert lat.hardware["device_name"] == torch.cuda.get_device_name()
    assert next(model.parameters()).device.type == "cpu"  # the original stayed where it was
    # FLOPs are counted on the model's own device
    assert count_flops(model.cuda(), (3, 8, 8)) == 19466
