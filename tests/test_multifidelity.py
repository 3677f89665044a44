"""Multi-fidelity evaluation: the table's two fidelities, pause-and-resume training."""

from __future__ import annotations

import pytest

from nas.nb201 import NB201Table
from nas.space import load_space
from nas.tabular import TabularEvaluator


def test_the_table_serves_12_and_200_epochs_of_cifar10_valid():
    table = TabularEvaluator("cifar10")
    assert table.fidelities == (12, 200)
    assert TabularEvaluator("cifar100").fidelities == (12,)
    space = load_space("nb201")
    raw = NB201Table.load()
    low, high = raw.column("c10valid_valid_acc_12ep"), raw.column("c10valid_valid_acc_200ep")
    seen_gain = False
    for s in range(20):
        arch = space.sample(s)
        i = table.index(space, arch)
        default = table.evaluate(space, arch)
        at12 = table.evaluate(space, arch, epochs=12)
        at200 = table.evaluate(space, arch, epochs=200)
        assert default.metrics == at12.metrics  # no epochs asked: the search's 12 epochs, as before
        assert at12.metrics["val_accuracy"] == pytest.approx(float(low[i]) / 100)
        assert at200.metrics["val_accuracy"] == pytest.approx(float(high[i]) / 100)
        assert (at12.metrics["epochs"], at200.metrics["epochs"]) == (12, 200)
        assert table.evaluate(space, arch, epochs=100).metrics["epochs"] == 12  # the largest at most 100
        assert table.evaluate(space, arch, epochs=3).metrics["epochs"] == 12  # none below: the smallest
        seen_gain |= at200.metrics["val_accuracy"] > at12.metrics["val_accuracy"]
    assert seen_gain


# -- pause and resume -----------------------------------------------------------------------------
import io  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nas.data import load_dataset  # noqa: E402
from nas.train import DeviceData, TrainConfig, fit  # noqa: E402


@pytest.fixture(scope="module")
def digits_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield DeviceData(load_dataset("digits", seed=0), "cpu")
    torch.set_num_threads(threads)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.3), nn.Linear(48, 10))


def _through_disk(checkpoint):
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def _same_history(a, b):
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    return drop(a) == drop(b)


@pytest.mark.parametrize("settings", [
    dict(optimizer="adam", schedule="cosine", lr=3e-3),
    dict(optimizer="momentum", schedule="exponential", lr=0.05, gamma=0.8, weight_decay=1e-4),
    dict(optimizer="adagrad", schedule="fixed", lr=0.05, l1=1e-5),
    dict(optimizer="adamw", schedule="cosine", lr=0.05, patience=2),  # a large rate: early stopping in the middle
])
def test_rungs_1_3_9_give_exactly_one_9_epoch_training(digits_cpu, settings):
    settings = {"patience": None, **settings}
    cfg = TrainConfig(device="cpu", epochs=9, batch_size=64, seed=3, **settings)
    one_model = _net()
    one = fit(one_model, digits_cpu, cfg)

    model = _net()
    r1 = fit(model, digits_cpu, cfg, stop_at=1)
    assert r1.epochs == 1 and r1.stop_reason == "paused" and r1.checkpoint is not None and not r1.stopped_early
    resumed = _net(seed=99)  # other initial weights: everything comes from the checkpoint
    r3 = fit(resumed, digits_cpu, cfg, resume=_through_disk(r1.checkpoint), stop_at=3)
    assert r3.epochs == 3
    last = fit(_net(seed=7), digits_cpu, cfg, resume=_through_disk(r3.checkpoint) if r3.checkpoint else None, stop_at=9) \
        if r3.checkpoint is not None else r3
    assert last.checkpoint is None  # nothing left to resume
    assert last.stop_reason == one.stop_reason and last.epochs == one.epochs and last.best_epoch == one.best_epoch
    assert (last.val_accuracy, last.val_loss, last.train_loss) == (one.val_accuracy, one.val_loss, one.train_loss)
    assert _same_history(last.history, one.history)
    assert set(last.state) == set(one.state)
    for k in one.state:
        assert torch.equal(last.state[k], one.state[k]), k
    if settings.get("patience"):
        assert one.stop_reason == "patience" and one.epochs < 9  # the premise: it stopped early


