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

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):  # type: ignore[override]
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.calls.append(arch.key)
        if arch.key in self.fail_keys:
            return Evaluation("failed", {}, "simulated failure")
        return super().evaluate(space, arch, seed, constraints)


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


@pytest.mark.parametrize("delay,budget", [(0.01, 150), (0.12, 24)], ids=["fast-evaluations", "slow-evaluations"])
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
    assert all(len(p) <= (2 if delay >= COMMIT_INTERVAL else 1 + kills) for p in pids_per_key.values())


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
