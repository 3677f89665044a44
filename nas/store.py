"""The run store: one SQLite database (WAL) per run, the run's only writer.

    runs/<name>/run.db        config, space, candidates, strategy state (with every RNG state)
    runs/<name>/weights/<id>.pt   trained weights, written to a temporary name, fsynced and renamed
    runs/<name>/.lock         held (flock) by the process that writes the run, with its pid

Durability: the database runs with `synchronous=FULL`, so a transaction that committed survives
a killed process and a power cut alike, and a weights file is fsynced (with its directory) before
the row that names it commits. Each state change is one transaction that also holds the strategy
state it leads to, so a crash leaves the run as it was after the last commit: candidates that
were running are evaluated again on resume and nothing committed is lost or evaluated twice.
The driver may group fast evaluations into one transaction (`batch`; see `nas.search`): a crash
then loses only those uncommitted ones, which the resumed run evaluates again.

A run is created in one step: the database is written under a temporary name and renamed into
place, so a directory holds either a whole run or none. Readers (`nas status`, `report`,
`export`, `nas.open_run`) open the database read-only and may do so while a search is writing it.

Format 2 (this one) records where a candidate's numbers came from in integer columns
(`duplicate_of`, `derived_from`) and a `derivation` text; format-1 runs open read-only as they
are (the missing columns read as NULL, duplicates from their old text) and are migrated when
opened for writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .atomic import fsync_dir, write_with
from .errors import NasError

FORMAT_VERSION = 2
STATES = ("queued", "running", "complete", "failed", "infeasible")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    arch TEXT NOT NULL,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    parents TEXT NOT NULL DEFAULT '[]',
    metrics TEXT NOT NULL DEFAULT '{}',
    objectives TEXT,
    violation REAL NOT NULL DEFAULT 0,
    error TEXT,
    duplicate_of INTEGER,
    derived_from INTEGER,
    derivation TEXT,
    epochs INTEGER,
    seconds REAL,
    worker TEXT,
    test TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS candidates_key ON candidates (key, state);
CREATE INDEX IF NOT EXISTS candidates_state ON candidates (state);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# format 1 kept "duplicate of #N" in a text column `source`
_V1_DUPLICATE = "CAST(substr(source, 15) AS INTEGER)"
_V1_VIEW = ("CREATE TEMP VIEW candidates AS SELECT *, " + _V1_DUPLICATE +
            " AS duplicate_of, NULL AS derived_from, NULL AS derivation FROM main.candidates")
_V1_MIGRATION = (
    "ALTER TABLE candidates ADD COLUMN duplicate_of INTEGER",
    "ALTER TABLE candidates ADD COLUMN derived_from INTEGER",
    "ALTER TABLE candidates ADD COLUMN derivation TEXT",
    f"UPDATE candidates SET duplicate_of = {_V1_DUPLICATE} WHERE source LIKE 'duplicate of #%'",
    "UPDATE meta SET value = '2' WHERE key = 'format_version'",
)


class RunError(NasError):
    """A run directory that cannot be used as asked (missing, not a run, in use, too new)."""


@dataclass
class Candidate:
    """One evaluation record."""

    id: int
    key: str
    arch: dict[str, Any]  # label -> value
    state: str
    generation: int = 0
    parents: tuple[int, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[float, ...] | None = None  # in the run's objective order and directions
    violation: float = 0.0
    error: str | None = None
    duplicate_of: int | None = None  # answered from the store: the id of the evaluation it repeats
    derived_from: int | None = None  # made from another candidate's network (e.g. pruned), its id
    derivation: str | None = None  # how, e.g. "pruned 0.5 of #29"
    epochs: int | None = None
    seconds: float | None = None
    worker: str | None = None
    test: dict[str, Any] | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @property
    def feasible(self) -> bool:
        return self.state == "complete" and self.violation <= 0

    @property
    def source(self) -> str | None:
        """"duplicate of #N" for a candidate answered from the store, else None (evaluated here)."""
        return f"duplicate of #{self.duplicate_of}" if self.duplicate_of is not None else None

    @property
    def weights_id(self) -> int:
        """The candidate whose evaluation (and weights file) holds this one's numbers."""
        return self.duplicate_of if self.duplicate_of is not None else self.id


