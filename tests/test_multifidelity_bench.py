"""benchmarks/multifidelity.py runs end to end at a tiny size (its --device path on the CPU; the
GPU check in tools/gpu_checks.sh runs the same code with --device cuda), and says in one line
what is wrong with a device or constraint it cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "multifidelity.py"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def test_the_benchmark_runs_every_method_at_a_tiny_size(tmp_path):
    optuna = [] if _has_optuna() else ["--no-optuna"]
    out = _run("--tasks", "mlp:digits", "--seconds", "1.5", "--seeds", "1", "--epochs", "3", "--device", "cpu",
               "--constraints", "params<=200000", "--strategy-option", "uniform=3", "--json", str(tmp_path / "runs.json"), *optuna)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "device cpu" in text and "constraints params<=200000" in text and "strategy auto uniform=3" in text
    runs = json.loads((tmp_path / "runs.json").read_text())["mlp:digits"]
    names = {f"{m} ({o})" for m in ("none", "asha", "hyperband") for o in ("acc", "acc,params")}
    assert names <= set(runs)
    for name, rs in runs.items():
        assert len(rs) == 1 and rs[0]["trained"] >= 1, name
        assert all(p <= 200000 for _, p in rs[0]["points"]), name  # the constraint held for every method
        assert f"\n{name} " in text  # a row of the table
    assert "asha (acc,params) vs none (acc,params): trained x" in text
    assert "hypervolume per seed:" in text
    # seeds run in separate processes: one table of their --json files, the same normalisation
    merged = _run("--merge", str(tmp_path / "runs.json"), str(tmp_path / "runs.json"))
    assert merged.returncode == 0, merged.stderr[-3000:]
    ratio = next(line for line in text.splitlines() if line.startswith("  asha (acc,params) vs none (acc,params)"))
    assert "none (acc) 2 seeds" in merged.stdout and ratio in merged.stdout.splitlines()  # the same means, twice the seeds
    lines = [line for line in text.splitlines() if line.startswith("hypervolume per seed:")]
    once = lines[0].split("; ")[0].split()[-1]
    assert f"{once} {once}" in merged.stdout  # each seed's hypervolume as the run computed it, twice
    gone = _run("--merge", str(tmp_path / "nothing.json"))
    assert gone.returncode == 2 and "no such file" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1


def _has_optuna() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("args, message", [(["--device", "cuda:7"], "CUDA"), (["--constraints", "size<=200"], "bad constraint")])
def test_bad_settings_say_what_is_wrong_in_one_line(args, message):
    out = _run("--seconds", "1", "--seeds", "1", "--no-optuna", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
