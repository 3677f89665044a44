"""Costs of a built network: parameters, FLOPs, latency, and the hardware they were measured on."""

from __future__ import annotations

import contextlib
import copy
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .devices import device_access


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs of one input, counted as NAS-Bench-201 counts them: the multiply-accumulates
    of Conv2d and Linear layers plus one add per output for a bias (normalisation, activations,
    pooling and additions are left out).

    Runs one forward pass on a zero input of batch size 1 on the model's device, in eval mode
    (so batch-norm statistics are not touched), with hooks that read each layer's output shape.
    """
    total = 0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        per_output = (mod.in_channels // mod.groups) * kh * kw + (mod.bias is not None)
        total += out[0].numel() * per_output

    def linear_hook(mod: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * (mod.in_features + (mod.bias is not None))

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return int(total)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode, each module's own mode put back after (a frozen BN stays in eval)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@dataclass(frozen=True)
class Latency:
    """Latency of one forward pass: the median of `runs` timed runs and the spread beside it."""

    median_ms: float
    iqr_ms: float  # interquartile range of the timed runs
    min_ms: float
    runs: int
    batch_size: int
    mode: str  # eager | cuda_graph
    hardware: dict[str, Any]

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


def hardware_fingerprint(device: str | torch.device = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What a measurement ran on: device name, torch and CUDA versions, CPU threads."""
    dev = torch.device(device)
    info: dict[str, Any] = {
        "device": dev.type,
        "torch": torch.__version__,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "cpu": _cpu_name(),
        "python": platform.python_version(),
    }
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = info["cpu"]
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: Sequence[int], *, device: str | torch.device = "cpu", batch_size: int = 1,
                    warmup: int = 10, runs: int = 50, threads: int | None = 1, mode: str = "eager",
                    min_seconds: float = 0.25) -> Latency:
    """Latency of `model` on `device` (measured in place if it is there, else on a copy; its
    train/eval mode is put back afterwards).

    CPU: `threads` intra-op threads (fixed, default 1, so numbers compare across runs), timed
    with `perf_counter`. CUDA: timed with CUDA events; `mode="cuda_graph"` replays the forward
    pass captured in a CUDA graph, which removes Python launch overhead (what a deployed,
    graph-compiled model sees); `mode="eager"` is what a plain PyTorch loop sees. fp32, eval mode.
    `min_seconds` keeps timing past `runs` until that much time has been spent (and warm-up
    lasts at least a fifth of it): 50 runs of a 0.1 ms network are 5 ms, short enough for one
    burst of other work on the machine to move the median.
    """
    if mode not in ("eager", "cuda_graph"):
        raise ValueError(f"mode must be 'eager' or 'cuda_graph', got {mode!r}")
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise ValueError("batch_size and runs must be >= 1 and warmup >= 0")
    dev = torch.device(device)
    if mode == "cuda_graph" and dev.type != "cuda":
        raise ValueError("mode 'cuda_graph' needs a CUDA device")
    # measured in place when it already lives on `dev`: a copy lands elsewhere in memory, and on
    # a CPU that alone moved the median of one network by 20% between copies
    param = next(model.parameters(), None)
    net = model if param is None or param.device == dev else copy.deepcopy(model).to(dev)
    # a generator of its own: the process-wide RNG belongs to the threads that build networks
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(dev)
    times: list[float] = []
    with eval_mode(net), device_access(dev, exclusive=True), _threads(threads if dev.type == "cpu" else None):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)  # what other threads queued before they stepped aside
        if dev.type == "cpu":
            begin = time.perf_counter()
            done = 0
            while done < warmup or time.perf_counter() - begin < min_seconds / 5:
                net(x)
                done += 1
            begin = time.perf_counter()
            while len(times) < runs or time.perf_counter() - begin < min_seconds:
                t0 = time.perf_counter()
                net(x)
                times.append((time.perf_counter() - t0) * 1e3)
        else:
            run: Callable[[], Any] = lambda: net(x)
            if mode == "cuda_graph":
                side = torch.cuda.Stream(dev)
                side.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(side):
                    for _ in range(3):
                        net(x)
                torch.cuda.current_stream(dev).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    net(x)
                run = graph.replay
            for _ in range(warmup):
                run()
            torch.cuda.synchronize(dev)
            begin = time.perf_counter()
            while len(times) < runs or time.perf_counter() - begin < min_seconds:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
    arr = np.asarray(times)
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return Latency(float(med), float(q3 - q1), float(arr.min()), len(times), batch_size, mode,
                   hardware_fingerprint(dev, threads if dev.type == "cpu" else None))