def test_a_deadline_pauses_at_the_next_epoch_boundary(digits_cpu):
    import time

    cfg = TrainConfig(device="cpu", epochs=6, batch_size=64, seed=1, patience=None)
    one = fit(_net(), digits_cpu, cfg)
    first = fit(_net(), digits_cpu, cfg, deadline=time.time())  # already past: one epoch, then pause
    assert first.stop_reason == "deadline" and first.epochs == 1 and first.checkpoint["epoch"] == 1
    rest = fit(_net(), digits_cpu, cfg, resume=first.checkpoint)
    assert rest.stop_reason == "max epochs" and rest.epochs == 6 and rest.val_accuracy == one.val_accuracy
    assert _same_history(rest.history, one.history)
    assert rest.seconds >= first.seconds


def test_resume_refuses_a_checkpoint_of_another_schedule(digits_cpu):
    cfg = TrainConfig(device="cpu", epochs=4, batch_size=64, patience=None)
    r = fit(_net(), digits_cpu, cfg, stop_at=2)
    with pytest.raises(ValueError, match="schedule over 4 epochs, this config has 5"):
        fit(_net(), digits_cpu, TrainConfig(device="cpu", epochs=5, batch_size=64, patience=None), resume=r.checkpoint)
    with pytest.raises(ValueError, match="stop_at must be an epoch after the 2 already trained"):
        fit(_net(), digits_cpu, cfg, resume=r.checkpoint, stop_at=2)


def test_pausing_after_every_epoch_keeps_the_early_stopping_state(digits_cpu):
    cfg = TrainConfig(device="cpu", epochs=12, batch_size=64, seed=0, optimizer="adamw", lr=0.05, patience=2)
    one = fit(_net(), digits_cpu, cfg)
    assert one.stop_reason == "patience" and one.epochs < 12  # the premise
    r = fit(_net(), digits_cpu, cfg, stop_at=1)
    while r.checkpoint is not None:
        r = fit(_net(), digits_cpu, cfg, resume=_through_disk(r.checkpoint), stop_at=r.epochs + 1)
    assert (r.stop_reason, r.epochs, r.best_epoch, r.val_accuracy) == (one.stop_reason, one.epochs, one.best_epoch, one.val_accuracy)
    assert _same_history(r.history, one.history)


def test_the_training_evaluator_trains_in_rungs(digits_cpu):
    from nas.evaluators import TrainingEvaluator

    space = load_space("mlp")
    arch = space.sample(4)
    ev = TrainingEvaluator("digits", device="cpu", max_epochs=9, patience=None)
    one = ev.evaluate(space, arch, seed=5)
    assert one.checkpoint is None and one.metrics["epochs"] == 9
    r1 = ev.evaluate(space, arch, seed=5, epochs=1)
    assert r1.metrics["epochs"] == 1 and r1.metrics["stop_reason"] == "paused"
    assert all(v.device.type == "cpu" for v in r1.checkpoint["model"].values())
    r3 = ev.evaluate(space, arch, seed=5, epochs=3, checkpoint=_through_disk(r1.checkpoint))
    r9 = ev.evaluate(space, arch, seed=5, epochs=9, checkpoint=_through_disk(r3.checkpoint))
    assert r9.checkpoint is None and r9.metrics["epochs"] == 9
    for key in ("val_accuracy", "val_loss", "train_loss", "best_epoch", "params", "flops"):
        assert r9.metrics[key] == one.metrics[key], key
    assert all(torch.equal(r9.state[k], one.state[k]) for k in one.state)


# -- the scheduler in the driver: kill -9 and resume ------------------------------------------------
# This file is also the search process those tests kill (python tests/test_multifidelity.py ...).
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _logged(base: type, log: str, delay: float, epoch_delay: float = 0.0) -> type:
    """`base` logging each rung it starts; `delay` before each rung and `epoch_delay` after each
    epoch stretch the search so that the kills land while it runs (an idle CPU trains the digits
    MLP in milliseconds an epoch); neither changes a result."""

    class Logged(base):  # type: ignore[misc, valid-type]
        def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None, **rung):  # type: ignore[override]
            start = (rung.get("checkpoint") or {}).get("epoch", 0)
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {arch.key} {rung.get('epochs')} {start}\n")
            time.sleep(delay)
            if epoch_delay:
                inner = on_epoch

                def on_epoch(record, inner=inner):  # type: ignore[no-redef]
                    time.sleep(epoch_delay)
                    if inner is not None:
                        inner(record)
            return super().evaluate(space, arch, seed, constraints, on_epoch, **rung)

    return Logged


