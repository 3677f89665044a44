"""`nas report RUN`: plots and one self-contained HTML page for a run.

    <run>/report/pareto.png     the objectives' trade-off: every feasible candidate, the front, the pick
    <run>/report/progress.png   best-so-far and hypervolume over the evaluations, failures marked
    <run>/report/index.html     summary, both plots (embedded), the front, the top 20, the rungs
                                (with a scheduler), the failures

The run is opened read-only, so a report can be made while a search is still writing the run.
Plots use matplotlib's object API (`matplotlib.figure.Figure`), never pyplot: no display, no
global state. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import objectives as objmod
from . import pareto
from .atomic import write_bytes
from .errors import NasError, UsageError
from .objectives import Objective
from .textfmt import human

FINISHED = ("complete", "failed", "infeasible")
TOP = 20
MAX_FAILURES_LISTED = 200
_HV3_BUDGET = 15_000  # front points swept by the 3-objective hypervolume recomputations of a series

# colours (colour-blind friendly: Okabe-Ito)
_ALL = "#56B4E9"
_FRONT = "#D55E00"
_PICK = "#009E73"
_FAIL = "#CC0000"
_INFEASIBLE = "#E69F00"
_GREY = "#999999"


# -- series -----------------------------------------------------------------------------------
def evaluations(candidates: Sequence[Any]) -> list[Any]:
    """The run's evaluations in order: finished candidates that were evaluated here (not
    duplicates answered from the store), by id. Their number is what the budget counts."""
    return [c for c in sorted(candidates, key=lambda c: c.id) if c.state in FINISHED and c.source is None]


def best_so_far(candidates: Sequence[Any], objectives: Sequence[Objective]) -> list[float]:
    """The best value of the first objective among the feasible candidates of each prefix of
    `candidates` (in the objective's own units and direction); NaN until one is feasible."""
    first = objectives[0]
    best = math.nan
    out = []
    for c in candidates:
        if c.feasible and c.objectives is not None:
            v = float(c.objectives[0])
            if math.isnan(best) or (v > best if first.direction == "max" else v < best):
                best = v
        out.append(best)
    return out


def hypervolume_series(candidates: Sequence[Any], objectives: Sequence[Objective],
                       bounds: tuple[np.ndarray, np.ndarray] | None = None) -> list[float]:
    """The run's hypervolume (`nas.objectives.hypervolume`) after each candidate of `candidates`
    (in id order, as the store lists them): one value per candidate. With the default `bounds`
    (`nas.objectives.hv_bounds(candidates)`, the run's fixed normalisation) the values are NaN
    until the candidate that fixes the bounds, then exactly what status would have shown at that
    point: non-decreasing, unchanged by a dominated candidate, the last value the run's
    hypervolume. Given `bounds`, every prefix is computed with them.

    The front is kept incrementally (`nas.pareto.update_front`, the rule of
    `nas.objectives.add_to_front`) and the hypervolume recomputed only when a candidate enters it. With two objectives every value is exact. With three, where
    one exact computation costs O(front size^2), a large front is recomputed at most every
    `front size x n / 15,000` candidates (a value in between holds the last one computed, so it
    may lag a little); the last value is always exact. 1,000 candidates take well under a second
    either way. NaN for one objective or more than three (no hypervolume shown)."""
    cands = list(candidates)
    m = len(objectives)
    if not 2 <= m <= 3:
        return [math.nan] * len(cands)
    start = 0
    if bounds is None:
        bounds = objmod.hv_bounds(cands, objectives)
        if bounds is None:
            return [math.nan] * len(cands)
        first = [k for k, c in enumerate(cands) if c.source is None and c.feasible and c.objectives is not None]
        start = first[objmod.HV_FIXED_BY - 1]
    pool = objmod.feasible(cands)
    F = objmod.matrix(pool, objectives)
    row = {id(c): i for i, c in enumerate(pool)}
    front = np.empty((0, m))
    hv = 0.0
    out = []
    dirty, last = False, -(10**9)
    for k, c in enumerate(cands):
        i = row.get(id(c))
        if i is not None:
            enters, keep = pareto.update_front(front, F[i])
            if enters:
                front = np.vstack([front[keep], F[i]])
                dirty = True
        if dirty and k >= start:
            stride = 1 if m < 3 else max(1, front.shape[0] * len(cands) // _HV3_BUDGET)
            if k - last >= stride or k == len(cands) - 1 or k == start:
                hv = objmod.hypervolume_of(front, bounds)
                dirty, last = False, k
        out.append(hv if k >= start else math.nan)
    return out


# -- labels and formatting --------------------------------------------------------------------
def _latency_device(candidates: Sequence[Any], config: Any) -> str | None:
    for c in candidates:
        dev = c.metrics.get("latency_device")
        if dev:
            return str(dev)
    return (getattr(config, "latency", None) or {}).get("device")


def axis_label(obj: Objective, latency_device: str | None = None) -> str:
    if obj.name == "accuracy":
        return "validation accuracy"
    if obj.name == "params":
        return "parameters (count)"
    if obj.name == "flops":
        return "FLOPs per input (multiply-adds + bias adds)"
    if obj.name == "latency":
        return f"latency (ms{', ' + latency_device if latency_device else ''})"
    return f"{obj.name} ({obj.direction})"


def _style_axis(ax: Any, obj: Objective, values: Sequence[float], which: str, latency_device: str | None) -> None:
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    (ax.set_xlabel if which == "x" else ax.set_ylabel)(axis_label(obj, latency_device))
    axis = ax.xaxis if which == "x" else ax.yaxis
    if obj.name == "accuracy":
        axis.set_major_formatter(PercentFormatter(1.0, decimals=None))
        return
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if vals and min(vals) > 0 and max(vals) / min(vals) >= 20:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if obj.name in ("params", "flops"):
        axis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="#555555", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#dddddd")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- plots ------------------------------------------------------------------------------------
def _y_index(objectives: Sequence[Objective]) -> int:
    names = [o.name for o in objectives]
    return names.index("accuracy") if "accuracy" in names else 0


def _not_shown(ax: Any, n_failed: int, n_infeasible: int) -> list[Any]:
    from matplotlib.lines import Line2D

    parts = [f"{n} {what}" for n, what in ((n_failed, "failed"), (n_infeasible, "infeasible")) if n]
    if not parts:
        return []
    return [Line2D([], [], linestyle="none", label=" + ".join(parts) + " (not plotted)")]


def pareto_figure(candidates: Sequence[Any], objectives: Sequence[Objective], *, latency_device: str | None = None,
                  title: str | None = None) -> Any:
    """The trade-off figure (see the module doc) as a matplotlib Figure."""
    evals = evaluations(candidates)
    pool = objmod.feasible(candidates)
    m = len(objectives)
    n_failed = sum(c.state == "failed" for c in evals)
    n_infeasible = sum(c.state == "infeasible" for c in evals)
    violating = [c for c in candidates if c.state == "complete" and c.violation > 0 and c.objectives is not None and c.source is None]
    if m == 1:
        fig = _figure(7.5, 4.8)
        ax = fig.add_subplot()
        if not pool:
            _empty(ax, "no complete candidate yet")
            return fig
        obj = objectives[0]
        order = {c.id: i + 1 for i, c in enumerate(evals)}
        xs = [order.get(c.id, 0) for c in pool]
        ys = [c.objectives[0] for c in pool]
        ax.scatter(xs, ys, s=18, color=_ALL, alpha=0.75, edgecolors="none", label=f"feasible candidates ({len(pool)})")
        if violating:
            ax.scatter([order.get(c.id, 0) for c in violating], [c.objectives[0] for c in violating], s=22, marker="x",
                       color=_GREY, label=f"violate constraints ({len(violating)})")
        best = best_so_far(evals, objectives)
        ax.step(range(1, len(evals) + 1), best, where="post", color=_FRONT, lw=1.8, label="best so far")
        top = objmod.front(candidates, objectives)[0]
        ax.scatter([order.get(top.id, 0)], [top.objectives[0]], s=110, marker="*", color=_PICK, edgecolors="black",
                   linewidths=0.6, zorder=5, label=f"best #{top.id}")
        ax.set_xlabel("evaluation (distinct architectures, in order)")
        _style_axis(ax, obj, ys, "y", latency_device)
        handles, _ = ax.get_legend_handles_labels()
        handles += _not_shown(ax, n_failed, n_infeasible)
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8, frameon=False)  # 5 long labels overflow the width
        ax.grid(alpha=0.3)
        ax.set_title(title or f"{axis_label(obj, latency_device)} of each evaluation", fontsize=11)
        return fig

    yi = _y_index(objectives)
    others = [j for j in range(m) if j != yi]
    fig = _figure(7.5 if m == 2 else 4.6 * len(others), 5.0 if m == 2 else 4.4)
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    if not pool:
        for ax in axes:
            _empty(ax, "no complete candidate yet")
        return fig
    fr = objmod.front(candidates, objectives)
    front_ids = {c.id for c in fr}
    chosen = objmod.try_pick(candidates, objectives)
    ydir = objectives[yi].direction
    for k, (ax, xj) in enumerate(zip(axes, others)):
        xo = objectives[xj]
        rest = [c for c in pool if c.id not in front_ids]
        ax.scatter([c.objectives[xj] for c in rest], [c.objectives[yi] for c in rest], s=16, color=_ALL, alpha=0.6,
                   edgecolors="none", label=f"feasible candidates ({len(pool)})")
        if violating:
            ax.scatter([c.objectives[xj] for c in violating], [c.objectives[yi] for c in violating], s=20, marker="x",
                       color=_GREY, label=f"violate constraints ({len(violating)})")
        if m == 2:
            pts = sorted(((c.objectives[xj], c.objectives[yi]) for c in fr), key=lambda p: (p[0], p[1] if ydir == "min" else -p[1]))
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post" if xo.direction == "min" else "pre",
                    color=_FRONT, lw=1.4, alpha=0.9, zorder=3)
        ax.scatter([c.objectives[xj] for c in fr], [c.objectives[yi] for c in fr], s=34, color=_FRONT, edgecolors="black",
                   linewidths=0.5, zorder=4, label=f"Pareto front ({len(fr)})")
        # compressed candidates (nas compress): a diamond each, a dashed line from the one it came from
        by_id = {c.id: c for c in candidates}
        derived = [c for c in pool if getattr(c, "derived_from", None) is not None]
        for c in derived:
            par = by_id.get(c.derived_from)
            if par is not None and par.objectives is not None:
                ax.plot([par.objectives[xj], c.objectives[xj]], [par.objectives[yi], c.objectives[yi]], ls="--", lw=0.9,
                        color="#6a3d9a", alpha=0.8, zorder=3.5)
        if derived:
            ax.scatter([c.objectives[xj] for c in derived], [c.objectives[yi] for c in derived], s=46, marker="D", facecolors="none",
                       edgecolors="#6a3d9a", linewidths=1.2, zorder=4.5, label=f"compressed, line to parent ({len(derived)})")
        if chosen is not None:
            kx, ky = chosen.objectives[xj], chosen.objectives[yi]
            ax.scatter([kx], [ky], s=170, marker="*", color=_PICK, edgecolors="black", linewidths=0.6, zorder=5,
                       label=f"pick #{chosen.id} ({objmod.DEFAULT_PICK})")
            ax.annotate(f"pick #{chosen.id}", (kx, ky), xytext=(14, -22), textcoords="offset points", fontsize=9,
                        arrowprops=dict(arrowstyle="-", color="#333333", lw=0.7), zorder=6)
        _style_axis(ax, xo, [c.objectives[xj] for c in pool], "x", latency_device)
        _style_axis(ax, objectives[yi], [c.objectives[yi] for c in pool], "y", latency_device)
        ax.grid(alpha=0.3, which="major")
        if k == 0:
            handles, _ = ax.get_legend_handles_labels()
            handles += _not_shown(ax, n_failed, n_infeasible)
            fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8, frameon=False)  # 5 long labels overflow the width
    names = ", ".join(o.name for o in objectives)
    fig.suptitle(title or (f"Pareto front ({names})" if m == 2 else f"Pareto front over {names}: projections"), fontsize=11)
    return fig


