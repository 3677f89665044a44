"""Every candidate of a run as a flat row (`nas trials`, `Run.trials()`, the dashboard's table).

Columns, in order (objective columns depend on the run):

    id            candidate id (the order they were proposed in)
    state         queued | running | complete | failed | infeasible
    key           hash of the network as built: equal keys, equal networks
    obj_<name>    the value of each objective of the run (accuracy, params, ...), as recorded
    val_accuracy  validation accuracy          test_accuracy  test accuracy (front members only)
    params        trainable parameters         flops          FLOPs of one forward pass
    latency_ms    measured latency (when measured)
    epochs        epochs trained (for a running candidate: the last epoch finished)
    seconds       seconds its evaluation took
    worker        where it ran
    generation    the strategy's generation    parents  ids of its parents, space-separated
    source        "" (evaluated), "duplicate of #N" (answered from the store) or "derived from #N"
    duplicate_of  the id it was answered from  derived_from  the id it was derived from
    violation     how far it breaks the constraints (0: feasible)
    error         why it failed or is infeasible
    summary       short description of the architecture
    arch          the full decisions, label -> value (JSON text in CSV)
    created, started, finished   Unix times
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Iterable, Mapping, Sequence

BASE_COLUMNS = ("id", "state", "key")
METRIC_COLUMNS = ("val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "epochs", "seconds", "worker",
                  "generation", "parents", "source", "duplicate_of", "derived_from", "violation", "error", "summary", "arch",
                  "created", "started", "finished")
NUMERIC = {"id", "val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "epochs", "seconds", "generation",
           "duplicate_of", "derived_from", "violation", "created", "started", "finished"}
_SOURCE = re.compile(r"(duplicate of|derived from) #(\d+)")


def columns(objectives: Sequence[Any]) -> list[str]:
    """The columns of a run's trials, in order."""
    return [*BASE_COLUMNS, *(f"obj_{o.name}" for o in objectives), *METRIC_COLUMNS]


def lineage(c: Any) -> tuple[int | None, int | None, str]:
    """(duplicate of, derived from, source text) of a candidate: the store's integer columns where
    it has them, else read from its source text."""
    dup = getattr(c, "duplicate_of", None)
    der = getattr(c, "derived_from", None)
    how = getattr(c, "derivation", None)
    text = c.source or ""
    if dup is None and der is None and text:
        m = _SOURCE.search(text)
        if m:
            if m.group(1) == "duplicate of":
                dup = int(m.group(2))
            else:
                der = int(m.group(2))
    if not text:
        text = f"duplicate of #{dup}" if dup is not None else f"derived from #{der}" + (f" ({how})" if how else "") if der is not None else ""
    return dup, der, text


