"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from nas.space import SearchSpace, load_space, shipped_spaces

ROOT = Path(__file__).resolve().parents[1]


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a Python subprocess that imports `nas` from this checkout: the
    repository root put in front of PYTHONPATH (not in place of it: packages may come from
    there too), plus `extra`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def spaces() -> dict[str, SearchSpace]:
    """Every shipped space, by name."""
    return {name: load_space(name) for name in sorted(shipped_spaces())}


@pytest.fixture
def space_from_yaml(tmp_path: Path) -> Callable[..., SearchSpace]:
    """Write YAML text to a file in tmp_path and load it as a space."""

    def write(text: str, name: str = "space.yaml") -> SearchSpace:
        path = tmp_path / name
        path.write_text(text)
        return SearchSpace.from_yaml(path)

    return write
