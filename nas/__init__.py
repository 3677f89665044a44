"""nas: neural architecture search with a search-space DSL, evolution, random and RL search,
a fast trainer, Pareto ranking, and exports that load anywhere torch does.

    import nas
    space = nas.load_space("cnn")                    # or a YAML file of your own
    arch = space.sample(seed)                        # an Architecture
    model = nas.build_model(space, arch)             # a torch.nn.Module

Names that need torch are imported on first use, so `import nas` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import NasError, UsageError
from .space import Architecture, InvalidArchitecture, SearchSpace, SpaceError, load_space

__version__ = "0.1.0"

_LAZY = {
    "build_model": "nas.build",
    "count_params": "nas.measure",
    "count_flops": "nas.measure",
    "load_dataset": "nas.data",
    "DataError": "nas.data",
    "evaluate": "nas.evaluators",
    "open_run": "nas.runs",
    "Run": "nas.runs",
    "load_model": "nas.export",
    "load_architecture": "nas.export",
    "TrainConfig": "nas.train",
}


_SUBMODULES = ("objectives", "runs", "report", "pareto", "store", "export")  # nas.export is the module (export.export the function)

# The driver is imported now (it needs no torch): `nas.search` must be the function even after
# something imports the `nas.search` module, and Python binds a submodule to its package's
# attribute only when it first loads it, so loading it here, before the function is bound, keeps
# the function there for good.
from .search import resume, search  # noqa: E402


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # nas.objectives.Objective etc. after a bare `import nas`
        return importlib.import_module(f"nas.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Architecture",
    "DataError",
    "InvalidArchitecture",
    "NasError",
    "SearchSpace",
    "SpaceError",
    "UsageError",
    "build_model",
    "count_flops",
    "count_params",
    "evaluate",
    "load_architecture",
    "load_model",
    "objectives",
    "open_run",
    "Run",
    "resume",
    "search",
    "TrainConfig",
    "load_dataset",
    "load_space",
]