def _worker(mode: str, run: str, log: str, kind: str) -> None:
    from nas.evaluators import TrainingEvaluator
    from nas.runs import SearchConfig, space_config
    from nas.search import resume, start

    if kind == "table":
        evaluator = _logged(TabularEvaluator, log, 0.12)("cifar10")
        config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy", "params"],
                              strategy="nsga2", strategy_options={"population": 8}, budget=30, seed=2, scheduler="asha", eta=3)
    elif kind == "table-auto":  # the guided default: its predictor learns from the 200-epoch rung once 10 are in
        evaluator = _logged(TabularEvaluator, log, 0.12)("cifar10")
        config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy"],
                              strategy="auto", budget=45, seed=2, scheduler="asha", eta=3)
    else:
        torch.set_num_threads(1)
        train = {"max_epochs": 9, "patience": None}
        evaluator = _logged(TrainingEvaluator, log, 0.05, 0.05)("digits", device="cpu", **train)
        config = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy"], strategy="evolution",
                              strategy_options={"population": 4, "sample": 2}, budget=7, seed=4, device="cpu", train=train,
                              scheduler="hyperband" if kind == "hyperband" else "asha", eta=3)
    if mode == "start":
        session = start(config, run, evaluator=evaluator, progress=False, log=lambda s: None)
    else:
        session = resume(run, evaluator=evaluator, progress=False, log=lambda s: None)
    try:
        session.run()
    finally:
        session.store.close()


def _snapshot(run: Path) -> tuple[list, list]:
    from nas.schedulers import read_rungs
    from nas.store import RunStore

    def plain(metrics):
        return json.dumps({k: v for k, v in (metrics or {}).items() if "seconds" not in k}, sort_keys=True)

    with RunStore.open(run) as store:
        cands = [(c.id, c.key, c.state, plain(c.metrics), c.objectives, c.generation, c.parents, json.dumps(c.test, sort_keys=True))
                 for c in store.candidates()]
        rungs = [(r.cid, r.rung, r.bracket, r.epochs, r.state, r.accuracy, r.cheap, r.final, plain(r.metrics), json.dumps(r.why, sort_keys=True))
                 for r in read_rungs(store)]
    return cands, rungs


def _kill_and_resume(run: Path, log: Path, kind: str, times: int, rng: random.Random, max_delay: float) -> int:
    worker = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    kills, mode = 0, "start"
    for _ in range(times):
        proc = subprocess.Popen(worker + [mode, str(run), str(log), kind], env=env)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and not (log.exists() and f"{proc.pid} " in log.read_text()):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, max_delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        mode = "resume"
    subprocess.run(worker + ["resume", str(run), str(log), kind], check=True, timeout=600, env=env)
    return kills


