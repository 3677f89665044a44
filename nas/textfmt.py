"""Plain-text tables and numbers for the terminal."""

from __future__ import annotations

from typing import Any, Sequence


def human(n: float | int | None, digits: int = 3) -> str:
    """1234567 -> '1.23M'."""
    if n is None:
        return "-"
    n = float(n)
    if abs(n) >= 1e15:
        return f"{n:.{digits - 1}e}"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{unit}"
    return f"{n:.{digits}g}"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], align: str | None = None) -> str:
    """A left/right aligned text table; `align` is one letter per column ('l' or 'r')."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" * len(headers)

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)
