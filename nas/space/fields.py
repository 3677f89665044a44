"""Typed fields of the DSL: each checks (and coerces) one value and says what it expected."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

class _Required:
    """Marker: the field has no default (a stable repr keeps fingerprints stable)."""

    def __repr__(self) -> str:
        return "<required>"

    __str__ = __repr__


REQUIRED = _Required()


class FieldProblem(Exception):
    """Raised by a field type; the compiler adds the file and the path."""


@dataclass(frozen=True)
class Int:
    min: int | None = None
    max: int | None = None
    odd: bool = False

    def check(self, value: Any) -> int:
        # bool is an int subclass in Python; `true` as a width is surely a mistake
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FieldProblem(f"expected an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise FieldProblem(f"expected an integer, got {value!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise FieldProblem(f"expected an integer, got {value!r}")
        out = int(number)
        if self.min is not None and out < self.min:
            raise FieldProblem(f"expected an integer >= {self.min}, got {out}")
        if self.max is not None and out > self.max:
            raise FieldProblem(f"expected an integer <= {self.max}, got {out}")
        if self.odd and out % 2 == 0:
            raise FieldProblem(f"expected an odd integer, got {out}")
        return out

    def describe(self) -> str:
        bits = ["integer"]
        if self.min is not None:
            bits.append(f">= {self.min}")
        if self.max is not None:
            bits.append(f"<= {self.max}")
        return " ".join(bits)


@dataclass(frozen=True)
class Float:
    min: float | None = None
    max: float | None = None
    max_exclusive: bool = False

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FieldProblem(f"expected a number, got {value!r}")
        try:
            # YAML 1.1 reads 1e-3 (no dot) as a string: accept it as the number it plainly is
            out = float(value)
        except ValueError:
            raise FieldProblem(f"expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise FieldProblem(f"expected a finite number, got {value!r}")
        if self.min is not None and out < self.min:
            raise FieldProblem(f"expected a number >= {self.min}, got {out:g}")
        if self.max is not None:
            if self.max_exclusive and out >= self.max:
                raise FieldProblem(f"expected a number < {self.max}, got {out:g}")
            if not self.max_exclusive and out > self.max:
                raise FieldProblem(f"expected a number <= {self.max}, got {out:g}")
        return out

    def describe(self) -> str:
        return "number"


@dataclass(frozen=True)
class Enum:
    values: tuple[Any, ...]
    what: str = "one of"

    def check(self, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            lowered = value.lower()
            for v in self.values:
                if isinstance(v, str) and v.lower() == lowered:
                    return v
        elif value is None and None in self.values:
            return None
        elif isinstance(value, bool) and value in self.values:
            return value
        raise FieldProblem(f"expected {self.what} {', '.join(map(str, self.values))}; got {value!r}")

    def describe(self) -> str:
        return f"{self.what} {', '.join(map(str, self.values))}"


@dataclass(frozen=True)
class Bool:
    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise FieldProblem(f"expected true or false, got {value!r}")

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Field:
    """One field of a layer or of the train section."""

    type: Any
    default: Any = REQUIRED
    decision: bool = True  # may the value be searched over?
    doc: str = ""


def closest(name: str, options: Sequence[str]) -> str:
    """' (did you mean x?)' when one of `options` is close to `name`, else ''."""
    import difflib

    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
