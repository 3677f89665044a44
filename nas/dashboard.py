"""`nas dashboard`: a local web page that follows a run live, read-only.

A standard-library HTTP server (ThreadingHTTPServer) reads the run store read-only, also while a
search writes it, and serves one page (nas/dashboard_static: plain JS drawing on canvas and SVG,
no library, no CDN) and JSON:

    /api/runs                          the runs it serves (one, or every run under a directory)
    /api/summary?run=R                 progress, state, counts, running candidates and their epoch,
                                       the front and the pick
    /api/points?run=R&after=N          finished candidates after the first N (in the order they
                                       finished): the page fetches only what is new
    /api/history?run=R                 hypervolume over evaluations (nas.objectives.hypervolume)
    /api/trials?run=R&page=&size=&sort=&state=&q=   one page of the trials table, sorted and
                                       filtered here (the page never holds 100,000 rows)
    /api/candidate?run=R&id=N          architecture, metrics, learning curve, parents, children
    /api/parallel?run=R                decisions against accuracy (a thinned sample, front first)

Requests never name files: the page's assets are read into memory at start, runs are looked up by
name among those found at start (or on /api/runs), so no request path reaches the filesystem.
The store is refreshed when SQLite says it changed (PRAGMA data_version), at most every 0.5 s.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import parse_qs, urlsplit

from . import objectives as objmod
from . import trials as trialmod
from .errors import NasError, UsageError
from .store import RunError, RunStore, _row_to_candidate

STATIC = Path(__file__).with_name("dashboard_static")
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
FINAL = ("complete", "failed", "infeasible")
STATE_CODE = {"complete": 0, "failed": 1, "infeasible": 2, "queued": 3, "running": 4}
TABLE_COLUMNS = ("id", "state", "val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "epochs", "seconds",
                 "worker", "source", "summary", "error")
MAX_PAGE = 500
PARALLEL_LINES = 1500
POINT_BLOCK = 1024


def _finite(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _short(v: Any) -> Any:
    """A number as the plots need it (6 decimals, or 0.1 for large ones): a smaller page to load."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None if v is None else v
    if not math.isfinite(v):
        return None
    return round(v, 6) if abs(v) < 1e4 else round(v, 1)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False)