def _jobs(log: Path) -> list[tuple[str, str, int, int]]:
    out = []
    for line in log.read_text().splitlines():
        pid, key, epochs, start = line.split()
        out.append((pid, key, int(epochs), int(start)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind,times,max_delay", [("table", 4, 1.0), ("table-auto", 4, 1.5), ("digits", 3, 1.0)])  # a digits run ends about 2 s after its first job
def test_kill_9_mid_rung_and_resume_equals_an_uninterrupted_run(tmp_path, kind, times, max_delay):
    """SIGKILL a seeded one-worker scheduled search at random moments (also mid-rung), resume each
    time: the run ends as one that never stopped, and only rungs in flight ran twice, each again
    from the checkpoint of the rung before it."""
    worker = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    straight, straight_log = tmp_path / "straight", tmp_path / "straight.log"
    subprocess.run(worker + ["start", str(straight), str(straight_log), kind], check=True, timeout=600, env=env)
    run, log = tmp_path / "killed", tmp_path / "killed.log"
    kills = _kill_and_resume(run, log, kind, times, random.Random(5), max_delay)
    assert kills >= 2, "the search finished before it could be killed"
    assert _snapshot(run) == _snapshot(straight)
    jobs, want = _jobs(log), _jobs(straight_log)
    assert sorted({j[1:] for j in jobs}) == sorted({j[1:] for j in want})
    # fast jobs (every table lookup, and a first rung trained from the start in under COMMIT_INTERVAL)
    # are committed in groups at most COMMIT_INTERVAL apart (nas.search, ScheduledSearch.run): a kill
    # re-runs the rung in flight and the fast ones that ended since the last commit. Each job here
    # takes at least its logged delay (the table's 0.12 s; digits' 0.05 s before and after its epoch)
    from nas.search import COMMIT_INTERVAL

    shortest = 0.12 if kind.startswith("table") else 0.10
    per_kill = int(COMMIT_INTERVAL / shortest) + 2
    assert len(jobs) - len({j[1:] for j in jobs}) <= kills * per_kill
    rungs = sorted({j[2] for j in want})
    assert len(rungs) >= 2  # the premise: candidates were promoted
    if not kind.startswith("table"):  # (a table keeps no state: every rung is a lookup)
        # a rung past the first is committed as it ends: of those, a kill re-runs only the one in flight
        later = [j[1:] for j in jobs if j[2] != rungs[0]]
        assert len(later) - len(set(later)) <= kills
        for _, _, epochs, start in jobs:  # a rung starts where the rung below it ended
            assert start == (0 if epochs == rungs[0] else rungs[rungs.index(epochs) - 1])
    assert not (run / "checkpoints").exists()  # a finished run keeps no rung checkpoints



# -- the scheduler in the driver, on the table --------------------------------------------------
class _TellingTable(TabularEvaluator):
    """The table, recording each rung asked for."""

    def __init__(self) -> None:
        super().__init__("cifar10")
        self.asked: list[tuple[str, int]] = []

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None, **rung):  # type: ignore[override]
        self.asked.append((arch.key, rung.get("epochs")))
        return super().evaluate(space, arch, seed, constraints, on_epoch, **rung)


def _table_search(tmp_path, name="r", **kw):
    from nas.runs import SearchConfig, space_config
    from nas.search import start

    settings = dict(objectives=["accuracy", "params"], strategy="nsga2", strategy_options={"population": 8}, budget=40, seed=1,
                    scheduler="asha", eta=3)
    settings.update(kw)
    config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", **settings)
    table = _TellingTable()
    return start(config, tmp_path / name, evaluator=table, progress=False, log=lambda s: None), table


def test_the_in_memory_front_stays_the_front_of_every_candidate_as_rungs_update_them(tmp_path, monkeypatch):
    """A later rung changes a candidate's objectives: the driver's front (added to, or rebuilt when
    a member changed) must be the front of all candidates after every update."""
    from nas import objectives as objmod
    from nas.schedulers import ScheduledSearch

    session, _ = _table_search(tmp_path, budget=80, strategy="random", strategy_options={})
    real = ScheduledSearch._update
    checked = []

    def update(self, cand, arch, ev):
        real(self, cand, arch, ev)
        want = objmod.front(list(self.s._first.values()), self.s.objectives)
        assert sorted(c.id for c in self.s._front) == sorted(c.id for c in want)
        checked.append(cand.id)

    monkeypatch.setattr(ScheduledSearch, "_update", update)
    try:
        session.run()
    finally:
        session.store.close()
    assert len(checked) >= 10


@pytest.mark.parametrize("strategy", ["evolution", "nsga2", "random", "rl"])
def test_every_strategy_is_told_once_per_candidate_at_its_first_rung(tmp_path, strategy):
    from nas.schedulers import read_rungs

    objectives = ["accuracy"] if strategy == "evolution" else ["accuracy", "params"]
    session, table = _table_search(tmp_path, strategy=strategy, objectives=objectives, strategy_options={})
    told = []
    real_tell = session.strategy.tell
    session.strategy.tell = lambda result: (told.append(result), real_tell(result))[1]
    result = session.run()
    rows = read_rungs(session.store)
    session.store.close()
    started = {r.cid for r in rows if r.rung == 0}
    assert len(started) == 40 and result.stopped == "budget"  # the budget counts candidates started
    firsts = {r.cid: r for r in rows if r.rung == 0}
    promoted = {r.cid for r in rows if r.rung == 1}
    assert promoted and {e for _, e in table.asked} == {12, 200}
    mine = [t for t in told if t.id in started]
    assert sorted(t.id for t in mine) == sorted(started)  # once each
    for t in mine:  # told the accuracy at the first rung (12 epochs), not the 200-epoch one recorded later
        assert t.values[0] == pytest.approx(-firsts[t.id].accuracy)
    final = {c.id: c for c in result.candidates}
    for cid in promoted:
        assert final[cid].metrics["rung"] == 1 and final[cid].metrics["epochs"] == 200


@pytest.mark.parametrize("scheduler", ["asha", "hyperband"])
def test_a_strategy_observes_every_completed_rung_at_its_epochs(tmp_path, scheduler):
    """`observe` hears each (candidate, rung) that completed once, with that rung's epochs and its
    accuracy there (12 or 200 on the table), after the one `tell` of the candidate's first rung."""
    from nas.schedulers import read_rungs

    session, _ = _table_search(tmp_path, strategy="auto", scheduler=scheduler, budget=30)
    heard: list[tuple[int, int, float]] = []
    told: set[int] = set()
    real_tell, real_observe = session.strategy.tell, session.strategy.observe
    session.strategy.tell = lambda result: (told.add(result.id), real_tell(result))[1]

    def observe(result, epochs):
        assert result.id in told  # its first rung was told before
        heard.append((result.id, epochs, -result.values[0]))
        real_observe(result, epochs)

    session.strategy.observe = observe
    session.run()
    rows = [r for r in read_rungs(session.store) if r.state == "complete"]
    session.store.close()
    assert sorted(heard) == sorted((r.cid, r.epochs, pytest.approx(r.accuracy)) for r in rows)
    assert {e for _, e, _ in heard} == {12, 200}


@pytest.mark.parametrize("strategy", ["evolution", "nsga2"])
def test_evolution_and_nsga2_members_stand_at_the_highest_rung_they_reached(tmp_path, strategy):
    """Through `observe`, an evolution member's or an NSGA-II individual's result is its latest
    rung's (200 epochs on the table for a promoted one), and the saved state holds the same."""
    from nas.schedulers import read_rungs
    from nas.strategies import make_strategy

    objectives = ["accuracy"] if strategy == "evolution" else ["accuracy", "params"]
    session, _ = _table_search(tmp_path, strategy=strategy, objectives=objectives, strategy_options={"population": 12}, budget=40)
    session.run()
    rows = read_rungs(session.store)
    twin_of = {c.id: c.duplicate_of for c in session.store.candidates() if c.duplicate_of is not None}
    session.store.close()
    highest: dict[int, object] = {}
    for r in sorted((r for r in rows if r.state == "complete"), key=lambda r: r.rung):
        highest[r.cid] = r
    s = session.strategy
    members = list(s.members) if strategy == "evolution" else [ind.result for ind in s._parents + s._new]
    assert members and any(highest[twin_of.get(m.id, m.id)].rung == 1 for m in members)  # some stand at 200 epochs
    for m in members:  # a duplicate (answered from its twin's record) stands where its twin does
        assert -m.values[0] == pytest.approx(highest[twin_of.get(m.id, m.id)].accuracy)
    again = make_strategy(strategy, s.space, len(objectives), 1, **s.options)
    again.load_state_dict(s.state_dict())
    if strategy == "nsga2":
        assert [(i.result.values, i.rank, i.crowding) for i in again._parents] == [(i.result.values, i.rank, i.crowding) for i in s._parents]
    assert [m.values for m in again.members] == [m.values for m in s.members]


@pytest.mark.parametrize("strategy", ["evolution", "nsga2"])
def test_a_duplicate_stands_where_its_twin_is_promoted_to(strategy):
    """A duplicate is answered from its twin's record when proposed (the twin's first rung, say);
    when the twin completes a later rung, the duplicate's member is upgraded with it, keeping its
    own id, while members of other networks are left alone."""
    from nas.strategies import Result, make_strategy

    space = load_space("nb201")
    n = 1 if strategy == "evolution" else 2
    s = make_strategy(strategy, space, n, 3, population=8)
    archs = [s.ask().arch for _ in range(3)]
    told = [Result(i, a, (-0.5 - 0.01 * i,) + (1.0,) * (n - 1)) for i, a in enumerate(archs)]
    twin = Result(7, archs[0], told[0].values)  # a duplicate of candidate 0, proposed later
    for r in told + [twin]:
        s.tell(r)
    promoted = Result(0, archs[0], (-0.9,) + (1.0,) * (n - 1))
    s.observe(promoted, 200)
    members = list(s.members) if strategy == "evolution" else [ind.result for ind in s._parents + s._new]
    by_id = {m.id: m for m in members}
    assert by_id[0] is promoted and by_id[7].values == promoted.values and by_id[7].arch.key == archs[0].key
    assert by_id[1] is told[1] and by_id[2] is told[2]
    again = make_strategy(strategy, space, n, 3, population=8)
    again.load_state_dict(s.state_dict())
    assert [(m.id, m.values) for m in again.members] == [(m.id, m.values) for m in s.members]


def test_hyperband_deals_candidates_to_brackets(tmp_path):
    from nas.schedulers import bracket_of, read_rungs

    session, table = _table_search(tmp_path, scheduler="hyperband", budget=12)
    session.run()
    rows = read_rungs(session.store)
    session.store.close()
    firsts = sorted((r for r in rows if r.rung == 0), key=lambda r: r.cid)
    assert [r.bracket for r in firsts] == [bracket_of(i, 2, 3) for i in range(12)]  # ladder (12, 200): two brackets
    assert {r.epochs for r in firsts if r.bracket == 1} == {200}  # the second starts at the top rung
    assert {r.epochs for r in firsts if r.bracket == 0} == {12}


def test_a_time_budget_alone_means_no_cap_on_candidates(tmp_path):
    session, table = _table_search(tmp_path, budget=None, time_budget=1.5)
    result = session.run()
    session.store.close()
    assert result.stopped == "time budget" and len({k for k, _ in table.asked}) > 40


def test_checkpoints_of_unpromotable_candidates_are_deleted(tmp_path):
    from nas.evaluators import TrainingEvaluator
    from nas.runs import SearchConfig, space_config
    from nas.schedulers import ScheduledSearch, checkpoint_path, read_rungs
    from nas.search import start

    torch.set_num_threads(1)
    train = {"max_epochs": 3, "patience": None}
    config = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy"], strategy="random",
                          budget=6, seed=0, device="cpu", train=train, scheduler="asha", eta=3)
    session = start(config, tmp_path / "r", evaluator=TrainingEvaluator("digits", device="cpu", **train), progress=False, log=lambda s: None)
    seen: list[set] = []
    real = ScheduledSearch._finish

    def spy(self, cand, arch, row, ev):
        real(self, cand, arch, row, ev)
        folder = tmp_path / "r" / "checkpoints"
        seen.append({p.name for p in folder.glob("*.pt")} if folder.exists() else set())
        for r in self.rows.values():  # every kept checkpoint belongs to a candidate that may still go on
            if checkpoint_path(tmp_path / "r", r.cid, r.rung).exists():
                assert r.state == "complete" and not r.final and (r.cid, r.rung + 1) not in self.rows

    ScheduledSearch._finish = spy
    try:
        session.run()
    finally:
        ScheduledSearch._finish = real
        rows = read_rungs(session.store)
        session.store.close()
    assert any(seen) and not (tmp_path / "r" / "checkpoints").exists()
    assert {r.epochs for r in rows} == {1, 3}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_promotion_resumes_from_the_checkpoint_held_in_memory_which_equals_its_file(tmp_path, monkeypatch):
    import nas.schedulers as sch
    from nas.evaluators import TrainingEvaluator
    from nas.runs import SearchConfig, space_config
    from nas.search import start

    torch.set_num_threads(1)
    train = {"max_epochs": 9, "patience": None}
    config = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy"], strategy="random",
                          budget=9, seed=1, device="cpu", train=train, scheduler="asha", eta=3)
    session = start(config, tmp_path / "r", evaluator=TrainingEvaluator("digits", device="cpu", **train), progress=False, log=lambda s: None)
    real_load, real_take = sch.load_checkpoint, sch.ScheduledSearch._rung_checkpoint
    from_disk, compared = [], []

    def load(run, cid, rung, partial=False):
        if not partial:
            from_disk.append((cid, rung))
        return real_load(run, cid, rung, partial)

    def take(self, cid, rung):
        on_disk = real_load(self.store.path, cid, rung)  # the file the session wrote, read behind its back
        got = real_take(self, cid, rung)
        assert on_disk is not None and _same(got, on_disk) and (cid, rung) not in self._held  # handed out once
        compared.append((cid, rung))
        return got

    monkeypatch.setattr(sch, "load_checkpoint", load)
    monkeypatch.setattr(sch.ScheduledSearch, "_rung_checkpoint", take)
    try:
        session.run()
    finally:
        session.store.close()
    assert compared and not from_disk  # every promotion took its held checkpoint


