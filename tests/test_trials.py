"""nas trials, nas runs, the Run API's trials, learning curves in the store, terminal tables."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nas
from nas import trials as trialmod
from nas.store import RunStore
from nas.textfmt import distinguish, table

from conftest import ROOT, python_env


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=python_env(COLUMNS="100"),
                          cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished NB201-table run (random search, 40 distinct cells, duplicates included)."""
    run = tmp_path_factory.mktemp("trials") / "nb"
    nas.search("nb201", data="nb201:cifar10", strategy="random", budget=40, objectives="accuracy,params", run=run, progress=False)
    return run


def test_csv_round_trips_every_candidate(table_run: Path) -> None:
    out = cli("trials", str(table_run), "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    with nas.open_run(table_run) as run:
        cands = run.candidates
        cols = trialmod.columns(run.objectives)
    assert [int(r["id"]) for r in rows] == [c.id for c in cands]
    assert list(rows[0]) == cols
    back = trialmod.read_csv(out.stdout)
    for r, c in zip(back, cands):
        assert r["state"] == c.state and r["key"] == c.key
        assert r["arch"] == c.arch
        assert r["obj_accuracy"] == pytest.approx(c.objectives[0])
        assert r["params"] == c.metrics["params"]
        assert (r["duplicate_of"] is not None) == (c.duplicate_of is not None)
        if r["duplicate_of"] is not None:
            assert r["source"] == f"duplicate of #{r['duplicate_of']}"


def test_trials_json_filters_sorts_limits(table_run: Path) -> None:
    out = cli("trials", str(table_run), "--json", "--state", "complete", "--sort=-obj_accuracy", "--limit", "5")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 5 and all(r["state"] == "complete" for r in rows)
    accs = [r["obj_accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    with nas.open_run(table_run) as run:
        best = max(c.objectives[0] for c in run.candidates if c.state == "complete")
        assert accs[0] == pytest.approx(best)
        # the Run API gives the same rows
        assert [r["id"] for r in run.trials(states=["complete"], sort="-obj_accuracy", limit=5)] == [r["id"] for r in rows]


def test_trials_bad_input_is_one_line(table_run: Path, tmp_path: Path) -> None:
    for args, words in ((["trials", str(tmp_path / "nope")], "no such run"), (["trials", str(table_run), "--sort", "bogus"], "no column"),
                        (["trials", str(table_run), "--state", "done"], "unknown state")):
        out = cli(*args)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_table_text_fits_the_terminal(table_run: Path) -> None:
    out = cli("trials", str(table_run), "--limit", "8")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 10 and max(len(x) for x in lines) <= 100
    # numbers are never cut: the params column shows every digit
    with nas.open_run(table_run) as run:
        first = run.candidates[0]
    assert f"{first.metrics['params']:,}" in lines[2]


def test_table_cuts_or_wraps_only_the_flexible_column() -> None:
    rows = [[1, "123456789", "x" * 80]]
    text = table(rows, ["id", "params", "architecture"], "rrl", width=40)
    assert max(len(x) for x in text.splitlines()) <= 40 and "123456789" in text and "..." in text
    wrapped = table(rows, ["id", "params", "architecture"], "rrl", width=40, overflow="wrap")
    assert max(len(x) for x in wrapped.splitlines()) <= 40 and wrapped.count("x") == 80
    assert table(rows, ["id", "params", "architecture"], "rrl", width=None).splitlines()[2].endswith("x" * 80)


def test_summaries_say_what_they_omit() -> None:
    out = distinguish(["dense64 | adam", "dense64 | adam", "dense32"], [{"wd": 0.0, "u": 64}, {"wd": 0.001, "u": 64}, {"wd": 0.0}])
    assert out == ["dense64 | adam [wd=0.0]", "dense64 | adam [wd=0.001]", "dense32"]
    space = nas.load_space("mlp")
    arch = space.sample(3)
    values = {**dict(arch), "train.weight_decay": 0.001}
    text = trialmod.Summaries(space)("k", values)
    assert "weight_decay 0.001" in text


def test_run_api_and_dataframe(table_run: Path) -> None:
    with nas.open_run(table_run) as run:
        rows = run.trials()
        assert len(rows) == len(run.candidates) and rows[0].keys() == set(trialmod.columns(run.objectives))
        assert run.best is not None and run.front and [o.name for o in run.objectives] == ["accuracy", "params"]
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(nas.errors.NasError, match="pandas"):
                run.to_dataframe()
        else:
            df = run.to_dataframe()
            assert len(df) == len(rows) and "obj_accuracy" in df.columns


def test_curves_are_kept_and_replaced(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "r", {"config": {}})
    cid = store.add("k", {"a": 1})
    store.start(cid, "inline")
    for e in (1, 2, 3):
        store.record_epoch(cid, {"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_accuracy": 0.1 * e, "lr": 0.1})
    assert store.current_epochs() == {cid: 3}
    store.record_epoch(cid, {"epoch": 1, "train_loss": 9.0})  # evaluated again after a crash: starts over
    assert [r["epoch"] for r in store.curve(cid)] == [1] and store.curve(cid)[0]["train_loss"] == 9.0
    store.set_curve(cid, [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6, "rung": 1}])
    assert store.curve(cid) == [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6, "rung": 1}]
    store.close()


def test_training_run_keeps_every_epoch(tmp_path: Path) -> None:
    heard = []
    result = nas.search("mlp", data="digits", budget=2, objectives="accuracy", run=tmp_path / "r", progress=False, max_epochs=3)
    with RunStore.open(result.run) as store:
        for c in store.candidates():
            curve = store.curve(c.id)
            heard.append(len(curve))
            assert [r["epoch"] for r in curve] == list(range(1, c.metrics["epochs"] + 1))
            assert all(0 <= r["val_accuracy"] <= 1 and r["train_loss"] > 0 for r in curve)
    assert heard and all(n >= 1 for n in heard)


def test_inline_executor_passes_epochs_only_to_evaluators_that_take_them() -> None:
    from nas.evaluators import Evaluation
    from nas.executors import InlineExecutor, takes_epochs

    class Fake:
        def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):
            for e in (1, 2):
                on_epoch({"epoch": e, "val_accuracy": e / 10})
            return Evaluation("complete", {"val_accuracy": 0.2})

    class NoEpochs:
        def evaluate(self, space, arch, seed=0, constraints=None):
            return Evaluation("complete", {})

    got = []
    ex = InlineExecutor(Fake(), on_epoch=lambda cid, rec: got.append((cid, rec["epoch"])))
    space = nas.load_space("mlp")
    ex.submit(7, space, space.sample(0), 0, {})
    assert got == [(7, 1), (7, 2)] and ex.wait()[0][1].ok
    assert not takes_epochs(NoEpochs())
    InlineExecutor(NoEpochs(), on_epoch=lambda cid, rec: got.append(cid)).submit(8, space, space.sample(0), 0, {})