class RunView:
    """One run, read-only: its candidates cached in memory and brought up to date from the store
    when it changed. Rows that finished never change, so new ones are appended (the page asks
    for what came after what it has)."""

    def __init__(self, path: Path, name: str) -> None:
        from .runs import Run

        self.name = name
        self.path = Path(path)
        self.run = Run(self.path)  # read-only; RunError for a missing run or one of a newer nas
        self.store: RunStore = self.run.store
        self.objectives = self.run.objectives
        self.lock = threading.RLock()
        self.cands: dict[int, Any] = {}
        self.rows: dict[int, dict[str, Any]] = {}
        self.pending: set[int] = set()
        self.done: list[int] = []  # ids in the order they were seen finished
        self.points: list[list[Any]] = []  # the plot data of each, same order
        self._blocks: list[list[str]] = []  # column JSON of each whole block of points
        self.children: dict[int, list[int]] = {}
        self.workers: dict[str, int] = {}
        self.front: list[Any] = []
        self.pick: Any = None
        self.max_id = 0
        self.changes = 0
        self._version: Any = None
        self._checked = 0.0
        self._sorted: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._columns: dict[str, tuple[int, Any]] = {}
        self._key_text: dict[tuple[Any, ...], str] = {}
        self._text: dict[int, str] = {}
        self.t0: float | None = None  # times in points are seconds after the first candidate was created
        self._history: tuple[int, dict[str, Any]] | None = None
        self._parallel: tuple[int, dict[str, Any]] | None = None
        self._summaries = trialmod.Summaries(self.run.space)
        self.refresh(force=True)

    def close(self) -> None:
        self.run.close()

    # -- keeping up with the store ----------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if not force and now - self._checked < 0.5:
                return
            self._checked = now
            conn = self.store.conn
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if not force and version == self._version:
                return
            self._version = version
            rows = conn.execute("SELECT * FROM candidates WHERE id > ? ORDER BY id", (self.max_id,)).fetchall()
            pend = sorted(self.pending)
            for i in range(0, len(pend), 500):
                chunk = pend[i:i + 500]
                rows += conn.execute(f"SELECT * FROM candidates WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            tested = conn.execute("SELECT id, test FROM candidates WHERE test IS NOT NULL").fetchall()
            self._meta = self.store.all_meta()
            epochs = self.store.current_epochs() if self.pending or rows else {}
            finished: list[Any] = []
            for r in rows:
                c = _row_to_candidate(r)
                first = c.id not in self.cands
                self.cands[c.id] = c
                if self.t0 is None:
                    self.t0 = float(c.created or 0.0)
                self._text[c.id] = self._make_text(c)
                self.max_id = max(self.max_id, c.id)
                if first:
                    for p in c.parents:
                        self.children.setdefault(int(p), []).append(c.id)
                if c.worker and c.worker not in self.workers:
                    self.workers[c.worker] = len(self.workers)
                self.rows[c.id] = trialmod.row(c, self.objectives, None, epochs.get(c.id))  # summary: when shown
                self.rows[c.id]["summary"] = None
                if c.state in FINAL:
                    self.pending.discard(c.id)
                    self.done.append(c.id)
                    self.points.append(self._point(c))
                    finished.append(c)
                else:
                    self.pending.add(c.id)
            for cid in self.pending:  # a running candidate's epoch moves without its row changing
                if cid in epochs and cid in self.rows:
                    self.rows[cid]["epochs"] = epochs[cid]
            for cid, test in tested:
                c = self.cands.get(cid)
                if c is not None and c.test is None:
                    c.test = json.loads(test)
                    self.rows[cid]["test_accuracy"] = (c.test or {}).get("test_accuracy")
            if finished:
                self._grow_front(finished)
                if len(finished) >= POINT_BLOCK:  # a large run read at start: its page load is ready at once
                    self._block(len(self.points) // POINT_BLOCK - 1)
            self.changes += 1
            self._sorted.clear()

    def _point(self, c: Any) -> list[Any]:
        values = list(c.objectives) if c.objectives is not None else [None] * len(self.objectives)
        dup, der, _ = trialmod.lineage(c)
        if self.t0 is None:
            self.t0 = float(c.created or c.started or 0.0)
        return [c.id, STATE_CODE.get(c.state, 1), 1 if c.feasible else 0, 1 if dup is not None else 0,
                [_short(v) for v in values], _short(c.metrics.get("val_accuracy")),
                round(c.started - self.t0, 3) if c.started is not None else None,
                round(c.finished - self.t0, 3) if c.finished is not None else None, self.workers.get(c.worker or "", -1)]

    def _grow_front(self, finished: Sequence[Any]) -> None:
        add = getattr(objmod, "add_to_front", None)
        if add is not None and len(finished) <= 200:
            for c in finished:
                add(self.front, c, self.objectives)
        else:  # the front of the union is the front of (old front + new): chunks keep it small
            for i in range(0, len(finished), 2000):
                self.front = objmod.front(self.front + list(finished[i:i + 2000]), self.objectives)
        first = self.objectives[0]
        self.front.sort(key=lambda c: (-c.objectives[0] if first.direction == "max" else c.objectives[0], c.id))
        try:
            self.pick = objmod.pick(self.front, self.objectives) if self.front else None
        except NasError:
            self.pick = None

    # -- answers ------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        from .runs import writer

        self.refresh()
        with self.lock:
            cfg = self.run.config
            counts = {s: 0 for s in STATE_CODE}
            dups = 0
            for r in self.rows.values():
                counts[r["state"]] = counts.get(r["state"], 0) + 1
                dups += r["duplicate_of"] is not None
            live = writer(self.path)
            stopped = self._meta.get("stopped")
            state = "running" if live.alive else "finished" if stopped in ("budget", "time budget", "failures", "exhausted", "infeasible") else "stopped"
            elapsed = float(self._meta.get("elapsed", 0.0) or 0.0)
            at = self._meta.get("elapsed_at")
            if at is not None and live.alive:
                elapsed += max(0.0, time.time() - float(at))
            running = [{"id": cid, "worker": self.cands[cid].worker, "epoch": self.rows[cid]["epochs"], "since": self.cands[cid].started,
                        "summary": self._row(cid)["summary"]} for cid in sorted(self.pending) if self.cands[cid].state == "running"]
            front = [self._brief(c.id) for c in self.front[:200]]
            return {
                "run": self.name, "path": str(self.path), "space": self.run.space.name, "data": cfg.data, "strategy": cfg.strategy,
                "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives], "budget": cfg.budget,
                "time_budget": cfg.time_budget, "total": len(self.cands), "finished": len(self.done), "counts": counts,
                "duplicates": dups, "evaluated": sum(counts[s] for s in FINAL) - dups, "state": state, "stopped": stopped,
                "pid": live.pid if live.alive else None, "elapsed_s": elapsed, "running": running, "front": front,
                "front_size": len(self.front), "pick": self.pick.id if self.pick is not None else None,
                "workers": list(self.workers), "now": time.time(), "t0": self.t0,
            }

    def _row(self, cid: int) -> dict[str, Any]:
        """A candidate's trials row, its architecture summary made the first time it is shown."""
        r = self.rows[cid]
        if r["summary"] is None:
            c = self.cands[cid]
            r["summary"] = self._summaries(c.key, c.arch)
        return r

    def _brief(self, cid: int) -> dict[str, Any]:
        r = self._row(cid)
        return {k: _finite(r[k]) for k in ("id", "state", "val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "summary")} | {
            "objectives": [_finite(r[f"obj_{o.name}"]) for o in self.objectives]}

    def points_after(self, after: int) -> str:
        """Finished candidates after the first `after`, as columns (flat lists decode fast):
        id, state (0 complete, 1 failed, 2 infeasible), feasible, dup, one list per objective
        (o0, o1, ...), acc (validation accuracy), start, end (seconds after t0), worker (index)."""
        self.refresh()
        with self.lock:
            n = len(self.points)
            after = max(0, min(after, n))
            parts: list[list[str]] = []  # per piece: the inner JSON of each column
            first_full = -(-after // POINT_BLOCK)  # the first whole block at or after `after`
            if after % POINT_BLOCK:
                parts.append(self._columns_json(self.points[after:min(n, first_full * POINT_BLOCK)]))
            full = n // POINT_BLOCK
            parts += [self._block(k) for k in range(first_full, full)]
            if full >= first_full and full * POINT_BLOCK < n:
                parts.append(self._columns_json(self.points[full * POINT_BLOCK:]))
            names = self._point_columns()
            cols = ",".join(f'"{name}":[' + ",".join(p[j] for p in parts if p[j]) + "]" for j, name in enumerate(names))
            return '{"start":' + str(after) + ',"n":' + str(n - after) + ',"cols":{' + cols + "}}"

    def _point_columns(self) -> list[str]:
        return ["id", "state", "feasible", "dup", *(f"o{i}" for i in range(len(self.objectives))), "acc", "start", "end", "worker"]

    def _columns_json(self, points: Sequence[list[Any]]) -> list[str]:
        m = len(self.objectives)
        cols: list[list[Any]] = [[] for _ in range(8 + m)]
        for p in points:
            cols[0].append(p[0]); cols[1].append(p[1]); cols[2].append(p[2]); cols[3].append(p[3])  # noqa: E702
            for i in range(m):
                cols[4 + i].append(p[4][i])
            cols[4 + m].append(p[5]); cols[5 + m].append(p[6]); cols[6 + m].append(p[7]); cols[7 + m].append(p[8])  # noqa: E702
        return [_dumps(c)[1:-1] for c in cols]

    def _block(self, k: int) -> list[str]:
        """The column JSON of points k*POINT_BLOCK ... (k+1)*POINT_BLOCK - 1, made once: finished points never change."""
        while len(self._blocks) <= k:
            i = len(self._blocks)
            self._blocks.append(self._columns_json(self.points[i * POINT_BLOCK:(i + 1) * POINT_BLOCK]))
        return self._blocks[k]

    def trials_page(self, page: int, size: int, sort: str | None, state: str | None, q: str | None) -> dict[str, Any]:
        self.refresh()
        cols = trialmod.columns(self.objectives)
        if sort and sort.lstrip("-") not in cols:
            raise UsageError(f"no column {sort.lstrip('-')!r}")
        with self.lock:
            key = (sort, state, q)
            ids = self._sorted.get(key)
            if ids is None:
                ids = self._select(sort, state, q)
                self._sorted[key] = ids
                while len(self._sorted) > 16:
                    self._sorted.popitem(last=False)
            size = max(1, min(size, MAX_PAGE))
            pages = max(1, -(-len(ids) // size))
            page = max(0, min(page, pages - 1))
            show = [*(f"obj_{o.name}" for o in self.objectives), *TABLE_COLUMNS]
            out = []
            for cid in ids[page * size:(page + 1) * size]:
                r = self._row(cid)
                out.append({k: _finite(r[k]) for k in show})
            return {"total": len(ids), "all": len(self.rows), "page": page, "pages": pages, "size": size, "columns": show,
                    "rows": out, "pick": self.pick.id if self.pick is not None else None, "front": [c.id for c in self.front]}

    def _select(self, sort: str | None, state: str | None, q: str | None) -> list[int]:
        """Ids of the rows that pass the filters, in the order asked for. Numeric columns sort
        with numpy over one array per column (kept until the run changes), ties in id order."""
        import numpy as np

        ids = self._ids()
        if state:
            wanted = set(state.split(","))
            ids = [i for i in ids if self.rows[i]["state"] in wanted or ("duplicate" in wanted and self.rows[i]["duplicate_of"] is not None)]
        if q:
            needle = q.lower()
            hit = {i for i, text in self._text.items() if needle in text}  # decisions and key
            states = {st for st in STATE_CODE if needle in st}
            workers = {w for w in self.workers if needle in w.lower()}
            if states or workers:
                hit.update(i for i, c in self.cands.items() if c.state in states or c.worker in workers)
            hit.update(i for i, c in self.cands.items() if c.error is not None and needle in c.error.lower())
            if needle.isdigit():
                hit.add(int(needle))
            ids = [i for i in ids if i in hit]
        if not sort:
            return ids
        desc = sort.startswith("-")
        col = sort.lstrip("-")
        if col in trialmod.NUMERIC or col.startswith("obj_"):
            values = self._column(col)
            if len(ids) != len(values):
                pos = np.searchsorted(self._column("id"), np.asarray(ids, dtype=float))
                values = values[pos]
            arr = np.asarray(ids)
            order = np.argsort(-values if desc else values, kind="stable")  # NaN (empty) last either way
            return arr[order].tolist()
        if col == "summary":
            for i in ids:
                self._row(i)
        return [r["id"] for r in trialmod.sort_rows([self.rows[i] for i in ids], sort)]

    def _ids(self) -> list[int]:
        got = self._columns.get("__ids__")
        if got is None or got[0] != self.changes:
            self._columns["__ids__"] = got = (self.changes, sorted(self.rows))
        return list(got[1])

    def _column(self, col: str) -> Any:
        """One numeric column over every row in id order (NaN where empty)."""
        import numpy as np

        got = self._columns.get(col)
        if got is None or got[0] != self.changes:
            vals = [self.rows[i][col] for i in self._ids()]
            arr = np.array([np.nan if v is None or isinstance(v, str) else float(v) for v in vals], dtype=float)
            self._columns[col] = got = (self.changes, arr)
        return got[1]

    def _search_text(self, r: dict[str, Any]) -> str:
        """Where the table's filter looks first: the decisions' values and the key (then state,
        worker and error). Made when a row arrives, shared by rows of one architecture."""
        return self._text[r["id"]]

    def _make_text(self, c: Any) -> str:
        values = tuple(c.arch.values())
        text = self._key_text.get(values)
        if text is None:
            text = self._key_text[values] = " ".join([*(str(v) for v in values), c.key]).lower()
        return text

    def candidate(self, cid: int) -> dict[str, Any] | None:
        self.refresh()
        with self.lock:
            c = self.cands.get(cid)
            if c is None:
                return None
            r = self._row(cid)
            dup, der, source = trialmod.lineage(c)
            curve_of = dup if dup is not None else cid
            with self.lock:
                curve = self.store.curve(curve_of)
            try:
                decisions = self.run.space.format_arch(self.run.space.make(dict(c.arch)))
            except Exception:
                decisions = json.dumps(c.arch)

            def brief(i: int) -> dict[str, Any]:
                rr = self.rows.get(i)
                return {"id": i, "state": rr["state"] if rr else "?", "val_accuracy": _finite(rr["val_accuracy"]) if rr else None,
                        "summary": self._row(i)["summary"] if rr else ""}

            in_front = any(f.id == cid for f in self.front)
            run_arg = str(self.path)
            return {
                "id": cid, "state": c.state, "key": c.key, "summary": r["summary"], "arch": c.arch, "decisions": decisions,
                "metrics": {k: _finite(v) for k, v in c.metrics.items() if not isinstance(v, (dict, list))}, "test": c.test,
                "objectives": {o.name: _finite(v) for o, v in zip(self.objectives, c.objectives or ())}, "violation": c.violation,
                "error": c.error, "source": source, "duplicate_of": dup, "derived_from": der, "generation": c.generation,
                "worker": c.worker, "created": c.created, "started": c.started, "finished": c.finished, "epochs": r["epochs"],
                "curve": [{k: _finite(v) for k, v in e.items()} for e in curve], "curve_of": curve_of,
                "parents": [brief(int(p)) for p in c.parents], "children": [brief(i) for i in self.children.get(cid, [])[:200]],
                "children_total": len(self.children.get(cid, [])), "in_front": in_front,
                "pick": self.pick is not None and self.pick.id == cid,
                "export": f"nas export {_shell(run_arg)} --pick {cid} --out {_shell('export-' + str(cid))}",
            }

    def history(self) -> dict[str, Any]:
        """Hypervolume after each stretch of finished candidates (about 200 points), by the one
        definition in nas.objectives."""
        self.refresh()
        with self.lock:
            n = len(self.done)
            if self._history is not None and self._history[0] == n:
                return self._history[1]
            order = [self.cands[i] for i in self.done]
        out: dict[str, Any] = {"n": n, "x": [], "hv": []}
        if 2 <= len(self.objectives) <= 3 and n:
            hv_bounds = getattr(objmod, "hv_bounds", None)
            bounds = hv_bounds(order, self.objectives) if hv_bounds is not None else None
            step = max(1, n // 200)
            front: list[Any] = []
            add = getattr(objmod, "add_to_front", None)
            for start in range(0, n, step):
                chunk = order[start:start + step]
                if add is not None and len(chunk) <= 50:
                    for c in chunk:
                        add(front, c, self.objectives)
                else:
                    front = objmod.front(front + chunk, self.objectives)
                try:
                    hv = objmod.hypervolume(front, self.objectives, bounds) if hv_bounds is not None else objmod.hypervolume(front, self.objectives)
                except (TypeError, ValueError):
                    hv = None
                out["x"].append(start + len(chunk))
                out["hv"].append(_finite(hv) if hv is not None else None)
            out["rule"] = getattr(objmod, "HV_RULE", "objectives normalised, reference point 1.1")
        with self.lock:
            self._history = (n, out)
        return out

    def parallel(self) -> dict[str, Any]:
        """Decisions (axes) against validation accuracy: every front member and a random sample
        of the rest, up to PARALLEL_LINES lines."""
        self.refresh()
        with self.lock:
            n = len(self.done)
            if self._parallel is not None and self._parallel[0] == n:
                return self._parallel[1]
            done = [self.cands[i] for i in self.done if self.cands[i].state == "complete"]
            front_ids = {c.id for c in self.front}
        space = self.run.space
        axes = []
        for d in space.decisions:
            if len(d.values) > 1:
                axes.append({"label": d.label, "values": [str(v) for v in d.values], "index": {repr(v): i for i, v in enumerate(d.values)}})
        if len(axes) > 16:  # the decisions that vary most among the finished candidates
            def spread(ax: dict[str, Any]) -> int:
                return len({repr(c.arch.get(ax["label"])) for c in done[:2000]})
            keep = {a["label"] for a in sorted(axes, key=spread, reverse=True)[:16]}
            axes = [a for a in axes if a["label"] in keep]  # in the space's order
        rng = random.Random(0)
        chosen = [c for c in done if c.id in front_ids]
        rest = [c for c in done if c.id not in front_ids]
        if len(rest) > PARALLEL_LINES - len(chosen):
            rest = rng.sample(rest, max(0, PARALLEL_LINES - len(chosen)))
        lines = []
        for c in sorted(rest, key=lambda c: c.id) + chosen:
            vals = [ax["index"].get(repr(c.arch.get(ax["label"]))) for ax in axes]
            lines.append([c.id, _finite(c.metrics.get("val_accuracy")), 1 if c.id in front_ids else 0, vals])
        out = {"n": n, "shown": len(lines), "axes": [{"label": a["label"], "values": a["values"]} for a in axes], "lines": lines}
        with self.lock:
            self._parallel = (n, out)
        return out


def _shell(text: str) -> str:
    import shlex

    return shlex.quote(text)


# -- finding runs ------------------------------------------------------------------------------------
class Runs:
    """The runs a dashboard serves: one run directory, or the runs under a directory (looked up by
    name: a request never gives a path)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        if not self.target.exists():
            raise RunError(f"{self.target}: no such run or directory")
        self.single = (self.target / "run.db").exists()
        self.views: dict[str, RunView] = {}
        self.lock = threading.Lock()
        self.found: dict[str, Path] = {}
        self.scan()
        if self.single:
            self.get(self.target.name or str(self.target))  # a broken or newer-version run fails now, in one line
        elif not self.found:
            raise RunError(f"{self.target}: no runs in it (a run is a directory with a run.db)")
        else:
            self.get(None)  # the latest run that can be read; RunError when none can

    def scan(self) -> dict[str, Path]:
        with self.lock:
            if self.single:
                self.found = {self.target.name or str(self.target): self.target}
            else:
                self.found = {p.name: p for p in sorted(self.target.iterdir()) if p.is_dir() and (p / "run.db").exists()}
            return dict(self.found)

    def newest_first(self) -> list[str]:
        def changed(n: str) -> float:
            try:
                return max((self.found[n] / f).stat().st_mtime for f in ("run.db", "run.db-wal") if (self.found[n] / f).exists())
            except (OSError, ValueError):
                return 0.0

        return sorted(self.found, key=changed, reverse=True)

    def get(self, name: str | None) -> RunView:
        """The run called `name` (KeyError if the dashboard does not serve one by that name); None:
        the run, or the latest one that can be read."""
        with self.lock:
            if not name and self.single:
                name = next(iter(self.found))
        if not name:
            last: RunError | None = None
            for candidate in self.newest_first():
                try:
                    return self.get(candidate)
                except RunError as exc:  # unreadable (e.g. of a newer nas): the next newest
                    last = exc
            raise last or RunError(f"{self.target}: no runs in it")
        with self.lock:
            if name not in self.found:
                raise KeyError(name)
            view = self.views.get(name)
            if view is None:
                view = self.views[name] = RunView(self.found[name], name)
            return view

    def listing(self) -> list[dict[str, Any]]:
        from .trials import run_listing

        found = self.scan()
        return [dict(r, name=n) for n, r in zip(found, run_listing(list(found.values())))]

    def close(self) -> None:
        for v in self.views.values():
            v.close()


# -- HTTP ---------------------------------------------------------------------------------------------
def _load_assets() -> dict[str, tuple[bytes, str]]:
    out = {}
    for route, (name, ctype) in ASSETS.items():
        out[route] = ((STATIC / name).read_bytes(), ctype)
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "nas-dashboard"
    runs: Runs
    assets: dict[str, tuple[bytes, str]]
    quiet = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        body = obj.encode() if isinstance(obj, str) else _dumps(obj).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, text: str) -> None:
        self._json({"error": text}, status)

    def do_HEAD(self) -> None:  # noqa: N802 (the stdlib's name)
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard is read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        route = parts.path
        if route in self.assets:
            body, ctype = self.assets[route]
            self._send(200, body, ctype, cache=route != "/")
            return
        if not route.startswith("/api/"):
            self._error(404, "not found")
            return
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            if route == "/api/runs":
                self._json({"single": self.runs.single, "runs": self.runs.listing()})
                return
            try:
                view = self.runs.get(query.get("run"))
            except KeyError:
                self._error(404, "no such run")
                return
            if route == "/api/summary":
                self._json(view.summary())
            elif route == "/api/points":
                self._json(view.points_after(_int(query.get("after"), 0)))
            elif route == "/api/trials":
                self._json(view.trials_page(_int(query.get("page"), 0), _int(query.get("size"), 50), query.get("sort") or None,
                                            query.get("state") or None, query.get("q") or None))
            elif route == "/api/candidate":
                got = view.candidate(_int(query.get("id"), -1))
                if got is None:
                    self._error(404, "no such candidate")
                else:
                    self._json(got)
            elif route == "/api/history":
                self._json(view.history())
            elif route == "/api/parallel":
                self._json(view.parallel())
            else:
                self._error(404, "not found")
        except (UsageError, ValueError) as exc:
            self._error(400, str(exc))
        except (RunError, sqlite3.Error) as exc:
            self._error(503, f"the run cannot be read right now: {exc}")
        except (BrokenPipeError, ConnectionResetError):
            pass


def _int(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"expected a whole number, got {text!r}") from None


def make_server(target: str | Path, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True) -> ThreadingHTTPServer:
    """The dashboard server for a run or a directory of runs (not started: call serve_forever).
    RunError for a missing run or one written by a newer nas; UsageError when the port is taken."""
    runs = Runs(target)
    handler = type("BoundHandler", (Handler,), {"runs": runs, "assets": _load_assets(), "quiet": quiet})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        runs.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}" + (" (the port is in use; pick another with --port)" if exc.errno in (98, 48) else "")) from None
    server.daemon_threads = True
    server.runs = runs  # type: ignore[attr-defined]
    return server


def serve(target: str | Path, host: str = "127.0.0.1", port: int = 8080, log: Any = print) -> None:
    log(f"reading {target} ...")  # a run of 100,000 candidates takes a few seconds
    server = make_server(target, host, port)
    where = f"http://{host if ':' not in host else '[' + host + ']'}:{server.server_address[1]}/"
    log(f"dashboard of {target} at {where} (read-only; Ctrl-C stops it)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"note: listening on {host}, so other machines can reach it")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.runs.close()  # type: ignore[attr-defined]
