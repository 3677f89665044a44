"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from nas.space import SearchSpace, load_space, shipped_spaces


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