@pytest.mark.slow
def test_runs_tells_running_from_stopped(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    finished = runs / "done"
    nas.search("nb201", data="nb201:cifar10", strategy="random", budget=5, run=finished, progress=False)
    live = runs / "live"
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--space", "mlp", "--data", "digits", "--budget", "200",
                             "--epochs", "30", "--run", str(live), "--no-progress"], env=python_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        state = None
        while time.time() < deadline:
            out = cli("runs", str(runs), "--json")
            recs = {Path(r["run"]).name: r for r in json.loads(out.stdout)}
            state = recs.get("live", {}).get("state")
            if state == "running":
                break
            time.sleep(0.5)
        assert state == "running", recs
        assert recs["live"]["pid"] == proc.pid and recs["done"]["state"] == "finished"
        text = cli("runs", str(runs)).stdout
        assert "running (pid" in text and "finished" in text
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    recs = {Path(r["run"]).name: r for r in json.loads(cli("runs", str(runs), "--json").stdout)}
    assert recs["live"]["state"] == "stopped" and recs["live"]["pid"] is None
    # nas status with no RUN shows the latest run (the killed one changed last)
    out = subprocess.run([sys.executable, "-m", "nas.cli", "status"], capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and "live" in out.stdout, out.stderr


@pytest.mark.slow
def test_worker_processes_report_each_epoch_as_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    heard, replaced = [], []
    real = RunStore.record_epoch
    monkeypatch.setattr(RunStore, "record_epoch", lambda self, cid, rec: (heard.append((cid, rec["epoch"])), real(self, cid, rec))[1])
    monkeypatch.setattr(RunStore, "set_curve", lambda self, cid, hist: replaced.append(cid))
    result = nas.search("mlp", data="digits", budget=2, objectives="accuracy", run=tmp_path / "r", progress=False, max_epochs=2,
                        backend="process", workers=1)
    with RunStore.open(result.run) as store:
        for c in store.candidates():
            assert [r["epoch"] for r in store.curve(c.id)] == [1, 2]
            assert [e for cid, e in heard if cid == c.id] == [1, 2]
    assert replaced == []  # every epoch came over the pipe while it ran: nothing to fill in at the end


def test_spaces_show_wraps_and_shows_when() -> None:
    out = cli("spaces", "show", "cnn")  # COLUMNS=100
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(x) for x in lines) <= 100
    assert any("when:" in x for x in lines) and "layers" in out.stdout and "- conv" in out.stdout


def test_spaces_sample_is_readable_and_json_is_raw() -> None:
    out = cli("spaces", "sample", "mlp", "--n", "2")
    assert out.returncode == 0 and "dense" in out.stdout and "body[0]" not in out.stdout and '"' not in out.stdout
    raw = json.loads(cli("spaces", "sample", "mlp", "--n", "2", "--json").stdout)
    assert len(raw) == 2 and "body[0].repeat.times" in raw[0]["arch"] and raw[0]["summary"]


def test_train_prints_the_summary_not_the_decisions() -> None:
    out = cli("train", "mlp", "--arch", "random:1", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    arch_line = next(x for x in out.stdout.splitlines() if x.startswith("arch"))
    assert "dense" in arch_line and "body[0]" not in arch_line and len(arch_line) < 300