class Summaries:
    """Short architecture descriptions, computed once per key (NAS-Bench-201 runs repeat keys)."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self._by_key: dict[str, str] = {}

    def __call__(self, key: str, arch: Mapping[str, Any]) -> str:
        text = self._by_key.get(key)
        if text is None:
            try:
                from .textfmt import summary_notes

                text = summary_notes(self.space, arch, self.space.summary(self.space.make(dict(arch))))
            except Exception:  # an architecture the space no longer reads: show its values
                text = json.dumps(dict(arch), separators=(",", ":"))
            self._by_key[key] = text
        return text


def row(c: Any, objectives: Sequence[Any], summary: Summaries | None = None, epoch_now: int | None = None) -> dict[str, Any]:
    """One candidate as a flat dict with `columns(objectives)` as keys."""
    m = c.metrics or {}
    dup, der, source = lineage(c)
    values = c.objectives or ()
    out: dict[str, Any] = {"id": c.id, "state": c.state, "key": c.key}
    for i, o in enumerate(objectives):
        out[f"obj_{o.name}"] = values[i] if i < len(values) else None
    epochs = c.epochs if c.epochs is not None else m.get("epochs")
    if c.state == "running" and epoch_now is not None:
        epochs = epoch_now
    out.update(
        val_accuracy=m.get("val_accuracy"), test_accuracy=(c.test or {}).get("test_accuracy"), params=m.get("params"),
        flops=m.get("flops"), latency_ms=m.get("latency_ms"), epochs=epochs, seconds=c.seconds if c.seconds is not None else m.get("seconds"),
        worker=c.worker, generation=c.generation, parents=" ".join(str(p) for p in c.parents), source=source,
        duplicate_of=dup, derived_from=der, violation=c.violation, error=c.error,
        summary=summary(c.key, c.arch) if summary is not None else "", arch=dict(c.arch),
        created=c.created, started=c.started, finished=c.finished,
    )
    return out


def sort_rows(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """Rows sorted by `column` (prefix `-` for descending), ties by id; empty values last either way."""
    desc = column.startswith("-")
    col = column.lstrip("-")
    present, empty = [], []
    for r in rows:
        v = r.get(col)
        if v is None or v == "":
            empty.append(r)
        else:
            present.append((json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v, r["id"], r))
    try:
        present.sort(key=lambda t: (t[0], t[1]), reverse=desc)
    except TypeError:  # numbers and text in one column: compare as text
        present.sort(key=lambda t: (str(t[0]), t[1]), reverse=desc)
    return [t[2] for t in present] + empty


def trials(run: Any, *, states: Iterable[str] | None = None, sort: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a run opened with `nas.open_run` (a `Run`), filtered, sorted and cut."""
    from .errors import UsageError

    wanted = set(states) if states else None
    cols = columns(run.objectives)
    if sort is not None and sort.lstrip("-") not in cols:
        raise UsageError(f"--sort: no column {sort.lstrip('-')!r}; columns: {', '.join(cols)}")
    summary = Summaries(run.space)
    now = run.store.current_epochs()
    out = [row(c, run.objectives, summary, now.get(c.id)) for c in run.store.candidates(sorted(wanted) if wanted else None)]
    if sort is not None:
        out = sort_rows(out, sort)
    return out[:limit] if limit is not None else out