def progress_figure(candidates: Sequence[Any], objectives: Sequence[Objective], *, latency_device: str | None = None) -> Any:
    """Best-so-far of the first objective and (with several objectives) the hypervolume over the
    evaluations, failed and infeasible evaluations ticked along the bottom."""
    evals = evaluations(candidates)
    m = len(objectives)
    with_hv = 1 < m <= 3
    fig = _figure(7.5, 6.2 if with_hv else 4.2)
    axes = fig.subplots(2 if with_hv else 1, 1, sharex=True, squeeze=False)[:, 0]
    if not any(c.feasible for c in evals):
        for ax in axes:
            _empty(ax, "no complete candidate yet")
        if evals:
            axes[0].set_title(f"{len(evals)} evaluations, none complete and feasible", fontsize=11)
        return fig
    x = np.arange(1, len(evals) + 1)
    first = objectives[0]
    ax = axes[0]
    feas = [(i + 1, c.objectives[0]) for i, c in enumerate(evals) if c.feasible and c.objectives is not None]
    ax.scatter([p[0] for p in feas], [p[1] for p in feas], s=9 if len(evals) > 200 else 18, color=_ALL, alpha=0.65, edgecolors="none",
               label="each evaluation")
    ax.step(x, best_so_far(evals, objectives), where="post", color=_FRONT, lw=1.8, label="best so far")
    _style_axis(ax, first, [p[1] for p in feas], "y", latency_device)
    ax.set_ylabel(("best " if first.name != "accuracy" else "") + axis_label(first, latency_device))
    ax.set_title(f"search progress ({len(evals)} evaluations)", fontsize=11)
    if with_hv:
        hv = hypervolume_series(evals, objectives)
        axes[1].step(x, hv, where="post", color=_PICK, lw=1.8, label="hypervolume")
        axes[1].set_ylabel(f"hypervolume (normalised, ref {objmod.HV_REF})")
        if all(math.isnan(v) for v in hv):
            axes[1].text(0.5, 0.5, f"shown once {objmod.HV_FIXED_BY} feasible evaluations have fixed its normalisation",
                         ha="center", va="center", fontsize=9, color="#555555", transform=axes[1].transAxes)
        axes[1].set_ylim(bottom=0)
    for k, a in enumerate(axes):
        tr = a.get_xaxis_transform()
        for state, colour in (("failed", _FAIL), ("infeasible", _INFEASIBLE)):
            xs = [i + 1 for i, c in enumerate(evals) if c.state == state]
            if xs:
                a.plot(xs, [0.015] * len(xs), linestyle="none", marker="|", markersize=9, markeredgewidth=1.2,
                       color=colour, transform=tr, label=f"{state} ({len(xs)})" if k == 0 else None, clip_on=False)
        a.grid(alpha=0.3)
        a.legend(loc="lower right", fontsize=8, framealpha=0.9)
    axes[-1].set_xlabel("evaluation (distinct architectures, in order)")
    axes[-1].set_xlim(0.5, max(len(evals), 1) + 0.5)
    return fig


