"""The REINFORCE controller (`rl`): its rewards and their errors, every shipped space, the CLI
flags and a real run on NAS-Bench-201, exact resume, the global RNGs, and that it learns.
The behaviour every strategy shares is in test_strategies.py, which runs `rl` too."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.cli import main
from nas.errors import UsageError
from nas.space import Architecture, load_space, shipped_spaces
from nas.strategies import Result, Strategy, make_strategy
from nas.strategies.base import arch_token
from nas.tabular import TabularEvaluator

NB201 = load_space("nb201")


def fake(arch: Architecture, m: int = 2) -> tuple[float, ...]:
    """Deterministic values in [0, 1) from a hash of the architecture (no training)."""
    h = int.from_bytes(hashlib.sha256(arch_token(arch).encode()).digest(), "big")
    return tuple(((h >> (16 * k)) & 0xFFFF) / 65536 for k in range(m))


def drive(s: Strategy, steps: int, evaluate: Any = fake, batch: int = 3, shuffle: random.Random | None = None) -> list[Result]:
    """Ask `batch` at a time, tell them in reverse (or shuffled) order; ids in order of asking."""
    told: list[Result] = []
    while len(told) < steps:
        out = []
        for _ in range(min(batch, steps - len(told))):
            arch = s.ask().arch
            out.append(Result(s.n_asked - 1, arch, evaluate(arch)))
        if shuffle:
            shuffle.shuffle(out)
        else:
            out.reverse()
        for r in out:
            s.tell(r)
        told += out
    return told


def resumed(s: Strategy) -> Strategy:
    fresh = make_strategy("rl", s.space, s.n_objectives, s.seed, objectives=s.objective_names, **s.options)
    fresh.load_state_dict(json.loads(json.dumps(s.state_dict(), allow_nan=False)))
    return fresh


# -- rewards ------------------------------------------------------------------------------------
def test_accuracy_reward_reads_the_accuracy_objective_or_the_first() -> None:
    arch = NB201.sample(0)
    s = make_strategy("rl", NB201, 2, 0, objectives=["latency", "accuracy"])
    assert s.reward(Result(0, arch, (3.0, -0.8))) == 0.8
    s = make_strategy("rl", NB201, 2, 0, objectives=["params", "latency"])
    assert s.reward(Result(0, arch, (3.0, 0.8))) == -3.0  # no accuracy: the first objective, negated


def test_mnas_reward_is_accuracy_times_cost_over_target_to_the_w() -> None:
    arch = NB201.sample(0)
    s = make_strategy("rl", NB201, 3, 0, objectives=["accuracy", "params", "latency"], reward="mnas", target_latency_ms=2.0)
    assert s.reward(Result(0, arch, (-0.9, 5e5, 4.0))) == pytest.approx(0.9 * 2.0**-0.07)
    s = make_strategy("rl", NB201, 3, 0, objectives=["accuracy", "params", "latency"], reward="mnas",
                      target_latency_ms=2.0, target_params=1e6, w=-0.5)
    assert s.reward(Result(0, arch, (-0.9, 5e5, 1.0))) == pytest.approx(0.9 * 0.5**-0.5 * 0.5**-0.5)


def test_failed_and_infeasible_results_get_the_floor_reward() -> None:
    archs = NB201.sample_many(4, 1)
    s = make_strategy("rl", NB201, 1, 0, objectives=["accuracy"], batch=100)
    assert s.reward(Result(0, archs[0], None)) == 0.0
    assert s.reward(Result(0, archs[0], (-0.9,), violation=0.3)) == 0.0
    s = make_strategy("rl", NB201, 1, 0, objectives=["params"], batch=100)
    s.tell(Result(0, archs[1], (5e5,)))
    s.tell(Result(1, archs[2], (2e5,)))
    assert s.reward(Result(2, archs[3], (float("nan"),))) == -5e5  # the lowest reward seen
    assert s.reward(Result(2, archs[3], (1.0,), violation=1.0)) == -5e5


@pytest.mark.parametrize(("objectives", "options", "message"), [
    (["accuracy"], {"reward": "mnas"}, r"reward 'mnas' of strategy 'rl' needs target_latency_ms or target_params \(or both\)"),
    (["accuracy", "params"], {"reward": "mnas", "target_latency_ms": 5}, r"needs the objective\(s\) latency; this run's objectives are accuracy, params"),
    (["accuracy", "latency"], {"reward": "mnas", "target_params": 1e6}, r"needs the objective\(s\) params; "),
    (["latency"], {"reward": "mnas", "target_latency_ms": 5}, r"needs the objective\(s\) accuracy; "),
    (["accuracy", "latency"], {"target_latency_ms": 5}, r"option target_latency_ms of strategy 'rl' applies only with reward 'mnas'"),
    (["accuracy"], {"reward": "speed"}, r"option 'reward' of strategy 'rl' must be 'accuracy' or 'mnas', got 'speed'"),
    (["accuracy"], {"lr": 0}, r"option 'lr' of strategy 'rl' must be a number > 0, got 0"),
    (["accuracy"], {"baseline_decay": 1}, r"option 'baseline_decay' .* must be a number in \[0, 1\)"),
    (["accuracy"], {"w": 0.1}, r"option 'w' .* must be a number <= 0"),
])
def test_option_errors_name_what_is_missing(objectives: list[str], options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_strategy("rl", NB201, len(objectives), 0, objectives=objectives, **options)


def test_options_from_a_command_line() -> None:
    s = make_strategy("rl", NB201, 2, 0, objectives=["accuracy", "latency"], reward="mnas", target_latency_ms="12.5", lr="0.01", batch="8")
    assert (s.options["reward"], s.options["target_latency_ms"], s.options["lr"], s.options["batch"]) == ("mnas", 12.5, 0.01, 8)


# -- every space, RNGs, resume --------------------------------------------------------------------
@pytest.mark.parametrize("space_name", sorted(shipped_spaces()))
def test_runs_on_every_shipped_space(space_name: str) -> None:
    space = load_space(space_name)
    s = make_strategy("rl", space, 2, 0, objectives=["accuracy", "params"], batch=4)
    told = drive(s, 40, shuffle=random.Random(1), batch=5)
    assert all(r.arch.valid and r.arch.fingerprint == space.fingerprint for r in told)
    assert s.n_updates == 10
    conditional = [d for d in space.decisions if any(d.sites)]
    if conditional:  # inactive decisions were skipped: proposals differ in which labels they hold
        assert len({frozenset(r.arch) for r in told}) > 1
    assert resumed(s).state_dict() == s.state_dict()


def test_global_random_and_torch_generators_are_untouched() -> None:
    random.seed(5)
    torch.manual_seed(5)
    before = random.getstate(), torch.random.get_rng_state()
    s = make_strategy("rl", load_space("mlp"), 2, 0, batch=2)
    drive(s, 30)
    drive(resumed(s), 5)
    assert random.getstate() == before[0]
    assert torch.equal(torch.random.get_rng_state(), before[1])


def test_resume_mid_batch_with_the_mnas_reward_is_exact() -> None:
    table = TabularEvaluator("cifar10")

    def measure(arch: Architecture) -> tuple[float, ...]:
        m = table.evaluate(NB201, arch).metrics
        return (-m["val_accuracy"], m["latency_ms"])

    def strategy() -> Strategy:
        return make_strategy("rl", NB201, 2, 3, objectives=["accuracy", "latency"], reward="mnas", target_latency_ms=0.015, batch=7)

    whole = strategy()
    straight = drive(whole, 100, measure, batch=4)
    first = strategy()
    head = drive(first, 36, measure, batch=4)  # 36: 5 updates of 7, and one result waiting
    assert first.state_dict()["batch"] and first.n_updates == 5
    rest = resumed(first)
    tail = drive(rest, 64, measure, batch=4)
    assert [arch_token(r.arch) for r in head + tail] == [arch_token(r.arch) for r in straight]
    assert rest.state_dict() == whole.state_dict()


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_search_with_rl_on_nb201(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["search", "--data", "nb201:cifar10", "--strategy", "rl", "--objectives", "accuracy,latency", "--reward", "mnas",
                 "--target-latency-ms", "0.015", "--budget", "30", "--run", str(tmp_path / "run"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "strategy rl" in out and "Pareto front" in out
    from nas.search import open_run

    store, config, _, _ = open_run(tmp_path / "run")
    with store:
        assert config.strategy_options == {"reward": "mnas", "target_latency_ms": 0.015}
        assert store.state("strategy")["updates"] >= 30 // 5


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "evolution", "--reward", "mnas"], "--reward applies only to --strategy rl"),
    (["--target-latency-ms", "3"], "--target-latency-ms applies only to --strategy rl"),
    (["--strategy", "random", "--target-params", "1e6"], "--target-params applies only to --strategy rl"),
    (["--strategy", "rl", "--reward", "mnas", "--target-latency-ms", "3"], "needs the objective(s) latency; this run's objectives are accuracy, params"),
    (["--strategy", "rl", "--reward", "mnas"], "needs target_latency_ms or target_params"),
    (["--strategy", "rl", "--target-params", "-1"], "expected a positive number, got '-1'"),
    (["--strategy", "rl", "--reward", "speed"], "invalid choice: 'speed'"),
])
def test_cli_rl_flags_errors(tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["search", "--data", "nb201:cifar10", "--no-progress", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not list(tmp_path.glob("runs/*"))


# -- it learns ------------------------------------------------------------------------------------
def quarter_means(seed: int, steps: int, table: TabularEvaluator) -> tuple[float, float]:
    """Mean reward (validation accuracy) of the controller's samples in the first and the last
    quarter of a run driven directly on the NAS-Bench-201 table (duplicates included)."""
    s = make_strategy("rl", NB201, 1, seed, objectives=["accuracy"])
    rewards = []
    for i in range(steps):
        arch = s.ask().arch
        acc = table.evaluate(NB201, arch).metrics["val_accuracy"]
        s.tell(Result(i, arch, (-acc,)))
        rewards.append(acc)
    q = steps // 4
    return statistics.mean(rewards[:q]), statistics.mean(rewards[-q:])


@pytest.mark.slow
def test_the_controller_learns_on_nb201() -> None:
    table = TabularEvaluator("cifar10")
    runs = [quarter_means(seed, 300, table) for seed in range(10)]
    better = sum(last > first for first, last in runs)
    assert better >= 8, runs


# -- kill -9 and resume through the driver, across processes ----------------------------------------
@pytest.mark.slow
def test_kill_9_and_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    from nas.store import RunStore
    from resume_worker import kill_and_resume

    options = json.dumps({"reward": "mnas", "target_latency_ms": 0.015, "batch": 4})
    args = ["rl", "4", "60", "0.01", options]

    def snapshot(run: Path) -> list[tuple[Any, ...]]:
        with RunStore.open(run) as store:
            rows = [(c.id, c.key, c.state, c.objectives, c.source) for c in store.candidates()]
            return rows + [json.dumps(store.state("strategy"), sort_keys=True)]

    worker = [sys.executable, str(Path(__file__).resolve().parent / "resume_worker.py")]
    subprocess.run(worker + ["start", str(tmp_path / "straight"), str(tmp_path / "straight.log")] + args, check=True, timeout=300)
    run, log = tmp_path / "killed", tmp_path / "killed.log"
    kills = kill_and_resume(args, run, log, 3, random.Random(3), max_delay=0.3)
    assert kills >= 2
    assert snapshot(run) == snapshot(tmp_path / "straight")
