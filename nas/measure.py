"""Costs of a built network: parameters, FLOPs, latency, and the hardware they were measured on."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


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
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