# -- HTML -------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;max-width:1180px;margin:24px auto;padding:0 18px;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0}
th,td{padding:4px 9px;text-align:right;vertical-align:top;border-bottom:1px solid #eee}
th{background:#f4f4f4;border-bottom:1px solid #ccc;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}
td.l,th.l{text-align:left}
td.arch{text-align:left;font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em;word-break:break-all;max-width:560px}
table.summary th{text-align:left;background:none;border:none;color:#555;font-weight:600;padding-right:18px}
table.summary td{text-align:left;border:none}
table.summary tr:nth-child(even) td{background:none}
.figs img{max-width:100%;height:auto;border:1px solid #e4e4e4;margin:6px 0}
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#D55E00;color:#fff;font-size:.8em}
.note{color:#666;font-size:.9em}
pre.err{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.92em;color:#8a1010;text-align:left}
.empty{padding:14px;background:#fff6e5;border:1px solid #f0d9a8;border-radius:4px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _value(obj: Objective, v: float) -> str:
    if obj.name == "accuracy":
        return f"{v:.4f}"
    if obj.name == "params":
        return f"{v:,.0f}"
    if obj.name == "flops":
        return human(v)
    if obj.name == "latency":
        return f"{v:.3f} ms"
    return f"{v:.4g}"


def _arch_text(space: Any, c: Any) -> str:
    from .compress import describe  # a compressed candidate: what was done, its widths

    try:
        return describe(c) or space.summary(space.make(c.arch))
    except (NasError, KeyError, TypeError, ValueError):
        return json.dumps(c.arch, separators=(",", ":"), default=str)


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _cand_table(cands: Sequence[Any], space: Any, *, front_ids: set[int] | None = None, pick_id: int | None = None) -> str:
    head = ["id", "val acc", "test acc", "params", "FLOPs", "latency ms", "epochs"]
    if front_ids is not None:
        head.append("front")
    rows = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + '<th class="l">architecture</th></tr></thead><tbody>']
    for c in cands:
        m = c.metrics
        test = (c.test or {}).get("test_accuracy")
        test_cell = _fmt(test, ".4f") if test is not None else ("error" if (c.test or {}).get("error") else "-")
        badge = ' <span class="badge">pick</span>' if pick_id is not None and c.id == pick_id else ""
        cells = [f"{c.id}{badge}", _fmt(m.get("val_accuracy"), ".4f"), test_cell, _fmt(m.get("params"), ","),
                 human(m.get("flops")) if m.get("flops") is not None else "-", _fmt(m.get("latency_ms"), ".3f"),
                 _fmt(m.get("epochs"), "")]
        if front_ids is not None:
            cells.append("yes" if c.id in front_ids else "")
        title = f' title="{_e((c.test or {}).get("error"))}"' if (c.test or {}).get("error") else ""
        rows.append(f"<tr{title}>" + "".join(f"<td>{x if i == 0 else _e(x)}</td>" for i, x in enumerate(cells))
                    + f'<td class="arch">{_e(_arch_text(space, c))}</td></tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _failure_table(fails: Sequence[Any], space: Any) -> str:
    rows = ['<table><thead><tr><th>id</th><th class="l">state</th><th class="l">reason</th><th class="l">architecture</th></tr></thead><tbody>']
    for c in fails[:MAX_FAILURES_LISTED]:
        rows.append(f'<tr><td>{c.id}</td><td class="l">{_e(c.state)}</td><td class="l"><pre class="err">{_e(c.error or "(no message)")}</pre></td>'
                    f'<td class="arch">{_e(_arch_text(space, c))}</td></tr>')
    rows.append("</tbody></table>")
    if len(fails) > MAX_FAILURES_LISTED:
        rows.append(f'<p class="note">... and {len(fails) - MAX_FAILURES_LISTED} more (see <code>nas status</code> or the run database).</p>')
    return "\n".join(rows)


MAX_RUNG_CANDIDATES = 2000  # candidates whose rung history the report lists (the rest: nas status RUN --candidate ID)


def _rung_section(store: Any, config: Any) -> list[str]:
    """The report's "Rungs" section for a run with a scheduler ([] without one): per (bracket,
    rung) how many candidates reached it, finished, went on, the promotion cutoff and the last
    candidate inside it; then every trained candidate's rungs and why it went no further (what
    `nas status RUN` and `nas status RUN --candidate ID` show)."""
    from .schedulers import describe_cutoff, describe_why, read_rungs, rung_summary

    rows = read_rungs(store)
    if not rows:
        return []
    eta = int(getattr(config, "eta", 3) or 3)
    summary = rung_summary(rows, eta, store.meta("ladders"))
    parts = [f'<h2>Rungs <span class="note">({_e(getattr(config, "scheduler", "-"))}, eta {eta}: a candidate goes on to the next rung '
             f"when it ranks in the top floor(n / eta) of the n finished at its rung)</span></h2>"]
    head = ["bracket", "rung", "epochs", "reached", "finished", "in flight", "promoted", "cutoff (top)"]
    parts.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + '<th class="l">last inside the cutoff</th></tr></thead><tbody>')
    for r in summary:
        cells = [r["bracket"], r["rung"], r["epochs"], r["reached"], r["finished"], r["in_flight"], r["promoted"],
                 "-" if r["cutoff"] is None else r["cutoff"]]
        last = "top rung" if r["top"] else describe_cutoff(r["cutoff_at"])
        parts.append("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in cells) + f'<td class="l">{_e(last)}</td></tr>')
    parts.append("</tbody></table>")
    by: dict[int, list[Any]] = {}
    for r in rows:
        by.setdefault(r.cid, []).append(r)
    ids = sorted(by)
    parts.append(f'<h3>Candidates\' rungs <span class="note">({len(ids)} trained; accuracy is the validation accuracy at the end of '
                 "each rung)</span></h3>")
    parts.append('<table><thead><tr><th>id</th><th>bracket</th><th class="l">rungs</th><th class="l">why it went no further</th></tr></thead><tbody>')
    for cid in ids[:MAX_RUNG_CANDIDATES]:
        hist = sorted(by[cid], key=lambda r: r.rung)
        steps = " &rarr; ".join(_e(f"{h.epochs} ep " + (_fmt(h.accuracy, ".4f") if h.state == "complete" else h.state)) for h in hist)
        last = hist[-1]
        if last.state in ("running", "paused"):
            why = f"rung {last.rung} {last.state}"
        elif last.why:
            why = describe_why(last.why)
        else:
            why = "may still be promoted (the search has not finished)"
        parts.append(f'<tr id="rungs-{cid}"><td>{cid}</td><td>{last.bracket}</td><td class="l">{steps}</td><td class="l">{_e(why)}</td></tr>')
    parts.append("</tbody></table>")
    if len(ids) > MAX_RUNG_CANDIDATES:
        parts.append(f'<p class="note">... and {len(ids) - MAX_RUNG_CANDIDATES} more: <code>nas status RUN --candidate ID</code>.</p>')
    return parts


def _strategy_text(name: str, options: dict[str, Any], n_objectives: int) -> str:
    """The strategy as the run used it: `auto (evolution + predictor ensemble)`, `nsga2`, ..."""
    from .strategies import auto_strategy

    base = name
    if name == "auto":
        base, auto = auto_strategy(n_objectives)
        options = {**auto, **options}
    parts = [base]
    if options.get("predictor") not in (None, "none"):
        parts.append(f"predictor {options['predictor']}")
    if options.get("warm_start"):
        parts.append(f"{options['warm_start']} warm start")
    text = " + ".join(parts)
    return f"auto ({text})" if name == "auto" else text


def _html(run: Path, store: Any, config: Any, space: Any, objectives: Sequence[Objective], cands: Sequence[Any],
          pngs: dict[str, bytes]) -> str:
    from . import __version__

    evals = evaluations(cands)
    by_state = {s: sum(c.state == s for c in evals) for s in FINISHED}
    duplicates = sum(c.source is not None for c in cands)
    pending = sum(c.state in ("queued", "running") for c in cands)
    pool = objmod.feasible(cands)
    fr = objmod.front(cands, objectives)
    front_ids = {c.id for c in fr}
    chosen = objmod.try_pick(cands, objectives) if pool and len(objectives) > 1 else None
    m = len(objectives)
    hv_text = objmod.hypervolume_text(cands, objectives)
    stopped = store.meta("stopped")
    created = store.meta("created")
    strategy = _strategy_text(config.strategy, dict(config.strategy_options or {}), m)
    budget = []
    if config.budget is not None:
        budget.append(f"{config.budget} evaluations")
    if config.time_budget is not None:
        budget.append(f"{_duration(config.time_budget)} of search")
    constraints = {**(getattr(space, "constraints", {}) or {}), **(config.constraints or {})}

    summary: list[tuple[str, str]] = [
        ("run", _e(run)),
        ("space", f"{_e(space.name)} <span class=\"note\">({_e(config.space.get('source', '-'))}, {len(space.decisions)} decisions)</span>"),
        ("data", _e(config.data)),
        ("strategy", _e(strategy)),
        ("objectives", _e(", ".join(f"{o.name} ({'max' if o.direction == 'max' else 'min'})" for o in objectives))),
    ]
    if constraints:
        summary.append(("constraints", _e(", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}" for k, v in constraints.items()))))
    summary += [
        ("budget", _e(" and ".join(budget) or "-")),
        ("evaluated", _e(f"{len(evals)} distinct architectures: {by_state['complete']} complete, {by_state['failed']} failed, "
                         f"{by_state['infeasible']} infeasible")),
        ("duplicates", _e(f"{duplicates} proposals of already evaluated architectures, answered from the store")),
    ]
    if pending:
        summary.append(("in progress", _e(f"{pending} queued or running")))
    summary += [
        ("elapsed", _e(_duration(store.meta("elapsed", 0.0)) + " of search")),
        ("stopped by", _e(stopped) if stopped else '<span class="note">not finished (still running, or interrupted)</span>'),
    ]
    if hv_text is not None:
        hv = objmod.hypervolume(cands, objectives)
        summary.append(("hypervolume", _e(hv_text) if hv is None else f'{hv:.4f} <span class="note">({_e(objmod.HV_RULE)})</span>'))
    if fr:
        best = fr[0]
        summary.append((f"best {objectives[0].name}", _e(f"#{best.id}: {_value(objectives[0], best.objectives[0])}")))
    if chosen is not None:
        summary.append(("pick", _e(f"#{chosen.id}: " + ", ".join(f"{o.name} {_value(o, v)}" for o, v in zip(objectives, chosen.objectives)))
                        + f' <span class="note">(what <code>nas export</code> takes by default: {_e(objmod.PICK_RULES[objmod.DEFAULT_PICK])})</span>'))
    if created:
        summary.append(("created", _e(_dt.datetime.fromtimestamp(float(created)).strftime("%Y-%m-%d %H:%M:%S"))))
    summary.append(("report", _e(f"nas {__version__}, {_dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")))

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>nas report: {_e(run.name or run)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>nas report: {_e(run.name or run)}</h1>",
        f'<p class="sub">{_e(space.name)} on {_e(config.data)}, objectives {_e(", ".join(o.name for o in objectives))}</p>',
        '<table class="summary"><tbody>' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary) + "</tbody></table>",
    ]
    if not pool:
        parts.append('<p class="empty">No complete, feasible candidate yet'
                     + (f" ({len(evals)} evaluations finished, none complete and feasible)." if evals else ": nothing has been evaluated.")
                     + "</p>")
    parts.append("<h2>Plots</h2>")
    parts.append('<div class="figs">')
    for name, alt in (("pareto", "objectives of the candidates and the Pareto front"), ("progress", "search progress")):
        data = base64.b64encode(pngs[name]).decode("ascii")
        parts.append(f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">')
    parts.append("</div>")

    if fr:
        title = "Pareto front" if m > 1 else "Best candidate"
        parts.append(f"<h2>{title} <span class=\"note\">({len(fr)} candidate{'s' if len(fr) != 1 else ''}, best "
                     f"{_e(objectives[0].name)} first)</span></h2>")
        parts.append(_cand_table(fr, space, pick_id=chosen.id if chosen is not None else None))
        if not any((c.test or {}).get("test_accuracy") is not None for c in fr):
            parts.append('<p class="note">Test accuracy is computed for the final front when the search ends.</p>')
    if pool:
        first = objectives[0]
        top = sorted(pool, key=lambda c: (-c.objectives[0] if first.direction == "max" else c.objectives[0], c.id))[:TOP]
        parts.append(f'<h2>Top {len(top)} by {_e(first.name)} <span class="note">(of {len(pool)} distinct feasible candidates)</span></h2>')
        parts.append(_cand_table(top, space, front_ids=front_ids if m > 1 else None, pick_id=chosen.id if chosen is not None else None))

    parts.extend(_rung_section(store, config))

    fails = [c for c in evals if c.state in ("failed", "infeasible")]
    parts.append(f"<h2>Failures <span class=\"note\">({by_state['failed']} failed, {by_state['infeasible']} infeasible)</span></h2>")
    if fails:
        parts.append(_failure_table(fails, space))
    else:
        parts.append('<p class="note">None.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- writing ----------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    try:
        write_bytes(path, data)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


def write_report(run: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write `pareto.png`, `progress.png` and `index.html` for `run` into `out` (default
    `<run>/report/`) and return their paths {"pareto", "progress", "html"}. Safe while a search
    is writing the run. RunError when `run` is not a run, UsageError when `out` cannot be written."""
    from .runs import Run

    run = Path(run)
    opened = Run(run)
    store, config, space, objectives = opened.store, opened.config, opened.space, opened.objectives
    with store:
        out = Path(out) if out is not None else run / "report"
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: exists and is not a directory; give --out a directory")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{out}: cannot create the report directory: {exc.strerror or exc}") from None
        cands = store.candidates()
        lat_dev = _latency_device(cands, config)
        pngs = {
            "pareto": _png(pareto_figure(cands, objectives, latency_device=lat_dev)),
            "progress": _png(progress_figure(cands, objectives, latency_device=lat_dev)),
        }
        page = _html(run, store, config, space, objectives, cands, pngs)
    return {
        "pareto": _write(out / "pareto.png", pngs["pareto"]),
        "progress": _write(out / "progress.png", pngs["progress"]),
        "html": _write(out / "index.html", page.encode("utf-8")),
    }