def to_csv(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    """CSV text, a header line first; `arch` as JSON, empty cells for missing values."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else json.dumps(r[c], separators=(",", ":")) if isinstance(r.get(c), (dict, list)) else r[c] for c in cols])
    return buf.getvalue()


def read_csv(text: str) -> list[dict[str, Any]]:
    """Rows of `to_csv` text back as dicts: numbers as numbers, `arch` as a dict, empty as None."""
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        rec: dict[str, Any] = {}
        for k, v in r.items():
            if v == "":
                rec[k] = None
            elif k == "arch":
                rec[k] = json.loads(v)
            elif k in NUMERIC or k.startswith("obj_"):
                num = float(v)
                rec[k] = int(num) if num.is_integer() and k in ("id", "params", "flops", "epochs", "generation", "duplicate_of", "derived_from") else num
            else:
                rec[k] = v
        out.append(rec)
    return out


def text_table(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Any]) -> str:
    """The trials as a terminal table that fits the terminal (the architecture column is cut)."""
    from .textfmt import distinguish, human, table

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    summaries = distinguish([r["summary"] for r in rows], [r["arch"] for r in rows])
    lines = []
    for r, text in zip(rows, summaries):
        state = r["state"] + (" (dup)" if r["duplicate_of"] is not None else "")
        lines.append([r["id"], state, num(r["val_accuracy"], ".4f"), num(r["test_accuracy"], ".4f"),
                      f"{r['params']:,}" if r["params"] is not None else "-", human(r["flops"]),
                      num(r["latency_ms"], ".3f"), r["epochs"], num(r["seconds"], ".1f"), (r["worker"] or "-").split(" (")[0],
                      text if r["state"] in ("complete", "running", "queued") or not r["error"] else f"{text}  ({r['error']})"])
    return table(lines, ["id", "state", "val acc", "test acc", "params", "flops", "lat ms", "epochs", "sec", "worker", "architecture"],
                 "rlrrrrrrrll", flex=10)


# -- nas runs ----------------------------------------------------------------------------------
def run_listing(paths: Sequence[Any]) -> list[dict[str, Any]]:
    """What `nas runs` shows of each run: space, data, strategy, progress (evaluated / budget),
    state (running: a writer holds the run's lock; finished: a session ended by its budget, time
    budget, failures or exhaustion; stopped: interrupted, terminated or killed), the writer's pid,
    when it was created and when it last changed. A run that cannot be read says why."""
    from pathlib import Path

    from .errors import NasError
    from .runs import Run

    out = []
    for path in paths:
        path = Path(path)
        rec: dict[str, Any] = {"run": str(path)}
        try:
            changed = max((path / n).stat().st_mtime for n in ("run.db", "run.db-wal") if (path / n).exists())
        except (OSError, ValueError):
            changed = None
        try:
            with Run(path) as run:
                counts = run.store.counts()
                cfg = run.config
                evaluated = counts["complete"] + counts["failed"] + counts["infeasible"] - counts["duplicates"]
                live = run.writer
                rec.update(space=run.space.name, data=cfg.data, strategy=cfg.strategy, evaluated=evaluated, budget=cfg.budget,
                           candidates=sum(counts[s] for s in ("queued", "running", "complete", "failed", "infeasible")),
                           state=run.state(), stopped=run.meta("stopped"), pid=live.pid if live.alive else None,
                           created=run.meta("created"), changed=changed, error=None)
        except (NasError, OSError) as exc:
            rec.update(state="unreadable", error=str(exc), changed=changed, created=None)
        except Exception as exc:  # a damaged database: say so, list the others
            rec.update(state="unreadable", error=f"{type(exc).__name__}: {exc}", changed=changed, created=None)
        out.append(rec)
    return out


def find_runs(directory: Any) -> list[Any]:
    """Run directories (holding a run.db) directly under `directory`, or `directory` itself."""
    from pathlib import Path

    from .errors import UsageError

    d = Path(directory)
    if (d / "run.db").exists():
        return [d]
    if not d.is_dir():
        raise UsageError(f"{d}: no such directory")
    return sorted((p for p in d.iterdir() if p.is_dir() and (p / "run.db").exists()), key=lambda p: p.name)


def latest_run(directory: Any = "runs") -> Any:
    """The run under `directory` that changed last (for `nas status` without a RUN)."""
    from pathlib import Path

    from .errors import UsageError

    if not Path(directory).is_dir():
        raise UsageError(f"no RUN given and no {directory}/ directory here to take the latest run from; name a run: nas status RUN")
    runs = find_runs(directory)
    if not runs:
        raise UsageError(f"no runs in {directory}/; start one with `nas search` or name a run")

    def changed(p: Any) -> float:
        return max((p / n).stat().st_mtime for n in ("run.db", "run.db-wal") if (p / n).exists())

    return max(runs, key=changed)


def runs_table(records: Sequence[Mapping[str, Any]]) -> str:
    import time

    from .textfmt import table

    def when(t: Any) -> str:
        if t is None:
            return "-"
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t)))

    rows = []
    for r in records:
        if r["state"] == "unreadable":
            rows.append([r["run"], "-", "-", "-", "-", "unreadable", when(r.get("changed")), r["error"]])
            continue
        state = r["state"] + (f" (pid {r['pid']})" if r.get("pid") else "") + (f", {r['stopped']}" if r["state"] == "finished" and r.get("stopped") else "")
        progress = f"{r['evaluated']}/{r['budget'] if r['budget'] else '-'}"
        rows.append([r["run"], r["space"], r["data"], r["strategy"], progress, state, when(r.get("changed")), ""])
    return table(rows, ["run", "space", "data", "strategy", "progress", "state", "changed", "note"], "llllrlll", flex=7)
