"""The search driver and the run store: budgets, duplicates, failures, constraints, locking,
and exact resume after an interruption or a kill -9."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nas
from conftest import python_env
from nas.errors import UsageError
from nas.evaluators import Evaluation
from nas.search import SearchConfig, SearchInterrupted, resume, search, space_config, start
from nas.space import load_space
from nas.store import RunError, RunStore
from nas.tabular import TabularEvaluator
from resume_worker import kill_and_resume

ROOT = Path(__file__).resolve().parents[1]
NB201 = load_space("nb201")


class CountingTable(TabularEvaluator):
    """The NB201 table, counting evaluations per key; can fail or interrupt on demand."""

    def __init__(self, interrupt_at: int | None = None, fail_keys: set[str] | None = None) -> None:
        super().__init__("cifar10")
        self.calls: list[str] = []
        self.interrupt_at = interrupt_at
        self.fail_keys = fail_keys or set()

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None, **options):  # type: ignore[override]
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.calls.append(arch.key)
        if arch.key in self.fail_keys:
            return Evaluation("failed", {}, "simulated failure")
        return super().evaluate(space, arch, seed, constraints, **options)


def snapshot(run: Path) -> list[tuple]:
    with RunStore.open(run) as store:
        return [(c.id, c.key, json.dumps(c.arch, sort_keys=True), c.state, json.dumps(c.metrics, sort_keys=True), c.objectives,
                 c.generation, c.parents, c.source, json.dumps(c.test, sort_keys=True)) for c in store.candidates()]


def front_ids(run: Path) -> list[int]:
    from nas import objectives as objmod
    from nas.search import open_run

    store, config, space, objectives = open_run(run)
    with store:
        return [c.id for c in objmod.front(store.candidates(), objectives)]


def config(strategy: str = "nsga2", budget: int = 60, seed: int = 1, **kw) -> SearchConfig:
    return SearchConfig(space=space_config(NB201), data="nb201:cifar10", objectives=kw.pop("objectives", ["accuracy", "latency"]),
                        strategy=strategy, budget=budget, seed=seed,
                        strategy_options=kw.pop("strategy_options", {"population": 8} if strategy in ("evolution", "nsga2") else {}), **kw)


def run_to_end(cfg: SearchConfig, run: Path, evaluator=None):
    session = start(cfg, run, evaluator=evaluator or CountingTable(), progress=False, log=lambda s: None)
    try:
        return session.run()
    finally:
        session.store.close()


# -- budgets and duplicates ---------------------------------------------------------------------
def test_budget_counts_distinct_evaluations_and_duplicates_are_never_evaluated_twice(tmp_path: Path) -> None:
    ev = CountingTable()
    result = run_to_end(config("evolution", budget=80, objectives=["accuracy"]), tmp_path / "r", ev)
    assert len(ev.calls) == len(set(ev.calls)) == 80
    dups = [c for c in result.candidates if c.source]
    assert len(result.candidates) == 80 + len(dups)
    by_id = {c.id: c for c in result.candidates}
    for d in dups:
        first = by_id[int(d.source.split("#")[1])]
        assert first.key == d.key and first.metrics == d.metrics and first.source is None


def test_search_api_returns_front_with_test_scores(tmp_path: Path) -> None:
    result = search(NB201, data="nb201:cifar10", objectives="accuracy,params", budget=40, run=tmp_path / "r", progress=False)
    assert result.stopped == "budget"
    assert result.front and all(c.test and 0.0 < c.test["test_accuracy"] <= 1.0 for c in result.front)
    accs = [c.objectives[0] for c in result.front]
    assert accs == sorted(accs, reverse=True)


def test_time_budget_stops_the_search(tmp_path: Path) -> None:
    class Slow(CountingTable):
        def evaluate(self, *a, **k):  # type: ignore[override]
            time.sleep(0.05)
            return super().evaluate(*a, **k)

    cfg = config("random", budget=None, time_budget=0.5)
    result = run_to_end(cfg, tmp_path / "r", Slow())
    assert result.stopped == "time budget"
    assert 3 <= len(result.candidates) <= 20


def test_failures_are_recorded_and_many_in_a_row_stop_the_search(tmp_path: Path) -> None:
    class AlwaysFails(CountingTable):
        def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):  # type: ignore[override]
            self.calls.append(arch.key)
            raise RuntimeError("boom <inside>")

    cfg = config("random", budget=50, max_failures=4)
    result = run_to_end(cfg, tmp_path / "r", AlwaysFails())
    assert result.stopped == "failures"
    failed = [c for c in result.candidates if c.state == "failed"]
    assert len(failed) == 4
    assert all("RuntimeError: boom <inside>" in c.error for c in failed)


def test_some_failures_do_not_stop_the_search(tmp_path: Path) -> None:
    keys = {a.key for a in NB201.sample_many(400, 5)[::3]}
    result = run_to_end(config("nsga2", budget=60), tmp_path / "r", CountingTable(fail_keys=keys))
    assert result.stopped == "budget"
    assert any(c.state == "failed" for c in result.candidates)
    assert all(c.state != "failed" for c in result.front)


def test_constraints_mark_candidates_infeasible_without_training(tmp_path: Path) -> None:
    cfg = config("nsga2", budget=60, constraints={"max_params": 400_000})
    result = run_to_end(cfg, tmp_path / "r")
    infeasible = [c for c in result.candidates if c.state == "infeasible"]
    assert infeasible, "some NB201 cells exceed 0.4M parameters"
    assert all(c.metrics["params"] > 400_000 and "val_accuracy" not in c.metrics for c in infeasible)
    assert all(c.metrics["params"] <= 400_000 for c in result.front)


# -- exact resume ----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["random", "evolution", "nsga2", "rl"])
def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path: Path, strategy: str) -> None:
    objectives = ["accuracy"] if strategy == "evolution" else ["accuracy", "latency"]
    run_to_end(config(strategy, budget=70, objectives=objectives), tmp_path / "straight")
    rng = random.Random(7)
    run = tmp_path / "stopped"
    cfg = config(strategy, budget=70, objectives=objectives)
    session = start(cfg, run, evaluator=CountingTable(interrupt_at=rng.randrange(5, 60)), progress=False, log=lambda s: None)
    with pytest.raises(SearchInterrupted, match="nas resume"):
        try:
            session.run()
        finally:
            session.store.close()
    for _ in range(3):  # interrupted again while resuming
        session = resume(run, evaluator=CountingTable(interrupt_at=rng.randrange(1, 10)), progress=False, log=lambda s: None)
        try:
            session.run()
        except SearchInterrupted:
            pass
        finally:
            session.store.close()
    session = resume(run, evaluator=CountingTable(), progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()
    assert snapshot(run) == snapshot(tmp_path / "straight")
    assert front_ids(run) == front_ids(tmp_path / "straight")


@pytest.mark.parametrize("delay,budget", [(0.01, 150), (0.3, 12)], ids=["fast-evaluations", "slow-evaluations"])
def test_kill_9_at_five_random_moments_then_resume(tmp_path: Path, delay: float, budget: int) -> None:
    """The acceptance test: SIGKILL a seeded single-worker search five times, resume each time;
    the finished run equals an uninterrupted one. An evaluation that takes COMMIT_INTERVAL or
    longer is committed as it finishes, so a kill re-evaluates at most the one that was running;
    faster ones are committed in groups, so a kill re-evaluates at most COMMIT_INTERVAL of them."""
    from nas.search import COMMIT_INTERVAL

    worker = [sys.executable, str(ROOT / "tests" / "resume_worker.py")]
    args = ["nsga2", "3", str(budget), str(delay)]
    straight_log = tmp_path / "straight.log"
    subprocess.run(worker + ["start", str(tmp_path / "straight"), str(straight_log)] + args, check=True, timeout=300)

    run, log = tmp_path / "killed", tmp_path / "killed.log"
    kills = kill_and_resume(args, run, log, 5, random.Random(11))
    assert kills >= 3, "the search finished before it could be killed; slow the worker down"
    assert snapshot(run) == snapshot(tmp_path / "straight")
    assert front_ids(run) == front_ids(tmp_path / "straight")
    # every evaluation is logged before it runs: a key evaluated twice must be one that was
    # running, or finished but not yet committed, when a process was killed
    keys = [line.split()[1] for line in log.read_text().splitlines()]
    straight = [line.split()[1] for line in straight_log.read_text().splitlines()]
    assert sorted(set(keys)) == sorted(set(straight))
    per_kill = 1 if delay >= COMMIT_INTERVAL else int(COMMIT_INTERVAL / delay) + 2
    assert len(keys) - len(set(keys)) <= kills * per_kill
    pids_per_key: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        pid, key = line.split()
        pids_per_key.setdefault(key, set()).add(pid)
    assert all(len(p) <= 1 + kills for p in pids_per_key.values())  # (a kill can land on a re-evaluation again)


# -- the store -------------------------------------------------------------------------------
def test_second_writer_is_refused_while_readers_may_read(tmp_path: Path) -> None:
    run = tmp_path / "r"
    session = start(config("random", budget=5), run, evaluator=CountingTable(), progress=False, log=lambda s: None)
    try:
        with pytest.raises(RunError, match="in use by pid"):
            resume(run, evaluator=CountingTable(), progress=False)
        with RunStore.open(run) as reader:  # read-only: allowed while the writer holds the lock
            assert reader.counts()["complete"] == 0
    finally:
        session.store.close()
    resume(run, evaluator=CountingTable(), progress=False, log=lambda s: None).store.close()  # free again


def test_not_a_run_and_newer_runs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a run directory"):
        RunStore.open(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.db").write_text("not sqlite")
    with pytest.raises(RunError, match="not a nas run database"):
        RunStore.open(tmp_path / "junk")
    run = tmp_path / "r"
    run_to_end(config("random", budget=3), run)
    with sqlite3.connect(run / "run.db") as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    with pytest.raises(RunError, match="newer nas"):
        RunStore.open(run)


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run_to_end(config("random", budget=3), run)
    with pytest.raises(RunError, match="already exists"):
        run_to_end(config("random", budget=3), run)
    assert len(snapshot(run)) >= 3


def test_resume_reports_changed_budget_and_extends_the_run(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run_to_end(config("evolution", budget=20, objectives=["accuracy"]), run)
    said: list[str] = []
    session = resume(run, budget=35, evaluator=CountingTable(), progress=False, log=said.append)
    try:
        session.run()
    finally:
        session.store.close()
    assert any("budget 20 -> 35" in s for s in said)
    assert sum(1 for c in snapshot(run) if c[8] is None) == 35


def test_weights_are_written_atomically_and_pruned_to_the_front(tmp_path: Path) -> None:
    ds = nas.load_dataset("digits")
    space = load_space("mlp")
    result = search(space, data="digits", objectives="accuracy,params", budget=6, run=tmp_path / "r", progress=False,
                    keep_weights="front", max_epochs=2, strategy_options={"population": 4})
    kept = sorted(int(p.stem) for p in (tmp_path / "r" / "weights").glob("*.pt"))
    assert kept == sorted(c.id for c in result.front if not c.source)
    assert not list((tmp_path / "r" / "weights").glob("*.tmp*"))
    assert all(c.test and "test_accuracy" in c.test for c in result.front)
    assert ds.num_classes == 10


def test_bad_configs_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="budget"):
        run_to_end(config("random", budget=0), tmp_path / "a")
    with pytest.raises(UsageError, match="unknown strategy"):
        run_to_end(config("nope", budget=3), tmp_path / "b")
    with pytest.raises(UsageError, match="NB201 cell spaces"):
        start(SearchConfig(space=space_config(load_space("mlp")), data="nb201:cifar10", budget=3), tmp_path / "c", progress=False)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# -- the CLI ---------------------------------------------------------------------------------
def cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = python_env()
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_cli_search_status_resume_on_the_table(tmp_path: Path) -> None:
    run = tmp_path / "r"
    out = cli("search", "--data", "nb201:cifar10", "--objectives", "accuracy,latency", "--budget", "50", "--run", str(run), "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "Pareto front" in out.stdout and "|nor_conv" in out.stdout
    st = cli("status", str(run), "--json")
    data = json.loads(st.stdout)
    assert data["evaluated"] == 50 and data["front"]
    again = cli("resume", str(run), "--budget", "60", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert json.loads(cli("status", str(run), "--json").stdout)["evaluated"] == 60


@pytest.mark.parametrize("args, message", [
    (["search", "--budget", "0"], "positive integer"),
    (["search", "--objectives", "speed"], "unknown objective 'speed'"),
    (["search", "--constraint", "params<=lots"], "bad constraint"),
    (["search", "--strategy", "annealing", "--data", "nb201:cifar10"], "unknown strategy"),
    (["search", "--data", "nb201:cifar11"], "unknown NAS-Bench-201 dataset"),
    (["search", "--data", "missing.npz"], "missing.npz"),
    (["search", "--space", "nope.yaml"], "nope.yaml"),
    (["search", "--time-budget", "soon"], "duration"),
    (["search", "--workers", "2"], "inline backend"),
    (["search", "--bogus"], "unrecognized arguments"),
    (["status", "/nonexistent/run"], "no such run directory"),
    (["resume", "/nonexistent/run"], "no such run directory"),
])
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path, args: list[str], message: str, capsys, monkeypatch) -> None:
    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    extra = "--json" if args[0] == "status" else "--no-progress"
    try:
        code = main([*args, extra])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not list(tmp_path.glob("runs/*/run.db")), "a failed start must not leave a run behind"


def test_cli_error_in_a_real_process(tmp_path: Path) -> None:
    out = cli("search", "--objectives", "speed", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown objective" in out.stderr


# -- issue 11: runs, objectives, durability, status ------------------------------------------------
def size_mb() -> "nas.objectives.Objective":
    return nas.objectives.Objective("size_mb", metric="", direction="min", fn=lambda metrics, arch: metrics["params"] * 4 / 2**20)


def test_readme_objective_example_runs_after_a_bare_import() -> None:
    code = ("import nas; o = nas.objectives.Objective('size_mb', metric='', direction='min', "
            "fn=lambda metrics, arch: metrics['params'] * 4 / 2**20); print(o.value({'params': 2**20}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "4.0"


def test_function_objectives_are_stored_and_read_back_with_the_run(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    run = tmp_path / "r"
    result = search(NB201, data="nb201:cifar10", objectives=["accuracy", size_mb()], strategy="nsga2", budget=40, run=run,
                    progress=False, evaluator=CountingTable(), log=lambda s: None)
    assert len(result.front) > 1
    with nas.open_run(run) as opened:
        assert isinstance(opened, nas.Run)
        assert [(o.name, o.direction) for o in opened.objectives] == [("accuracy", "max"), ("size_mb", "min")]
        assert [c.id for c in opened.front] == [c.id for c in result.front]
        assert opened.best.id == result.best.id and opened.config.budget == 40 and opened.space.name == "nb201"
        assert opened.function_objectives == ["size_mb"] and opened.state() == "finished"
    assert main(["status", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [f["id"] for f in status["front"]] == [c.id for c in result.front]
    assert set(status["front"][0]["objectives"]) == {"accuracy", "size_mb"}
    from nas.report import write_report

    assert "size_mb" in write_report(run, tmp_path / "report")["html"].read_text()

    # a resume needs the function again: refused in one line naming it, or given through the API
    with pytest.raises(UsageError, match=r"size_mb.*nas\.resume\("):
        resume(run, budget=50, evaluator=CountingTable(), progress=False, log=lambda s: None)
    assert main(["resume", str(run), "--budget", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "size_mb" in err[0]
    with pytest.raises(UsageError, match="size_mb"):
        resume(run, objectives=["accuracy", "params"], budget=50, evaluator=CountingTable(), progress=False, log=lambda s: None)
    with resume(run, objectives=["accuracy", size_mb()], budget=50, evaluator=CountingTable(), progress=False, log=lambda s: None) as session:
        again = session.run()
    assert sum(1 for c in again.candidates if c.duplicate_of is None) == 50


def test_strategy_state_is_written_only_when_it_changed(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", {"config": {}})
    writes: list[str] = []
    store.conn.set_trace_callback(lambda sql: writes.append(sql) if "INTO state" in sql else None)
    state = {"strategy": {"rng": [3, "abc", None], "asked": 1}}
    a = store.add("k1", {"x": 1}, states=state)
    store.start(a)
    store.finish(a, "complete", metrics={"val_accuracy": 0.5}, objectives=[0.5], states=state)
    store.add_finished("k1", {"x": 1}, "complete", metrics={"val_accuracy": 0.5}, objectives=[0.5], violation=0.0, error=None,
                       duplicate_of=a, states=state)
    assert len(writes) == 1
    store.add("k2", {"x": 2}, states={"strategy": {"rng": [3, "abd", None], "asked": 2}})
    assert len(writes) == 2
    store.close()
    with RunStore.open(tmp_path / "r") as ro:
        assert ro.state("strategy")["asked"] == 2


def test_duplicate_of_is_an_integer_column_and_format_1_runs_still_open_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "r"
    result = run_to_end(config("evolution", budget=40, objectives=["accuracy"]), run)
    dups = [c for c in result.candidates if c.duplicate_of is not None]
    assert dups and all(isinstance(c.duplicate_of, int) for c in dups)
    with sqlite3.connect(run / "run.db") as db:
        columns = {row[1]: row[2] for row in db.execute("PRAGMA table_info(candidates)")}
        assert columns["duplicate_of"] == "INTEGER" and columns["derived_from"] == "INTEGER" and columns["derivation"] == "TEXT"
        assert "source" not in columns
        assert db.execute("SELECT DISTINCT typeof(duplicate_of) FROM candidates WHERE duplicate_of IS NOT NULL").fetchall() == [("integer",)]
    expected = snapshot(run)

    # turn it into a format-1 run: duplicates as text in `source`, no new columns
    with sqlite3.connect(run / "run.db") as db:
        db.execute("ALTER TABLE candidates ADD COLUMN source TEXT")
        db.execute("UPDATE candidates SET source = 'duplicate of #' || duplicate_of WHERE duplicate_of IS NOT NULL")
        for col in ("duplicate_of", "derived_from", "derivation"):
            db.execute(f"ALTER TABLE candidates DROP COLUMN {col}")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    with nas.open_run(run) as opened:  # read-only, as it is
        assert [(c.id, c.duplicate_of) for c in opened.candidates] == [(c.id, c.duplicate_of) for c in result.candidates]
        assert [c.id for c in opened.front] == [c.id for c in result.front]
    assert snapshot(run) == expected
    with sqlite3.connect(run / "run.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone() == ("1",)
    with resume(run, budget=50, evaluator=CountingTable(), progress=False, log=lambda s: None) as session:
        again = session.run()
    assert sum(1 for c in again.candidates if c.duplicate_of is None) == 50
    with sqlite3.connect(run / "run.db") as db:  # migrated on write-open
        assert db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone() == ("2",)
        assert db.execute("SELECT COUNT(*) FROM candidates WHERE duplicate_of IS NOT NULL").fetchone()[0] >= len(dups)


def test_weights_are_fsynced_before_their_row_commits_and_commits_are_full(tmp_path: Path, monkeypatch) -> None:
    import os

    import torch

    store = RunStore.create(tmp_path / "r", {"config": {}})
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    events: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.conn.set_trace_callback(lambda sql: events.append(("sql", sql.split()[0].upper())))
    cid = store.add("k", {"x": 1})
    events.clear()
    store.finish(cid, "complete", metrics={"val_accuracy": 1.0}, weights={"w": torch.ones(3)})
    synced = [i for i, (kind, what) in enumerate(events) if kind == "fsync"]
    paths = [events[i][1] for i in synced]
    assert paths[0].endswith(".pt") or ".tmp" in paths[0]  # the file itself
    assert paths[1] == str((tmp_path / "r" / "weights").resolve())  # then its directory
    update = next(i for i, (kind, what) in enumerate(events) if kind == "sql" and what == "UPDATE")
    assert synced[1] < update
    store.close()
    assert torch.equal(RunStore.open(tmp_path / "r").load_weights(cid)["w"], torch.ones(3))


def test_run_db_appears_in_wal_mode_with_nothing_of_its_making_left(tmp_path: Path) -> None:
    """run.db is renamed into place already in WAL mode, so it never switches journal mode while a
    reader may hold it open (the switch locks readers out), and the temporary files are gone."""
    import sqlite3

    from nas.store import RunStore

    store = RunStore.create(tmp_path / "r", {"kind": "test"})
    try:
        reader = sqlite3.connect(f"file:{tmp_path / 'r' / 'run.db'}?mode=ro", uri=True, timeout=0.5)
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reader.execute("SELECT value FROM meta WHERE key='kind'").fetchone()[0] == '"test"'
        reader.close()
        assert not [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".run.db.tmp")]
    finally:
        store.close()


def test_creating_a_run_is_one_step_whatever_moment_it_is_killed(tmp_path: Path) -> None:
    """Fork, and in the child kill the process (os._exit) at the N-th line the driver or the store
    executes while creating a run; after each kill the directory is a whole run or none."""
    import os

    watched = {str(ROOT / "nas" / name) for name in ("store.py", "search.py", "runs.py")}
    evaluator = CountingTable()

    def child(run: Path, kill_at: int, count_file: Path | None) -> None:
        seen = [0]

        def local(frame, event, arg):
            if event == "line":
                seen[0] += 1
                if seen[0] == kill_at:
                    os._exit(9)
            return local

        def tracer(frame, event, arg):
            return local if frame.f_code.co_filename in watched else None

        sys.settrace(tracer)
        try:
            start(config("random", budget=5), run, evaluator=evaluator, progress=False, log=lambda s: None).store.close()
        finally:
            sys.settrace(None)
        if count_file is not None:
            count_file.write_text(str(seen[0]))
        os._exit(0)

    def fork(run: Path, kill_at: int, count_file: Path | None = None) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                child(run, kill_at, count_file)
            finally:
                os._exit(1)
        return os.waitpid(pid, 0)[1] >> 8

    count = tmp_path / "count"
    assert fork(tmp_path / "whole", 10**9, count) == 0
    lines = int(count.read_text())
    assert lines > 20
    for i, kill_at in enumerate(sorted({1 + k * lines // 24 for k in range(24)})):
        run = tmp_path / f"k{i}"
        assert fork(run, kill_at) == 9
        if (run / "run.db").exists():
            with RunStore.open(run) as store:
                meta = store.all_meta()
            assert {"config", "objectives", "space_fingerprint", "input_shape", "classes"} <= set(meta), (kill_at, sorted(meta))
            resume(run, evaluator=evaluator, progress=False, log=lambda s: None).store.close()
        else:
            start(config("random", budget=5), run, evaluator=evaluator, progress=False, log=lambda s: None).store.close()


def test_a_space_that_does_not_fit_the_data_leaves_nothing_and_names_the_space_that_fits(tmp_path: Path, capsys) -> None:
    import numpy as np

    from nas.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "flat.npz", x=rng.normal(size=(120, 10)).astype("float32"), y=rng.integers(0, 3, 120))
    run = tmp_path / "r"
    code = main(["search", "--space", "cnn", "--data", str(tmp_path / "flat.npz"), "--budget", "3", "--epochs", "1", "--run", str(run), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--space mlp" in err[0]
    assert not run.exists()
    (tmp_path / "empty").mkdir()  # a directory that was there before is left as it was
    assert main(["search", "--space", "cnn", "--data", str(tmp_path / "flat.npz"), "--budget", "3", "--run", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert list((tmp_path / "empty").iterdir()) == []


def test_budget_counts_trained_networks_and_infeasible_proposals_do_not_use_it_up(tmp_path: Path) -> None:
    ev = CountingTable()
    result = run_to_end(config("random", budget=8, constraints={"max_params": 300_000}), tmp_path / "r", ev)
    distinct = [c for c in result.candidates if c.duplicate_of is None]
    infeasible = [c for c in distinct if c.state == "infeasible"]
    trained = [c for c in distinct if c.state in ("complete", "failed")]
    assert infeasible, "some NB201 cells exceed 0.3M parameters"
    assert len(trained) == 8 and result.stopped == "budget"
    with nas.open_run(tmp_path / "r") as opened:
        assert sum(1 for c in opened.candidates if c.state == "infeasible" and c.duplicate_of is None) == len(infeasible)


def test_a_space_where_nothing_is_feasible_still_ends_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    session = start(config("random", budget=8, constraints={"max_params": 10}), tmp_path / "r", evaluator=CountingTable(),
                    progress=False, log=said.append)
    with session:
        result = session.run()
    assert result.stopped == "infeasible" and not result.front
    assert sum(1 for c in result.candidates if c.state == "infeasible" and c.duplicate_of is None) == 100
    assert any("broke a constraint known before training" in s and "max_params 10" in s for s in said)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert proc.poll() is None, "the search process ended early"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_status_tells_a_live_run_from_a_dead_one_and_kill_9_sessions_count_their_time(tmp_path: Path, capsys) -> None:
    import signal

    from nas.cli import main

    run, log = tmp_path / "r", tmp_path / "log"
    worker = [sys.executable, str(ROOT / "tests" / "resume_worker.py")]
    args = [str(run), str(log), "nsga2", "1", "200", "0.3"]

    def status() -> dict:
        assert main(["status", str(run), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    proc = subprocess.Popen(worker + ["start"] + args, env=python_env())
    try:
        _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, proc)
        live = status()
        assert live["state"] == "running" and live["writer_pid"] == proc.pid and live["stopped"] is None
        assert live["elapsed_s"] > 0.5 and live["resume"] is None
        assert live["running"] and not live["to_evaluate_again"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    dead = status()
    assert dead["state"] == "stopped" and dead["stopped"] == "killed" and dead["writer_pid"] is None
    assert dead["resume"] == f"nas resume {run}" and dead["to_evaluate_again"] and not dead["running"]
    assert dead["elapsed_s"] >= 0.5  # saved with the finished candidates, though the session never ended cleanly
    assert main(["status", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"resume with: nas resume {run}" in text and "killed" in text and "time       0 s" not in text

    # SIGTERM stops like Ctrl-C: saved, and said so
    proc = subprocess.Popen(worker + ["resume"] + args, env=python_env(), stderr=subprocess.PIPE, text=True)
    try:
        before = len(log.read_text().splitlines())
        _wait_for(lambda: len(log.read_text().splitlines()) >= before + 2, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "terminated (SIGTERM)" in err and f"Resume with: nas resume {run}" in err
    stopped = status()
    assert stopped["state"] == "stopped" and stopped["stopped"] == "terminated" and stopped["elapsed_s"] > dead["elapsed_s"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_cli_stopped_by_a_signal_is_saved_and_not_an_error(tmp_path: Path, signame: str) -> None:
    import signal

    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--space", "mlp", "--data", "digits", "--epochs", "40",
                             "--patience", "40", "--budget", "30", "--run", str(run), "--no-progress"],
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test run started in the background (`.ci/run &`) inherits SIGINT ignored, and so
                            # would the search: give it the default disposition a terminal's Ctrl-C meets
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def training() -> bool:  # a candidate running and an epoch done: past the first imports of torch
            if not (run / "run.db").exists():
                return False
            with RunStore.open(run) as store:
                running = [c.id for c in store.candidates(["running"])]
                return bool(running) and any(store.curve(cid) for cid in running)
        _wait_for(training, proc)
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    sig = getattr(signal, signame)
    assert proc.returncode == 128 + sig, (proc.returncode, out[-800:], err)
    assert "error" not in err and "Traceback" not in err
    assert f"Resume with: nas resume {run}" in err
    with RunStore.open(run) as store:
        assert store.meta("stopped") == ("terminated" if signame == "SIGTERM" else "interrupted")


def test_a_given_evaluator_must_share_the_configs_training_options(tmp_path: Path) -> None:
    """config.train is recorded with the run; an evaluator given to `start` trains with its own
    options, so a config.train it does not share is refused (it once let a benchmark record
    max_epochs 3 while every candidate trained the space's 10), and nothing is written."""
    from nas.evaluators import TrainingEvaluator

    config = SearchConfig(space=space_config(load_space("mlp")), data="digits", budget=2, train={"max_epochs": 3})
    with pytest.raises(UsageError, match=r"max_epochs=3 \(the evaluator: None\)"):
        start(config, tmp_path / "r", evaluator=TrainingEvaluator("digits", device="cpu"), progress=False)
    assert not (tmp_path / "r").exists()
    session = start(config, tmp_path / "ok", evaluator=TrainingEvaluator("digits", device="cpu", max_epochs=3), progress=False)
    try:
        result = session.run()
    finally:
        session.store.close()
    assert len(result.candidates) == 2 and all(c.metrics["epochs"] <= 3 for c in result.candidates)
