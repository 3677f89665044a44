"""The error family the CLI reports as one line with exit code 2 (bad input, not a bug)."""

from __future__ import annotations


class NasError(Exception):
    """Bad input from the user: a malformed space, a missing file, a wrong option, a bad run."""


class UsageError(NasError, ValueError):
    """An option or argument that cannot be used as given."""
