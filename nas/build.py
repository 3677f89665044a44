"""Architecture -> torch.nn.Module, with shape problems reported as InvalidArchitecture."""

from __future__ import annotations

from typing import Sequence

import torch

from .ops import Network
from .space import Architecture, SearchSpace


def build_model(space: SearchSpace, arch: Architecture, *, input_shape: Sequence[int] | None = None,
                classes: int | None = None, device: str | torch.device | None = None) -> Network:
    """The network of `arch` for the space's input shape and class count, or the ones given.

    Raises InvalidArchitecture (naming the decision) when the architecture cannot be built for
    that input, never a torch shape error half-way through a search.
    """
    if input_shape is not None or classes is not None:
        target = tuple(input_shape) if input_shape is not None else space.input_shape
        if target != space.input_shape or (classes is not None and classes != space.classes):
            retargeted = space.with_input(target, classes)
            arch = retargeted.make(dict(arch))
            space = retargeted
    resolved = space.resolve(arch)  # raises the precise error (ShapeMismatch with its path) if invalid
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return Network(resolved.net)
    model = Network(resolved.net)
    return model.to(device) if device is not None else model
