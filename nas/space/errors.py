"""Errors raised by the search-space language, each naming the file, the field path and the reason."""

from __future__ import annotations

from ..errors import NasError


class SpaceError(NasError, ValueError):
    """A malformed search space: ``source: path: reason`` on one line."""

    def __init__(self, reason: str, *, source: str | None = None, path: str | None = None) -> None:
        self.reason = " ".join(str(reason).split())  # one line, always
        self.source = source
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        return ": ".join(p for p in (self.source, self.path, self.reason) if p)

    def with_source(self, source: str) -> "SpaceError":
        err = type(self)(self.reason, source=self.source or source, path=self.path)
        return err


class InvalidArchitecture(SpaceError):
    """An architecture the space cannot build: a cut-off cell, an impossible shape, a bad value."""


class ShapeMismatch(InvalidArchitecture):
    """A layer cannot take the shape it is given (e.g. more downsampling than the input allows)."""