def _row_to_candidate(row: sqlite3.Row) -> Candidate:
    objectives = json.loads(row["objectives"]) if row["objectives"] else None
    return Candidate(
        id=row["id"], key=row["key"], arch=json.loads(row["arch"]), state=row["state"], generation=row["generation"],
        parents=() if row["parents"] == "[]" else tuple(json.loads(row["parents"])), metrics=json.loads(row["metrics"]),
        objectives=tuple(objectives) if objectives is not None else None, violation=row["violation"], error=row["error"],
        duplicate_of=row["duplicate_of"], derived_from=row["derived_from"], derivation=row["derivation"],
        epochs=row["epochs"], seconds=row["seconds"], worker=row["worker"],
        test=json.loads(row["test"]) if row["test"] else None, created=row["created"], started=row["started"], finished=row["finished"],
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)




class _Lock:
    """An exclusive flock on `<run>/.lock`; released by the OS if the process dies. The file
    says `pid N` of the holder (readers tell a live run from a dead one with `nas.runs.writer`)."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self.path = path
        self.fh = open(path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise RunError(f"{path.parent}: the run is in use by {holder}; wait for it to finish or stop it first") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()

    def release(self) -> None:
        import fcntl

        if not self.fh.closed:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


class RunStore:
    """Everything needed to resume a run exactly lives here."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: _Lock | None) -> None:
        self.path = path
        self.conn = conn
        self._lock = lock
        self.weights_dir = path / "weights"
        # batch: writes wait for commit() (the driver groups fast evaluations); state_provider:
        # the states (e.g. {"strategy": ...}) every commit writes with the rows, when they changed
        self.batch = False
        self.state_provider: Callable[[], Mapping[str, Any]] | None = None
        self._saved: dict[str, str] = {}
        self._saved_objects: dict[str, Any] = {}  # name -> the object whose text `_saved` holds
        self._last_id: int | None = None  # the largest candidate id (the writer's cache; None: ask the database)
        self._closed = False
        if lock is not None:
            self._saved = {name: value for name, value in conn.execute("SELECT name, value FROM state")}

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: Mapping[str, Any]) -> "RunStore":
        """A new run at `path` (which must not hold a run yet); `meta` values are JSON-able. The
        schema and all of `meta` land in one step: the database is written under a temporary
        name (in WAL mode already), made durable and renamed to run.db, so a crash leaves no
        half-made run and a reader that opens run.db as soon as it appears can read it."""
        path = Path(path)
        if (path / "run.db").exists():
            raise RunError(f"{path}: a run already exists there; resume it with `nas resume {path}` or pick another --run")
        if path.exists() and not path.is_dir():
            raise RunError(f"{path}: exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        lock = _Lock(path / ".lock")
        tmp = path / f".run.db.tmp{os.getpid()}"
        try:
            for old in path.glob(".run.db.tmp*"):  # left by a create that was killed
                old.unlink(missing_ok=True)
            conn = sqlite3.connect(tmp, timeout=30)
            try:
                # WAL from the start (the mode is kept in the file): run.db never changes journal
                # mode once it is there, a change that locks readers out; closing the last
                # connection checkpoints the log into the file and removes it before the rename
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                with conn:
                    conn.executescript(_SCHEMA)
                    values = {"format_version": FORMAT_VERSION, "created": time.time(), **meta}
                    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, _dumps(v)) for k, v in values.items()])
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself
            finally:
                conn.close()
            Path(f"{tmp}-shm").unlink(missing_ok=True)  # an index of the (now empty) log, if close left it
            (path / "weights").mkdir(exist_ok=True)
            os.replace(tmp, path / "run.db")
            fsync_dir(path)
            conn = cls._connect(path / "run.db")
        except BaseException:
            tmp.unlink(missing_ok=True)
            lock.release()
            raise
        return cls(path, conn, lock)

    @classmethod
    def open(cls, path: str | Path, *, write: bool = False) -> "RunStore":
        """An existing run; `write` takes the run's lock (one writer at a time) and migrates a
        run of an older format to this one."""
        path = Path(path)
        db = path / "run.db"
        if not path.exists():
            raise RunError(f"{path}: no such run directory")
        if not db.exists():
            raise RunError(f"{path}: not a run directory (no run.db in it)")
        lock = _Lock(path / ".lock") if write else None
        try:
            conn = cls._connect(db, readonly=not write)
            try:
                version = json.loads(conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()[0])
            except sqlite3.OperationalError as exc:  # locked or busy past the timeout: a database, not readable now
                conn.close()
                raise RunError(f"{path}: run.db could not be read ({exc}); try again") from None
            except (sqlite3.DatabaseError, TypeError, json.JSONDecodeError):
                conn.close()
                raise RunError(f"{path}: run.db is not a nas run database") from None
            if version > FORMAT_VERSION:
                conn.close()
                raise RunError(f"{path}: the run was written by a newer nas (run format {version}; this nas reads up to {FORMAT_VERSION}); upgrade nas")
            if version < 2:
                if write:
                    with conn:
                        for statement in _V1_MIGRATION:
                            conn.execute(statement)
                else:
                    conn.execute(_V1_VIEW)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(path, conn, lock)

    @staticmethod
    def _connect(db: Path, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        else:
            conn = sqlite3.connect(db, timeout=30, check_same_thread=False)
            # WAL: readers never block the writer; FULL: a commit is on disk before it returns,
            # so neither a killed process nor a power cut loses it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.row_factory = sqlite3.Row
        return conn

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.conn.in_transaction:  # a batch the driver did not commit (it stopped mid-step): the run stays as of the last commit
                self.rollback()
            self.conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def _tx(self, states: Mapping[str, Any] | None = None) -> Iterator[sqlite3.Connection]:
        """One change: committed at once (with the states), or left for commit() in batch mode."""
        try:
            yield self.conn
            self._save_state(states)
        except BaseException:
            if not self.batch:
                self.rollback()
            raise
        if not self.batch:
            self.commit()

    def commit(self, states: Mapping[str, Any] | None = None) -> None:
        """Commit what is pending together with the current states (those that changed)."""
        self._save_state(states)
        if self.state_provider is not None:
            self._save_state(self.state_provider())
        self.conn.commit()

    def rollback(self) -> None:
        """Drop what is pending (the run is as of the last commit)."""
        self.conn.rollback()
        self._last_id = None
        if self._lock is not None:
            self._saved = {name: value for name, value in self.conn.execute("SELECT name, value FROM state")}
        self._saved_objects = {}

    @property
    def pending(self) -> bool:
        """Whether changes wait for a commit."""
        return self.conn.in_transaction

    # -- meta and state ---------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))

    def set_metas(self, values: Mapping[str, Any]) -> None:
        with self._tx():
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, _dumps(v)) for k, v in values.items()])

    def all_meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def state(self, name: str) -> Any:
        row = self.conn.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def _save_state(self, states: Mapping[str, Any] | None) -> None:
        """Write the states that differ from what the run holds (a strategy's whole state is
        large: it is written only when it changed)."""
        for name, value in (states or {}).items():
            if self._saved_objects.get(name) is value:  # the very object saved last: unchanged (see Search._states)
                continue
            text = _dumps(value)
            if self._saved.get(name) != text:
                self.conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, text))
                self._saved[name] = text
            self._saved_objects[name] = value

    # -- candidates -------------------------------------------------------------------------
    def add(self, key: str, arch: Mapping[str, Any], *, generation: int = 0, parents: Iterable[int] = (),
            states: Mapping[str, Any] | None = None, derived_from: int | None = None, derivation: str | None = None,
            worker: str | None = None) -> int:
        """Record a proposed candidate and the state after proposing it, atomically: queued, or
        running on `worker` when it starts at once (one statement instead of add + start)."""
        now = time.time()
        with self._tx(states):
            cur = self.conn.execute(
                "INSERT INTO candidates (key, arch, state, generation, parents, derived_from, derivation, created, started, worker)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, _dumps(dict(arch)), "queued" if worker is None else "running", generation, _dumps(list(parents)),
                 derived_from, derivation, now, None if worker is None else now, worker),
            )
        self._last_id = int(cur.lastrowid)
        return self._last_id

    def add_finished(self, key: str, arch: Mapping[str, Any], state: str, *, generation: int = 0, parents: Iterable[int] = (),
                     metrics: Mapping[str, Any], objectives: Iterable[float] | None, violation: float, error: str | None,
                     duplicate_of: int, states: Mapping[str, Any] | None = None) -> int:
        """Record a candidate proposed and answered at once (a duplicate of candidate
        `duplicate_of`, answered from the store) in one transaction, with the state after telling
        the strategy."""
        now = time.time()
        with self._tx(states):
            cur = self.conn.execute(
                "INSERT INTO candidates (key, arch, state, generation, parents, metrics, objectives, violation, error, duplicate_of, epochs, seconds,"
                " created, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, _dumps(dict(arch)), state, generation, _dumps(list(parents)), _dumps(dict(metrics)),
                 _dumps(list(objectives)) if objectives is not None else None, float(violation), error, int(duplicate_of),
                 metrics.get("epochs"), metrics.get("seconds"), now, now, now),
            )
        self._last_id = int(cur.lastrowid)
        return self._last_id

    def next_id(self) -> int:
        """The id the next recorded candidate will get (the store has one writer)."""
        if self._last_id is None:
            self._last_id = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM candidates").fetchone()[0])
        return self._last_id + 1

    def start(self, cid: int, worker: str | None = None) -> None:
        with self._tx():
            self.conn.execute("UPDATE candidates SET state='running', started=?, worker=? WHERE id=?", (time.time(), worker, cid))

    def set_worker(self, cid: int, worker: str) -> None:
        """Where a candidate runs, once the executor knows (a Ray task is placed after it is submitted,
        a candidate whose worker died runs again elsewhere)."""
        with self._tx():
            self.conn.execute("UPDATE candidates SET worker=? WHERE id=?", (worker, cid))

    def requeue(self, cid: int) -> None:
        with self._tx():
            self.conn.execute("UPDATE candidates SET state='queued', started=NULL, worker=NULL WHERE id=?", (cid,))

    def finish(self, cid: int, state: str, *, metrics: Mapping[str, Any], objectives: Iterable[float] | None = None,
               violation: float = 0.0, error: str | None = None, duplicate_of: int | None = None,
               weights: Mapping[str, Any] | None = None, states: Mapping[str, Any] | None = None) -> None:
        """Record an evaluation's outcome and the state after telling the strategy, atomically.
        Weights go to disk first (fsynced, atomic rename): a crash in between only leaves a file
        that the re-evaluation will overwrite."""
        if state not in ("complete", "failed", "infeasible"):
            raise ValueError(f"finish() takes complete, failed or infeasible, not {state!r}")
        if weights is not None:
            self.save_weights(cid, weights)
        with self._tx(states):
            self.conn.execute(
                "UPDATE candidates SET state=?, metrics=?, objectives=?, violation=?, error=?, duplicate_of=?, epochs=?, seconds=?, finished=? WHERE id=?",
                (state, _dumps(dict(metrics)), _dumps(list(objectives)) if objectives is not None else None, float(violation), error,
                 duplicate_of, metrics.get("epochs"), metrics.get("seconds"), time.time(), cid),
            )

    def set_test(self, cid: int, test: Mapping[str, Any]) -> None:
        with self._tx():
            self.conn.execute("UPDATE candidates SET test=? WHERE id=?", (_dumps(dict(test)), cid))

    def candidate(self, cid: int) -> Candidate | None:
        row = self.conn.execute("SELECT * FROM candidates WHERE id=?", (cid,)).fetchone()
        return _row_to_candidate(row) if row else None

    def candidates(self, states: Iterable[str] | None = None) -> list[Candidate]:
        if states is None:
            rows = self.conn.execute("SELECT * FROM candidates ORDER BY id")
        else:
            states = list(states)
            rows = self.conn.execute(f"SELECT * FROM candidates WHERE state IN ({','.join('?' * len(states))}) ORDER BY id", states)
        return [_row_to_candidate(r) for r in rows]

    def iter_candidates(self) -> Iterator[Candidate]:
        for row in self.conn.execute("SELECT * FROM candidates ORDER BY id"):
            yield _row_to_candidate(row)

    def evaluated(self, key: str) -> Candidate | None:
        """The first finished evaluation (not itself a duplicate) of an architecture with this key."""
        row = self.conn.execute(
            "SELECT * FROM candidates WHERE key=? AND state IN ('complete','failed','infeasible') AND duplicate_of IS NULL ORDER BY id LIMIT 1",
            (key,),
        ).fetchone()
        return _row_to_candidate(row) if row else None

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM candidates GROUP BY state"):
            out[state] = n
        out["duplicates"] = self.conn.execute("SELECT COUNT(*) FROM candidates WHERE duplicate_of IS NOT NULL").fetchone()[0]
        return out

    # -- weights ----------------------------------------------------------------------------
    def weights_path(self, cid: int) -> Path:
        return self.weights_dir / f"{cid}.pt"

    def save_weights(self, cid: int, state: Mapping[str, Any]) -> Path:
        """Write weights durably: a temporary file, fsynced, renamed, and the directory fsynced,
        so that the row naming the file (committed after this returns) never points at a partial one."""
        import torch

        return write_with(self.weights_path(cid), lambda fh: torch.save(dict(state), fh), durable=True)

    def load_weights(self, cid: int) -> dict[str, Any]:
        import torch

        path = self.weights_path(cid)
        if not path.exists():
            raise RunError(f"{self.path}: no weights kept for candidate {cid}")
        return torch.load(path, map_location="cpu", weights_only=True)

    def prune_weights(self, keep: Iterable[int]) -> int:
        """Delete weight files of candidates not in `keep`; returns how many were deleted."""
        keep = set(keep)
        gone = 0
        for file in self.weights_dir.glob("*.pt"):
            try:
                cid = int(file.stem)
            except ValueError:
                continue
            if cid not in keep:
                file.unlink(missing_ok=True)
                gone += 1
        return gone

    # -- learning curves (nas.dashboard / nas trials helper) ------------------------------------
    # One row per candidate and epoch, written by the driver as epochs finish (also for epochs a
    # worker process or Ray task reports), so a reader sees a running candidate's epoch and every
    # candidate's curve. The table is created on first write: runs from before it read as empty.
    _CURVES = ("CREATE TABLE IF NOT EXISTS curves (cid INTEGER NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, val_loss REAL,"
               " val_accuracy REAL, rung INTEGER, seconds REAL, extra TEXT, PRIMARY KEY (cid, epoch)) WITHOUT ROWID")
    _CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "rung", "seconds")

    def _curve_row(self, cid: int, record: Mapping[str, Any]) -> tuple[Any, ...]:
        extra = {k: v for k, v in record.items() if k not in self._CURVE_COLUMNS}
        return (cid, int(record["epoch"]), record.get("train_loss"), record.get("val_loss"), record.get("val_accuracy"),
                record.get("rung"), record.get("seconds"), _dumps(extra) if extra else None)

    def record_epoch(self, cid: int, record: Mapping[str, Any]) -> None:
        """One finished epoch of a candidate being evaluated. An epoch at or below ones already
        kept (the candidate is evaluated again after a crash) replaces them and what came after."""
        with self._tx():
            self.conn.execute(self._CURVES)
            self.conn.execute("DELETE FROM curves WHERE cid=? AND epoch>=?", (cid, int(record["epoch"])))
            self.conn.execute("INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._curve_row(cid, record))

    def set_curve(self, cid: int, history: Iterable[Mapping[str, Any]]) -> None:
        """A candidate's whole learning curve (its evaluation's history), replacing what was kept."""
        rows = [self._curve_row(cid, r) for r in history if "epoch" in r]
        with self._tx():
            self.conn.execute(self._CURVES)
            self.conn.execute("DELETE FROM curves WHERE cid=?", (cid,))
            self.conn.executemany("INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def curve(self, cid: int) -> list[dict[str, Any]]:
        """A candidate's epochs in order: epoch, train_loss, val_loss, val_accuracy, rung, seconds
        (and any other numbers its evaluator reported)."""
        try:
            rows = self.conn.execute("SELECT * FROM curves WHERE cid=? ORDER BY epoch", (cid,)).fetchall()
        except sqlite3.OperationalError:  # a run from before curves were kept
            return []
        out = []
        for row in rows:
            rec = {k: row[k] for k in self._CURVE_COLUMNS if row[k] is not None}
            if row["extra"]:
                rec.update(json.loads(row["extra"]))
            out.append(rec)
        return out

    def current_epochs(self) -> dict[int, int]:
        """The last epoch kept for each running candidate: {candidate id: epoch}."""
        try:
            rows = self.conn.execute("SELECT c.id, MAX(k.epoch) FROM candidates c JOIN curves k ON k.cid = c.id"
                                     " WHERE c.state='running' GROUP BY c.id").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {int(cid): int(epoch) for cid, epoch in rows}

    def epochs_kept(self) -> dict[int, int]:
        """How many epochs are kept for each candidate that has a curve."""
        try:
            return {int(c): int(n) for c, n in self.conn.execute("SELECT cid, COUNT(*) FROM curves GROUP BY cid")}
        except sqlite3.OperationalError:
            return {}