def test_checkpoints_held_in_memory_are_bounded_and_handed_out_once(tmp_path, monkeypatch):
    import nas.schedulers as sch

    held = object.__new__(sch.ScheduledSearch)  # the hold alone: no search behind it
    held._held, held._held_bytes = {}, 0
    one = {"model": {"w": torch.zeros(1000)}, "epoch": 1}  # 4,000 bytes of tensor
    size = sch._nbytes(one)
    assert 4000 <= size < 4400
    monkeypatch.setattr(sch, "HELD_CHECKPOINT_BYTES", 2 * size + 10)
    for cid in range(3):
        held._hold((cid, 0), one)
    assert list(held._held) == [(1, 0), (2, 0)] and held._held_bytes == 2 * size  # the oldest let go
    assert held._unhold((2, 0)) == one and held._unhold((2, 0)) is None and held._held_bytes == size
    held._hold((5, 0), {"model": {"w": torch.zeros(5000)}})  # larger than the whole hold: not kept
    assert list(held._held) == [(1, 0)]


def test_cli_scheduler_flags(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def nas(*args):
        return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, env=env, timeout=300)

    out = nas("search", "--data", "nb201:cifar10", "--scheduler", "asha", "--budget", "20", "--run", str(tmp_path / "r"), "--no-progress")
    assert out.returncode == 0, out.stderr
    st = nas("status", str(tmp_path / "r"))
    assert st.returncode == 0 and "rungs" in st.stdout, st.stdout + st.stderr
    for args, message in [(["--eta", "3"], "--min-epochs and --eta apply only with --scheduler asha or hyperband"),
                          (["--scheduler", "asha", "--eta", "1"], "eta must be an integer >= 2"),
                          (["--scheduler", "asha", "--objectives", "params"], "ranks by accuracy"),
                          (["--scheduler", "asha", "--min-epochs", "300"], "min_epochs 300 is more than the maximum epochs 200")]:
        bad = nas("search", "--data", "nb201:cifar10", "--budget", "5", "--run", str(tmp_path / "bad"), "--no-progress", *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert not (tmp_path / "bad" / "run.db").exists()



def test_a_time_budget_stops_training_at_the_next_epoch_boundary_without_a_scheduler(tmp_path):
    from nas.evaluators import TrainingEvaluator
    from nas.runs import SearchConfig, space_config
    from nas.search import start

    torch.set_num_threads(1)
    train = {"max_epochs": 500, "patience": None}
    config = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy"], strategy="random",
                          budget=None, time_budget=2.0, seed=0, device="cpu", train=train)
    session = start(config, tmp_path / "r", evaluator=TrainingEvaluator("digits", device="cpu", **train), progress=False, log=lambda s: None)
    t0 = time.monotonic()
    result = session.run()
    took = time.monotonic() - t0
    session.store.close()
    assert result.stopped == "time budget"
    last = [c for c in result.candidates if c.state == "complete"][-1]
    assert last.metrics["stop_reason"] == "deadline" and last.metrics["epochs"] < 500
    assert took < 2.0 + 5 * max(c.metrics["seconds_per_epoch"] for c in result.candidates if c.state == "complete") + 1.0



