"""Plain-text tables and numbers for the terminal.

Tables fit the terminal: when a table is wider than the terminal, its flexible column (the
architecture, a description) is cut with "..." or wrapped onto continuation lines; numbers are
never cut. Output that goes to a pipe or a file is not cut (unless $COLUMNS says a width).
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Any, Mapping, Sequence


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


def terminal_width() -> int | None:
    """Columns of the terminal stdout writes to; $COLUMNS when set; None for a pipe or a file
    (nothing to fit)."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, "..." marking a cut."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 3)] + "..." if width > 3 else text[:width]


def wrap(text: str, width: int, indent: str = "") -> str:
    """`text` wrapped at `width` (long words broken), continuation lines indented by `indent`."""
    width = max(8, width)
    lines = textwrap.wrap(text, width=width, subsequent_indent=indent, break_long_words=True, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], align: str | None = None, *, flex: int | None = None,
          width: int | None = -1, overflow: str = "cut") -> str:
    """A left/right aligned text table; `align` is one letter per column ('l' or 'r').

    `flex` is the index of the one column that may shrink (default: the last left-aligned column)
    so that the table fits `width` columns (default: the terminal's, see `terminal_width`; None:
    never shrink). Its cells are cut with "..." (`overflow="cut"`) or wrapped onto continuation
    lines (`overflow="wrap"`); other columns, numbers above all, keep their full text."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    ncol = len(headers)
    align = align or "l" * ncol
    widths = [max(len(line) for r in cells for line in (r[i].split("\n") or [""])) for i in range(ncol)]
    if width == -1:
        width = terminal_width()
    if flex is None:
        lefts = [i for i, a in enumerate(align) if a == "l"]
        flex = lefts[-1] if lefts else None
    if width is not None and flex is not None and sum(widths) + 2 * (ncol - 1) > width:
        others = sum(w for i, w in enumerate(widths) if i != flex) + 2 * (ncol - 1)
        room = max(len(cells[0][flex]), 12, width - others)
        if room < widths[flex]:
            widths[flex] = room
            for r in cells[1:]:
                r[flex] = "\n".join(wrap(part, room) for part in r[flex].split("\n")) if overflow == "wrap" else cut(r[flex], room)

    def lines(r: list[str]) -> list[str]:
        parts = [c.split("\n") for c in r]
        height = max(len(p) for p in parts)
        out = []
        for k in range(height):
            row = [p[k] if k < len(p) else "" for p in parts]
            out.append("  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip())
        return out

    out = lines(cells[0]) + ["  ".join("-" * w for w in widths)]
    for r in cells[1:]:
        out += lines(r)
    return "\n".join(out)


def distinguish(summaries: Sequence[str], archs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Summaries that tell apart architectures a summary leaves looking the same: where rows
    share a summary but their decisions differ (a weight decay, a momentum the summary omits),
    each gets the decisions that differ appended, `[weight_decay=0.0001]`."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(summaries):
        groups.setdefault(s, []).append(i)
    out = list(summaries)
    for text, idx in groups.items():
        if len(idx) < 2:
            continue
        labels = sorted({k for i in idx for k in archs[i]})
        differ = [k for k in labels if len({repr(archs[i].get(k)) for i in idx}) > 1]
        if not differ:
            continue
        for i in idx:
            out[i] = text + " [" + ", ".join(f"{k}={archs[i].get(k, '-')}" for k in differ) + "]"
    return out


SUMMARY_SHOWS = ("optimizer", "lr", "batch_size")  # the training settings a space's summary spells out


def summary_notes(space: Any, arch: Mapping[str, Any], text: str) -> str:
    """`text` (the space's summary of `arch`: its layers, optimizer, learning rate and batch size)
    followed by the searched training settings it does not show whose value is not the first of
    their choices, `(+ weight_decay 0.001, momentum 0.95)`: a summary never hides that a decision
    such as the weight decay differs from the usual."""
    notes = []
    for d in getattr(space, "decisions", ()):
        if not d.label.startswith("train.") or d.label not in arch or not d.values:
            continue
        name = d.label[len("train."):]
        value = arch[d.label]
        if name in SUMMARY_SHOWS or value == d.values[0]:
            continue
        notes.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return text + (f" (+ {', '.join(notes)})" if notes else "")
