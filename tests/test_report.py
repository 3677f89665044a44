"""`nas report`: plots and a self-contained HTML page for a run, built from small runs that need
no training (the NAS-Bench-201 tables, and a fake evaluator with failures and infeasible
candidates)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

import nas
from nas import objectives as objmod
from nas.cli import main
from nas.errors import UsageError
from nas.evaluators import Evaluation
from nas.report import best_so_far, evaluations, hypervolume_series, write_report
from nas.search import SearchConfig, open_run, search, space_config, start
from nas.store import Candidate, RunError

PNG = b"\x89PNG\r\n\x1a\n"


class FakeEvaluator:
    """Deterministic values from the architecture's key; some fail (with markup in the message),
    some are infeasible, the rest complete."""

    provides = ("val_accuracy", "params", "flops")
    test_needs_weights = False

    def __init__(self, fail_all: bool = False) -> None:
        self.fail_all = fail_all

    @staticmethod
    def _h(arch) -> int:
        return int(hashlib.sha256(arch.key.encode()).hexdigest()[:12], 16)

    def evaluate(self, space, arch, seed=0, constraints=None) -> Evaluation:
        h = self._h(arch)
        if self.fail_all or h % 5 == 0:
            return Evaluation("failed", {"seconds": 0.0}, f"boom <tensor shape {h % 97}> & co")
        if h % 7 == 0:
            return Evaluation("infeasible", {"params": 9_000_000}, "params 9000000 > max_params 100000")
        params = 1_000 + h % 200_000
        return Evaluation("complete", {"val_accuracy": 0.2 + (h % 7919) / 7919 * 0.7, "params": params, "flops": params * 30,
                                       "epochs": 3, "seconds": 0.0})

    def test(self, space, arch, state=None) -> dict[str, float]:
        return {"test_accuracy": 0.5}


@pytest.fixture(scope="module")
def nb201():
    return nas.load_space("nb201")


@pytest.fixture(scope="module")
def tab2(tmp_path_factory, nb201) -> Path:
    run = tmp_path_factory.mktemp("tab2") / "r"
    search(nb201, data="nb201:cifar10", objectives="accuracy,params", budget=60, run=run, progress=False)
    return run


@pytest.fixture(scope="module")
def tab1(tmp_path_factory, nb201) -> Path:
    run = tmp_path_factory.mktemp("tab1") / "r"
    search(nb201, data="nb201:cifar10", objectives="accuracy", budget=40, run=run, progress=False)
    return run


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, nb201) -> Path:
    run = tmp_path_factory.mktemp("faulty") / "r"
    search(nb201, data="fake", objectives="accuracy,params", budget=40, run=run, progress=False, evaluator=FakeEvaluator())
    return run


def _candidates(run: Path):
    store, config, space, objectives = open_run(run)
    with store:
        return store.candidates(), objectives


def _check_files(paths: dict[str, Path], out: Path) -> str:
    assert set(paths) == {"pareto", "progress", "html"}
    assert paths["pareto"] == out / "pareto.png" and paths["progress"] == out / "progress.png" and paths["html"] == out / "index.html"
    for key in ("pareto", "progress"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG), key
        assert len(data) > 5_000, key
    assert not [p for p in out.iterdir() if ".tmp" in p.name], "temporary files left behind"
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # self-contained: both images inline, nothing fetched, no script needed
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "<script" not in page.lower() and "@import" not in page
    return page


# -- the files ------------------------------------------------------------------------------
def test_two_objective_report(tab2: Path) -> None:
    paths = write_report(tab2)
    page = _check_files(paths, tab2 / "report")
    cands, objectives = _candidates(tab2)
    front = objmod.front(cands, objectives)
    assert front
    for c in front:
        assert f"<tr><td>{c.id}" in page
        assert nas.load_space("nb201").format_arch(nas.load_space("nb201").make(c.arch)) in page
    knee = objmod.pick(cands, objectives, "knee")
    assert f"{knee.id} <span class=\"badge\">knee</span>" in page
    hv = objmod.hypervolume(cands, objectives)
    assert f"{hv:.4f}" in page
    assert "Pareto front" in page and "Top 20 by accuracy" in page
    assert "test acc" in page and f"{front[0].test['test_accuracy']:.4f}" in page
    assert "stopped by</th><td>budget" in page


def test_single_objective_report(tab1: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "rep"
    paths = write_report(tab1, out)
    page = _check_files(paths, out)
    assert not (tab1 / "report").exists()
    cands, objectives = _candidates(tab1)
    best = objmod.front(cands, objectives)[0]
    assert f"<tr><td>{best.id}" in page
    assert "hypervolume" not in page.split("<h2>")[0]  # no hypervolume for one objective


def test_failures_are_listed_and_escaped(faulty: Path) -> None:
    cands, objectives = _candidates(faulty)
    failed = [c for c in cands if c.state == "failed" and c.source is None]
    infeasible = [c for c in cands if c.state == "infeasible" and c.source is None]
    assert failed and infeasible, "the fake evaluator should fail some and reject some"
    page = _check_files(write_report(faulty), faulty / "report")
    assert "boom &lt;tensor shape" in page and "&gt; &amp; co" in page
    assert "boom <tensor" not in page
    for c in failed + infeasible:
        assert f"<tr><td>{c.id}</td>" in page
    assert f"{len(failed)} failed, {len(infeasible)} infeasible" in page
    for c in objmod.front(cands, objectives):
        assert f"<tr><td>{c.id}" in page


def test_run_with_no_complete_candidate(tmp_path: Path, nb201) -> None:
    run = tmp_path / "allfail"
    result = search(nb201, data="fake", objectives="accuracy,params", budget=30, run=run, progress=False,
                    evaluator=FakeEvaluator(fail_all=True))
    assert result.stopped == "failures"
    page = _check_files(write_report(run), run / "report")
    assert "No complete, feasible candidate yet" in page
    assert "boom &lt;" in page


def test_run_still_being_written(tmp_path: Path, nb201) -> None:
    """An empty run whose writer still holds it: the report opens it read-only."""
    config = SearchConfig(space=space_config(nb201), data="nb201:cifar10", objectives=["accuracy", "params"], budget=10)
    session = start(config, tmp_path / "live", progress=False)
    try:
        page = _check_files(write_report(tmp_path / "live"), tmp_path / "live" / "report")
        assert "nothing has been evaluated" in page
        assert "not finished" in page
        session.store.add("k", dict(nb201.sample(0)))  # a queued candidate shows as in progress
        page = _check_files(write_report(tmp_path / "live"), tmp_path / "live" / "report")
        assert "1 queued or running" in page
    finally:
        session.store.close()


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        write_report(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunError, match="not a run directory"):
        write_report(tmp_path / "plain")


def test_out_is_a_file(tab2: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        write_report(tab2, tmp_path / "file")


# -- series ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["tab2", "faulty"])
def test_hypervolume_series_ends_at_the_run_hypervolume(request, fixture: str) -> None:
    cands, objectives = _candidates(request.getfixturevalue(fixture))
    for seq in (cands, evaluations(cands)):
        series = hypervolume_series(seq, objectives)
        assert len(series) == len(seq)
        assert all(b >= a for a, b in zip(series, series[1:]))
        assert series[-1] == pytest.approx(objmod.hypervolume(cands, objectives), rel=1e-12, abs=1e-12)
        assert series[-1] > 0


def test_hypervolume_series_prefixes_are_exact_for_two_objectives(tab2: Path) -> None:
    cands, objectives = _candidates(tab2)
    lower, upper = objmod.bounds(cands, objectives)
    series = hypervolume_series(cands, objectives)
    for k in (1, 5, 17, len(cands) // 2, len(cands)):
        assert series[k - 1] == pytest.approx(objmod.hypervolume(cands[:k], objectives, lower, upper), abs=1e-12)


def test_best_so_far(faulty: Path) -> None:
    cands, objectives = _candidates(faulty)
    evals = evaluations(cands)
    best = best_so_far(evals, objectives)
    seen = [c.objectives[0] for c in evals if c.feasible]
    assert max(v for v in best if not math.isnan(v)) == max(seen)
    finite = [v for v in best if not math.isnan(v)]
    assert all(b >= a for a, b in zip(finite, finite[1:]))


def _synthetic(n: int, m: int, simplex: bool, seed: int = 0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, m))
    if simplex:  # every point non-dominated: the largest possible front
        X = X / X.sum(axis=1, keepdims=True)
    vals = np.column_stack([1 - X[:, 0], X[:, 1:] * 1e6])
    return [Candidate(id=i + 1, key=f"k{i}", arch={}, state="complete", objectives=tuple(map(float, v))) for i, v in enumerate(vals)]


@pytest.mark.parametrize("m,simplex", [(2, False), (2, True), (3, False), (3, True)])
def test_hypervolume_series_is_fast(m: int, simplex: bool) -> None:
    objectives = objmod.parse_objectives(["accuracy", "params", "latency"][:m])
    cands = _synthetic(1000, m, simplex)
    t0 = time.perf_counter()
    series = hypervolume_series(cands, objectives)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"{elapsed:.2f} s for 1,000 candidates"
    assert all(b >= a for a, b in zip(series, series[1:]))
    assert series[-1] == pytest.approx(objmod.hypervolume(cands, objectives), rel=1e-12)


def test_hypervolume_series_edge_cases() -> None:
    objectives = objmod.parse_objectives("accuracy,params")
    assert hypervolume_series([], objectives) == []
    failed = Candidate(id=1, key="a", arch={}, state="failed", error="x")
    assert hypervolume_series([failed], objectives) == [0.0]
    four = objmod.parse_objectives("accuracy,params,flops,latency")
    assert all(math.isnan(v) for v in hypervolume_series(_synthetic(5, 4, False), four))


# -- the command ----------------------------------------------------------------------------
def test_cli_report(tab2: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["report", str(tab2), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [str(out / "pareto.png"), str(out / "progress.png"), str(out / "index.html")]
    assert all(Path(p).is_file() for p in lines)


def test_cli_report_not_a_run(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nonexistent")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nas: error:") and "no such run directory" in err[0]


def test_cli_report_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