def test_the_python_api_takes_a_scheduler(tmp_path):
    from nas.schedulers import read_rungs
    from nas.search import search  # (nas.search is the module once another test imported it)
    from nas.store import RunStore

    result = search("nb201", data="nb201:cifar10", objectives="accuracy", scheduler="hyperband", eta=3, budget=15,
                        run=tmp_path / "r", progress=False)
    assert result.stopped == "budget"
    with RunStore.open(result.run) as store:
        rows = read_rungs(store)
    assert len({r.cid for r in rows if r.rung == 0}) == 15 and {r.bracket for r in rows} == {0, 1}



@pytest.mark.slow
def test_parallel_workers_run_rungs_as_jobs(tmp_path):
    from nas.runs import SearchConfig, space_config
    from nas.schedulers import read_rungs
    from nas.search import start

    config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy", "params"],
                          budget=24, seed=3, scheduler="asha", workers=2, backend="process", backend_options={"share": "process"})
    session = start(config, tmp_path / "r", progress=False, log=lambda s: None)
    try:
        result = session.run()
        rows = read_rungs(session.store)
    finally:
        session.store.close()
    assert result.stopped == "budget" and len({r.cid for r in rows if r.rung == 0}) == 24
    assert all(r.state == "complete" for r in rows) and any(r.rung == 1 for r in rows)
    assert len({(r.cid, r.rung) for r in rows}) == len(rows)  # no candidate promoted twice
    for r in rows:
        if r.rung == 1:
            assert r.metrics["epochs"] == 200 and (r.cid, 0) in {(x.cid, x.rung) for x in rows}



