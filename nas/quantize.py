"""Int8 post-training quantisation for CPU: calibrated on training batches, batch norm folded,
saved as TorchScript.

Which path (measured on this project's CPU, torch 2.13, batch 1, 1 thread, a 4-conv MNIST CNN;
`benchmarks/compression.py` has the full comparison):

- FX graph mode (`torch.ao.quantization.quantize_fx`, x86 engine) traced to TorchScript:
  0.17 ms against 0.87 ms in float (5x). It fuses conv + batch norm (+ ReLU) and quantises
  residual additions by itself. `torch.ao.quantization` warns that it is deprecated in favour of
  torchao, but in torch 2.13 it is present and its int8 kernels (fbgemm / oneDNN) are the ones
  a TorchScript program calls; a saved program needs no part of the Python API.
- PT2E in torchao 0.18 (`prepare_pt2e` / `convert_pt2e`, `X86InductorQuantizer`): 1.59 ms run
  as it is (quantise-dequantise around float convs, slower than float), 0.67 ms after
  `torch.compile` (18 s of compiling per network, a C++ compiler at load time): 1.3x.
- `torchao.quantize_` covers linear layers only.

So this module uses FX graph mode, and the deployable artefact is a TorchScript file
(`torch.jit.load`, which never unpickles Python objects); it runs with torch alone.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import UsageError

def engine() -> str:
    """The quantised CPU engine: x86 (fbgemm + oneDNN) where torch has it, else qnnpack (ARM)."""
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise UsageError(f"this torch build has no quantised CPU engine (supported: {engines})")


class _Plain(nn.Module):
    """`Network.forward` without its shape check (a Python branch FX cannot trace)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.input_shape = tuple(net.input_shape)
        self.body = net.body
        self.head = net.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.reshape(x.shape[0], *self.input_shape)))


def quantize_int8(net: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor) -> bytes:
    """The int8 network as TorchScript bytes: FX-prepared (batch norm folded into the convs),
    observers calibrated on `calibration` batches, converted, traced with `example`, frozen."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    name = engine()
    torch.backends.quantized.engine = name
    model = _Plain(copy.deepcopy(net).cpu().float()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch.ao deprecation notice and observer notes (see the module docstring)
        prepared = prepare_fx(model, get_default_qconfig_mapping(name), (example,))
        with torch.no_grad():
            for xb in calibration:
                prepared(xb.cpu().float())
        quantized = convert_fx(prepared)
        with torch.no_grad():
            traced = torch.jit.trace(quantized, example)
        traced = torch.jit.freeze(traced.eval())
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def load_int8(data: bytes | str) -> torch.jit.ScriptModule:
    """A saved int8 program (bytes or a path), in eval mode, on the CPU."""
    torch.backends.quantized.engine = engine()
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return torch.jit.load(src, map_location="cpu").eval()


def calibration_batches(x: torch.Tensor, batches: int = 16, batch_size: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """`batches` seeded random batches of training inputs (CPU)."""
    n = int(x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    out = []
    for i in range(batches):
        idx = perm[(i * batch_size) % n:(i * batch_size) % n + batch_size]
        if len(idx):
            out.append(x.index_select(0, idx.to(x.device)).cpu())
    return out


def example_input(input_shape: Sequence[int]) -> torch.Tensor:
    return torch.zeros(1, *input_shape)
