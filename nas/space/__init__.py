"""The search-space language: parse, validate, sample, mutate, cross over, encode, resolve."""

from __future__ import annotations

from pathlib import Path

from . import dsl
from .cell import canonical_cell, cell_string, parse_cell_string
from .compile import Decision
from .errors import InvalidArchitecture, ShapeMismatch, SpaceError
from .layers import ACTIVATIONS, CELL_OPS, LAYERS, LayerSchema, register_layer
from .space import Architecture, Resolved, SearchSpace

SHIPPED = Path(__file__).resolve().parent.parent / "search_spaces"


def shipped_spaces() -> dict[str, Path]:
    """Name -> file of the spaces that come with the package."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def load_space(spec: str | Path) -> SearchSpace:
    """A space from a YAML file, or a shipped space by name (`mlp`, `cnn`, `resnet`, `nb201`)."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in str(spec):
        return SearchSpace.from_yaml(path)
    shipped = shipped_spaces()
    if str(spec) in shipped:
        return SearchSpace.from_yaml(shipped[str(spec)])
    raise SpaceError(f"no such space file or shipped space; shipped: {', '.join(shipped) or 'none'}", source=str(spec))


__all__ = [
    "ACTIVATIONS",
    "CELL_OPS",
    "LAYERS",
    "Architecture",
    "Decision",
    "InvalidArchitecture",
    "LayerSchema",
    "Resolved",
    "SearchSpace",
    "ShapeMismatch",
    "SpaceError",
    "canonical_cell",
    "cell_string",
    "dsl",
    "load_space",
    "parse_cell_string",
    "register_layer",
    "shipped_spaces",
]