def test_a_rung_the_time_budget_stops_is_paused_and_resumed(tmp_path):
    from nas.evaluators import TrainingEvaluator
    from nas.runs import SearchConfig, space_config
    from nas.schedulers import checkpoint_path, read_rungs
    from nas.search import resume, start

    torch.set_num_threads(1)
    train = {"max_epochs": 400, "patience": None}
    log = tmp_path / "log"
    config = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy"], strategy="random",
                          budget=2, time_budget=1.5, seed=0, device="cpu", train=train, scheduler="asha", min_epochs=400, eta=3)
    # 10 ms an epoch at least (400 epochs take 4 s or more): an idle CPU trains this MLP in ~3 ms an epoch and
    # would finish the rung inside the 1.5 s time budget
    make = lambda: _logged(TrainingEvaluator, str(log), 0.0, 0.01)("digits", device="cpu", **train)  # noqa: E731
    session = start(config, tmp_path / "r", evaluator=make(), progress=False, log=lambda s: None)
    assert session.run().stopped == "time budget"
    rows = read_rungs(session.store)
    session.store.close()
    assert [r.state for r in rows] == ["paused"] and 0 < rows[0].metrics["epochs"] < 400
    assert checkpoint_path(tmp_path / "r", rows[0].cid, 0, partial=True).exists()
    paused_at = rows[0].metrics["epochs"]
    from nas.store import RunStore

    with RunStore.open(tmp_path / "r") as store:
        spent = float(store.meta("elapsed"))
    session = resume(tmp_path / "r", time_budget=spent + 1.5, evaluator=make(), progress=False, log=lambda s: None)
    session.run()
    session.store.close()
    starts = [int(line.split()[3]) for line in log.read_text().splitlines()]
    assert starts[:2] == [0, paused_at]  # the second session carried on where the first paused



