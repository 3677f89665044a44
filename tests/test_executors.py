"""The parallel executors: the same searches on the `process` pool and on a local Ray, a worker
killed in the middle of a search, the driver killed and the run resumed, latency timed with the
device held exclusively, and the backend options' errors."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import python_env
from nas.errors import NasError, UsageError
from nas.search import SearchConfig, resume, search, space_config, start
from nas.space import SearchSpace, load_space
from nas.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
NB201 = load_space("nb201")
HELPER = "tests.executor_helpers:make"
WORKER = r"process:[01](/[01])? \(pid \d+(, cuda:\d+)?\)"  # the device is named when it is a GPU; /N: a thread of a GPU-sharing process


@pytest.fixture(autouse=True)
def importable_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers import tests.executor_helpers by name: the repository root must be on the path
    (spawned processes inherit sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT))


def nb201_search(run: Path, backend: str, budget: int = 40, **options: Any):
    return search(NB201, data="nb201:cifar10", objectives="accuracy,latency", strategy="nsga2", budget=budget, seed=3, run=run,
                  progress=False, workers=2, backend=backend, strategy_options={"population": 8},
                  backend_options={"lock_dir": str(run.parent / "locks"), **options})


def check_run(run: Path, budget: int) -> list:
    """Every candidate recorded and finished, ids without gaps, no architecture evaluated twice."""
    with RunStore.open(run) as store:
        cands = store.candidates()
    assert [c.id for c in cands] == list(range(1, len(cands) + 1))
    assert all(c.state in ("complete", "infeasible") for c in cands), [(c.id, c.state, c.error) for c in cands if c.state not in ("complete", "infeasible")]
    evaluated = [c.key for c in cands if c.source is None]
    assert len(evaluated) == len(set(evaluated)) == budget
    return cands


def logged(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def check_killed_candidate_ran_again(run: Path, log: Path) -> None:
    killed_pid, killed_key = marker_of(log)
    runs = [pid for pid, key in logged(log) if key == killed_key]
    assert killed_pid in runs and len(runs) == 2 and runs[0] != runs[1], runs
    with RunStore.open(run) as store:
        cand = next(c for c in store.candidates() if c.key == killed_key and c.source is None)
    assert cand.state == "complete" and killed_pid not in (cand.worker or "")


def marker_of(log: Path) -> tuple[str, str]:
    from tests.executor_helpers import marker

    pid, key = marker(log).read_text().split()
    return pid, key


# -- process pool ------------------------------------------------------------------------------
def test_process_backend_runs_the_search_with_two_workers(tmp_path: Path) -> None:
    result = nb201_search(tmp_path / "r", "process")
    assert result.stopped == "budget" and result.front
    cands = check_run(tmp_path / "r", 40)
    workers = {c.worker for c in cands if c.source is None}
    assert len(workers) == 2 and all(re.fullmatch(WORKER, w) for w in workers), workers
    assert all(c.test and "test_accuracy" in c.test for c in result.front)


def test_process_backend_trains_real_networks(tmp_path: Path) -> None:
    result = search("mlp", data="digits", objectives="accuracy,latency", budget=6, run=tmp_path / "r", progress=False, workers=2,
                    backend="process", device="cpu", max_epochs=2, strategy_options={"population": 4},
                    backend_options={"lock_dir": str(tmp_path / "locks")})
    cands = check_run(tmp_path / "r", 6)
    done = [c for c in cands if c.source is None and c.state == "complete"]
    assert done and all(c.metrics["epochs"] >= 1 and c.metrics["latency_ms"] > 0 for c in done)
    assert max(c.metrics["val_accuracy"] for c in done) > 0.6
    kept = sorted(int(p.stem) for p in (tmp_path / "r" / "weights").glob("*.pt"))
    assert kept == sorted(c.id for c in done)  # weights came back from the workers
    assert all(c.test and "test_accuracy" in c.test for c in result.front)
    assert (tmp_path / "locks" / "cpu.lock").exists()


@pytest.mark.parametrize("share", ["process", "thread"])
def test_process_worker_killed_mid_search_is_replaced_and_its_candidate_evaluated_again(tmp_path: Path, share: str) -> None:
    """With share=thread both workers are threads of the killed process: what either had in
    flight is evaluated again, and the store still has every candidate once."""
    log = tmp_path / "evals.log"
    said: list[str] = []
    config = SearchConfig(space=space_config(NB201), data="nb201:cifar10", objectives=["accuracy", "latency"], strategy="nsga2",
                          strategy_options={"population": 8}, budget=30, seed=4, workers=2, backend="process",
                          backend_options={"evaluator_factory": HELPER, "lock_dir": str(tmp_path / "locks"), "share": share,
                                           "factory_options": {"log": str(log), "kill_after": 6, "delay": 0.02}})
    session = start(config, tmp_path / "r", progress=False, log=said.append)
    try:
        assert session.run().stopped == "budget"
    finally:
        session.store.close()
    check_run(tmp_path / "r", 30)
    check_killed_candidate_ran_again(tmp_path / "r", log)
    assert any("died (killed by SIGKILL)" in s and "evaluating it again on process:" in s for s in said), said


def test_workers_sharing_one_process_as_threads_train_real_networks(tmp_path: Path) -> None:
    """`share=thread` (what `auto` does on a GPU): both workers are threads of one process; the
    data is loaded once, latency is timed while the other thread steps aside (nas.gate)."""
    result = search("mlp", data="digits", objectives="accuracy,latency", budget=6, run=tmp_path / "r", progress=False, workers=2,
                    backend="process", device="cpu", max_epochs=2, strategy_options={"population": 4},
                    backend_options={"lock_dir": str(tmp_path / "locks"), "share": "thread"})
    cands = check_run(tmp_path / "r", 6)
    done = [c for c in cands if c.source is None and c.state == "complete"]
    assert len(done) == 6 and all(c.metrics["latency_ms"] > 0 for c in done)
    workers = {c.worker for c in cands if c.source is None}
    assert all(re.fullmatch(r"process:0/[01] \(pid \d+\)", w) for w in workers), workers
    assert len({re.search(r"pid (\d+)", w).group(1) for w in workers}) == 1  # type: ignore[union-attr]
    assert max(c.metrics["val_accuracy"] for c in done) > 0.6
    assert all(c.test and "test_accuracy" in c.test for c in result.front)


def test_process_layout() -> None:
    from nas.executors import process_layout

    gpus = ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert process_layout(gpus) == [("cuda:0", 2), ("cuda:1", 2)]
    assert process_layout(gpus, "process") == [(d, 1) for d in gpus]
    assert process_layout(["cpu", "cpu"]) == [("cpu", 1), ("cpu", 1)]
    assert process_layout(["cpu", "cpu"], "thread") == [("cpu", 2)]
    with pytest.raises(UsageError, match="share must be auto, thread or process"):
        process_layout(["cpu"], "fibers")


@pytest.mark.parametrize("train, options, mode", [
    ({}, {}, "auto"),
    ({"cuda_graph": False}, {}, "process"),  # eager training: threads would queue on the GIL
    ({"compile": True}, {}, "process"),
    ({"cuda_graph": False}, {"share": "thread"}, "thread"),  # what the user says wins
])
def test_share_mode_follows_how_training_runs(train: dict, options: dict, mode: str) -> None:
    from nas.executors import share_mode

    config = SearchConfig(space=space_config(NB201), data="nb201:cifar10", workers=4, backend="process", train=train, backend_options=options)
    assert share_mode(config) == mode


def test_cli_no_cuda_graph_reaches_the_run_config(tmp_path: Path) -> None:
    from nas import cli

    assert cli.main(["search", "--space", "mlp", "--budget", "1", "--epochs", "1", "--no-cuda-graph", "--no-progress",
                     "--run", str(tmp_path / "r")]) == 0
    with RunStore.open(tmp_path / "r") as store:
        assert store.meta("config")["train"]["cuda_graph"] is False


def test_a_worker_that_cannot_build_its_evaluator_stops_the_search_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(NasError, match=r"worker process:\d(/\d)? \(pid \d+(, cuda:\d+)?\) could not start: ValueError: no data here"):
        nb201_search(tmp_path / "r", "process", evaluator_factory="tests.executor_helpers:broken")
    with RunStore.open(tmp_path / "r") as store:
        assert {c.state for c in store.candidates()} == {"running"}  # evaluated again on resume


def test_a_proposal_whose_twin_is_in_flight_waits_for_it(tmp_path: Path) -> None:
    """Four architectures, two workers, random proposals: a proposal of a key being evaluated
    right now is answered from the store once that evaluation is in, never evaluated again."""
    tiny = SearchSpace.from_dict({"name": "tiny", "input": [64], "classes": 10, "body": [{"dense": {"units": [8, 16, 32, 64]}}]})
    log = tmp_path / "evals.log"
    search(tiny, data="digits", strategy="random", budget=4, seed=0, run=tmp_path / "r", progress=False, workers=2, backend="process",
           backend_options={"evaluator_factory": "tests.executor_helpers:make_instant", "lock_dir": str(tmp_path / "locks"),
                            "factory_options": {"log": str(log), "delay": 0.3}},
           strategy_options={"retries": 0})  # plain random: it re-proposes keys in flight (the default redraws them)
    cands = check_run(tmp_path / "r", 4)
    keys = [key for _, key in logged(log)]
    assert len(keys) == len(set(keys)) == 4
    by_id = {c.id: c for c in cands}
    deferred = [c for c in cands if c.source and c.created < by_id[int(c.source.split("#")[1])].finished]
    assert deferred, "no proposal came while its twin was being evaluated"


def test_parallel_run_killed_then_resumed_evaluates_what_was_in_flight(tmp_path: Path) -> None:
    run, log = tmp_path / "r", tmp_path / "evals.log"
    driver = subprocess.Popen([sys.executable, str(ROOT / "tests" / "executor_helpers.py"), "start", str(run), str(log), "30"])
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 8) and driver.poll() is None:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    with RunStore.open(run) as store:
        running = [c for c in store.candidates() if c.state == "running"]
    assert running and all(re.fullmatch(WORKER, c.worker) for c in running)
    status = subprocess.run([sys.executable, "-m", "nas.cli", "status", str(run)], capture_output=True, text=True, timeout=60,
                            env=python_env())
    # the driver is dead: status says so, where each candidate was running, and how to resume
    assert f"was running #{running[0].id} on {running[0].worker} when the search stopped" in status.stdout, status.stdout
    assert f"resume with: nas resume {run}" in status.stdout
    # the driver's workers do not outlive it
    pids = {int(re.search(r"pid (\d+)", c.worker).group(1)) for c in running}  # type: ignore[union-attr]
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)

    before = len(logged(log))
    session = resume(run, progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()
    check_run(run, 30)
    again = {key for _, key in logged(log)[before:]}
    assert {c.key for c in running} <= again


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


def test_cli_search_with_process_workers(tmp_path: Path) -> None:
    run = tmp_path / "r"
    env = python_env()
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--data", "nb201:cifar10", "--budget", "20", "--workers", "2",
                          "--backend", "process", "--run", str(run), "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(subprocess.run([sys.executable, "-m", "nas.cli", "status", str(run), "--json"], capture_output=True, text=True,
                                     env=env, timeout=60).stdout)
    assert data["evaluated"] == 20 and not data["running"]


# -- latency is timed alone on its device ------------------------------------------------------
HOLD = """
import sys, time
from nas.devices import device_access, use_device_locks
use_device_locks(sys.argv[1])
with device_access("cpu", exclusive=False):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    print(time.time(), flush=True)
"""


def test_latency_waits_for_training_in_another_process(tmp_path: Path) -> None:
    """Training holds its device shared, a latency measurement exclusively, across processes."""
    import torch

    from nas import devices, measure

    trainer = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "1.0"], stdout=subprocess.PIPE, text=True,
                               env=python_env())
    assert trainer.stdout is not None and trainer.stdout.readline().strip() == "holding"
    devices.use_device_locks(tmp_path)
    try:
        lat = measure.measure_latency(torch.nn.Linear(4, 2), (4,), runs=5, warmup=1)
        timed_at = time.time()
    finally:
        devices.use_device_locks(None)
    released = float(trainer.stdout.readline())
    trainer.wait(timeout=30)
    assert lat.median_ms > 0 and timed_at >= released


def test_a_waiting_measurement_keeps_new_trainers_out(tmp_path: Path) -> None:
    from nas import devices

    devices.use_device_locks(tmp_path)
    order: list[str] = []
    try:
        with devices.device_access("cpu", exclusive=False):
            timer = threading.Thread(target=lambda: _hold(order, "latency", exclusive=True))
            timer.start()
            time.sleep(0.3)  # the measurement now waits at the gate
            trainer = threading.Thread(target=lambda: _hold(order, "training", exclusive=False))
            trainer.start()
            time.sleep(0.3)
            assert order == []
        timer.join(10)
        trainer.join(10)
    finally:
        devices.use_device_locks(None)
    assert order == ["latency", "training"]


def _hold(order: list[str], what: str, exclusive: bool) -> None:
    from nas import devices

    with devices.device_access("cpu", exclusive=exclusive):
        order.append(what)
        time.sleep(0.1)


# -- options and errors ------------------------------------------------------------------------
@pytest.mark.parametrize("backend, options, message", [
    ("warp", {}, "unknown backend 'warp'"),
    ("process", {"adress": "auto"}, "unknown backend option(s) adress"),
    ("process", {"address": "auto"}, "--address is for --backend ray"),
    ("process", {"max_retries": -1}, "max_retries must be"),
    ("process", {"share": "fibers"}, "share must be auto, thread or process"),
    ("ray", {"share": "thread"}, "--share is for --backend process"),
    ("process", {"evaluator_factory": "tests.executor_helpers"}, "package.module:function"),
    ("process", {"evaluator_factory": "tests.no_such_module:make"}, "cannot be loaded"),
])
def test_bad_backend_settings_are_usage_errors(tmp_path: Path, backend: str, options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        nb201_search(tmp_path / "r", backend, **options)
    assert not (tmp_path / "r").exists()


def test_ray_missing_gives_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=re.escape("pip install 'nas[ray]'")):
        nb201_search(tmp_path / "r", "ray")


# -- Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the module, with every file it writes in a temporary directory."""
    ray = pytest.importorskip("ray")
    home = tempfile.mkdtemp(prefix="nasray")  # short: Ray's socket paths must fit in 107 bytes
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("HOME", home), ("RAY_TMPDIR", home), ("RAY_AUTH_MODE", "disabled"),
                            ("PYTHONPATH", python_env()["PYTHONPATH"])):
            mp.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=home)
        try:
            yield ray
        finally:
            ray.shutdown()
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def test_ray_backend_runs_the_search_with_two_workers(tmp_path: Path, local_ray: Any) -> None:
    result = nb201_search(tmp_path / "r", "ray")
    assert result.stopped == "budget" and result.front
    cands = check_run(tmp_path / "r", 40)
    workers = {c.worker for c in cands if c.source is None}
    assert all(re.fullmatch(r"ray:\S+:\d+( \(gpu [\d,]+\))?", w) for w in workers), workers
    assert local_ray.is_initialized()  # a Ray the search did not start is left running


def test_ray_worker_killed_mid_search_is_retried(tmp_path: Path, local_ray: Any) -> None:
    log = tmp_path / "evals.log"
    nb201_search(tmp_path / "r", "ray", budget=30, evaluator_factory=HELPER, factory_options={"log": str(log), "kill_after": 6, "delay": 0.02})
    check_run(tmp_path / "r", 30)
    check_killed_candidate_ran_again(tmp_path / "r", log)


def test_ray_worker_that_cannot_build_its_evaluator_stops_the_search_with_the_reason(tmp_path: Path, local_ray: Any) -> None:
    with pytest.raises(NasError, match=r"worker ray:\S+:\d+( \(gpu [\d,]+\))? could not start: ValueError: no data here"):
        nb201_search(tmp_path / "r", "ray", evaluator_factory="tests.executor_helpers:broken")