def test_failures_in_a_row_stop_a_scheduled_search(tmp_path):
    from nas.evaluators import Evaluation

    session, table = _table_search(tmp_path, budget=30, max_failures=3)

    def broken(space, arch, seed=0, constraints=None, on_epoch=None, **rung):
        return Evaluation("failed", {}, "simulated failure")

    session.evaluator.evaluate = broken
    logged: list[str] = []
    session.log = logged.append
    result = session.run()
    session.store.close()
    assert result.stopped == "failures" and "simulated failure" in logged[-1]



class _DyingTable(TabularEvaluator):
    """Kills its own worker process the first time it is asked for a promoted rung (once over all
    workers: a marker file, created exclusively)."""

    def __init__(self, marker: str) -> None:
        super().__init__("cifar10")
        self.marker = marker

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None, **rung):  # type: ignore[override]
        if rung.get("epochs") == 200:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(space, arch, seed, constraints, on_epoch, **rung)


def make_dying(config):
    return _DyingTable(config.backend_options["factory_options"])


@pytest.mark.slow
def test_a_worker_that_dies_mid_rung_loses_only_that_rung(tmp_path):
    from nas.runs import SearchConfig, space_config
    from nas.search import start

    def search(name, **backend):
        config = SearchConfig(space=space_config(load_space("nb201")), data="nb201:cifar10", objectives=["accuracy", "params"],
                              budget=20, seed=3, scheduler="asha", **backend)
        session = start(config, tmp_path / name, evaluator=TabularEvaluator("cifar10"), progress=False, log=lambda s: None)
        try:
            session.run()
        finally:
            session.store.close()
        return _snapshot(tmp_path / name)

    marker = tmp_path / "died"
    dying = search("dying", workers=1, backend="process",
                   backend_options={"share": "process", "evaluator_factory": "tests.test_multifidelity:make_dying",
                                    "factory_options": str(marker)})
    assert marker.exists()  # a worker was killed in a promoted rung
    cands, rungs = dying
    assert all(r[4] == "complete" for r in rungs) and len({r[:2] for r in rungs}) == len(rungs)
    assert dying == search("inline")  # the rung was run again, and the run ends as one without the death


@pytest.mark.parametrize("scheduler,objectives", [("asha", ["accuracy"]), ("hyperband", ["accuracy", "params"])])
def test_the_drivers_cached_promotions_are_next_promotion(tmp_path, scheduler, objectives):
    """The driver keeps each rung's promotable list until the rung changes; at every job it must
    choose what the pure `next_promotion` of all rows chooses."""
    import nas.schedulers as sch

    session, _ = _table_search(tmp_path, scheduler=scheduler, objectives=objectives, budget=60, strategy="random", strategy_options={})
    real = sch.next_promotion
    checked = []

    def both(rows, ladders, eta, cache=None):
        got = real(rows, ladders, eta, cache)
        assert cache is not None and got == real([r.as_row() for r in rows], ladders, eta)
        checked.append(got)
        return got

    sch.next_promotion = both
    try:
        session.run()
    finally:
        sch.next_promotion = real
    session.store.close()
    assert len(checked) >= 60 and sum(c is not None for c in checked) >= 10


if __name__ == "__main__":
    _worker(*sys.argv[1:5])

