"""`nas report`: plots and a self-contained HTML page for a run, built from small runs that need
no training (the NAS-Bench-201 tables, and a fake evaluator with failures and infeasible
candidates)."""

from __future__ import annotations

import hashlib
import html
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
    chosen = objmod.pick(cands, objectives)
    assert f"{chosen.id} <span class=\"badge\">pick</span>" in page
    hv = objmod.hypervolume(cands, objectives)
    assert f"{hv:.4f}" in page
    assert html.escape(objmod.HV_RULE) in page  # the report says how it is normalised
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
        shown = [v for v in series if not math.isnan(v)]
        assert math.isnan(series[0]) and shown  # NaN until the bounds are fixed, then shown
        assert all(b >= a for a, b in zip(shown, shown[1:]))
        assert series[-1] == pytest.approx(objmod.hypervolume(cands, objectives), rel=1e-12, abs=1e-12)
        assert series[-1] > 0


def test_hypervolume_series_prefixes_are_exact_for_two_objectives(tab2: Path) -> None:
    cands, objectives = _candidates(tab2)
    series = hypervolume_series(cands, objectives)
    for k in (1, 5, 17, len(cands) // 2, len(cands)):
        hv = objmod.hypervolume(cands[:k], objectives)  # what status showed after candidate k
        assert (math.isnan(series[k - 1]) and hv is None) or series[k - 1] == pytest.approx(hv, abs=1e-12)
    bounds = objmod.hv_bounds(cands, objectives)
    given = hypervolume_series(cands, objectives, bounds)
    for k in (1, 5, len(cands)):
        assert given[k - 1] == pytest.approx(objmod.hypervolume(cands[:k], objectives, bounds), abs=1e-12)


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
    shown = series[objmod.HV_FIXED_BY - 1:]
    assert all(math.isnan(v) for v in series[:objmod.HV_FIXED_BY - 1]) and not any(math.isnan(v) for v in shown)
    assert all(b >= a for a, b in zip(shown, shown[1:]))
    assert series[-1] == pytest.approx(objmod.hypervolume(cands, objectives), rel=1e-12)


def test_hypervolume_series_edge_cases() -> None:
    objectives = objmod.parse_objectives("accuracy,params")
    assert hypervolume_series([], objectives) == []
    failed = Candidate(id=1, key="a", arch={}, state="failed", error="x")
    assert all(math.isnan(v) for v in hypervolume_series([failed], objectives))  # bounds not fixed: nothing shown
    assert all(math.isnan(v) for v in hypervolume_series(_synthetic(5, 1, False), objectives[:1]))  # one objective
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


# -- one front, one hypervolume, one pick (issue 11) ------------------------------------------
def _cand(i: int, acc: float, params: float, *, state: str = "complete", violation: float = 0.0, key: str | None = None,
          extra: tuple[float, ...] = ()) -> Candidate:
    return Candidate(id=i, key=key or f"k{i}", arch={}, state=state, violation=violation,
                     objectives=(acc, params, *extra) if state == "complete" else None,
                     metrics={"val_accuracy": acc, "params": params})


def test_add_to_front_is_the_front_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    for m in (2, 3):
        objectives = objmod.parse_objectives(["accuracy", "params", "latency"][:m])
        for _ in range(30):
            # one network per key (same key, same numbers), repeated keys, ties, failures
            nets = [(float(rng.integers(0, 5)) / 4, float(rng.integers(0, 5)), (float(rng.integers(0, 4)),) if m == 3 else (),
                     str(rng.choice(["complete", "complete", "complete", "failed", "infeasible"])), float(rng.random() < 0.1))
                    for _ in range(40)]
            cands = []
            for i in range(1, 60):
                k = int(rng.integers(0, 40))
                acc, params, extra, state, violation = nets[k]
                cands.append(_cand(i, acc, params, state=state, extra=extra, violation=violation, key=f"k{k}"))
            front: list[Candidate] = []
            for c in cands:
                before = [f.id for f in front]
                changed = objmod.add_to_front(front, c, objectives)
                assert changed == ([f.id for f in front] != before)
            assert sorted(f.id for f in front) == sorted(f.id for f in objmod.front(cands, objectives))


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_never_moves_for_a_dominated_candidate(m: int) -> None:
    """Bounds are fixed by the first feasible evaluations: a later candidate that is dominated
    (here: a huge network, which used to stretch the bounds and raise the number) changes nothing."""
    objectives = objmod.parse_objectives(["accuracy", "params", "latency"][:m])
    rng = np.random.default_rng(m)
    cands = [_cand(i, float(rng.uniform(0.3, 0.9)), float(rng.uniform(1e3, 1e5)), extra=(1.0,) * (m - 2))
             for i in range(1, 31)]
    fixed = objmod.hypervolume(cands[:objmod.HV_FIXED_BY], objectives)
    assert fixed is not None and fixed > 0
    assert objmod.hypervolume(cands[:objmod.HV_FIXED_BY - 1], objectives) is None  # not fixed yet: none shown
    for k in range(objmod.HV_FIXED_BY, len(cands) + 1):
        hv = objmod.hypervolume(cands[:k], objectives)
        for params in (2e5, 1e7, 1e12):  # dominated by the first candidate: worse accuracy, more parameters
            worse = _cand(1000, cands[0].objectives[0] - 0.01, params, extra=(2.0,) * (m - 2))
            assert objmod.hypervolume(cands[:k] + [worse], objectives) == hv
        if k > objmod.HV_FIXED_BY:
            assert hv >= objmod.hypervolume(cands[:k - 1], objectives)
    # a better candidate raises it
    assert objmod.hypervolume(cands + [_cand(2000, 0.99, 10.0, extra=(0.5,) * (m - 2))], objectives) > hv
    # bounds wait for a running candidate with a smaller id
    running = Candidate(id=2, key="r", arch={}, state="running")
    assert objmod.hv_bounds([running] + cands[2:], objectives) is None


def test_default_pick_is_not_a_near_chance_network() -> None:
    """The front from the issue: 100% at 172 parameters, 68% at 100, 30% at 10: the knee took
    68%; the default pick takes the accurate one, and within 0.01 of the best the smallest."""
    objectives = objmod.parse_objectives("accuracy,params")
    cands = [_cand(1, 1.0, 172), _cand(2, 0.68, 100), _cand(3, 0.30, 10), _cand(4, 0.1, 5000)]
    assert objmod.pick(cands, objectives).id == 1
    assert objmod.pick(cands + [_cand(5, 0.995, 150)], objectives).id == 5
    assert objmod.pick(cands + [_cand(6, 0.985, 120)], objectives).id == 1  # 0.015 below the best: too far
    assert objmod.pick(cands, objectives, "best-accuracy").id == 1
    assert objmod.DEFAULT_PICK == "near-best"


def test_status_table_marks_the_pick(tab2: Path, capsys) -> None:
    cands, objectives = _candidates(tab2)
    chosen = objmod.pick(cands, objectives)
    assert main(["status", str(tab2)]) == 0
    out = capsys.readouterr().out
    marked = [line for line in out.splitlines() if line.startswith("*") and not line.startswith("* the pick")]
    assert len(marked) == 1 and marked[0].split()[1] == str(chosen.id), out
    assert "* the pick `nas export` takes by default (near-best)" in out


def test_search_status_and_report_show_one_hypervolume(tmp_path: Path, nb201, capsys) -> None:
    import json

    run = tmp_path / "hv"
    search(nb201, data="nb201:cifar10", objectives="accuracy,params", budget=40, run=run, progress=True)
    rows = [line for line in capsys.readouterr().out.splitlines() if "hv " in line and line.lstrip().startswith("evaluated")]
    assert rows, "the search printed its per-generation rows"
    last = re.search(r"hv (\S+)", rows[-1]).group(1)
    cands, objectives = _candidates(run)
    hv = objmod.hypervolume(cands, objectives)
    assert last == f"{hv:.4f}"
    assert main(["status", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hypervolume"] == hv
    assert main(["status", str(run)]) == 0
    assert f"hypervolume {hv:.4f} (" in capsys.readouterr().out
    page = write_report(run)["html"].read_text(encoding="utf-8")
    assert f"<th>hypervolume</th><td>{hv:.4f} " in page
    series = hypervolume_series(evaluations(cands), objectives)
    assert series[-1] == pytest.approx(hv, rel=1e-12)  # the same front, summed in another order


def test_report_names_the_strategy_as_it_ran() -> None:
    """`auto` with what it stood for, the predictor and a warm start included (it once read
    `auto (evolution)` for a search whose every proposal was the predictor's)."""
    from nas.report import _strategy_text

    assert _strategy_text("auto", {}, 1) == "auto (evolution + predictor ensemble)"
    assert _strategy_text("auto", {}, 2) == "auto (nsga2 + predictor ensemble)"
    assert _strategy_text("auto", {"predictor": "none"}, 1) == "auto (evolution)"
    assert _strategy_text("evolution", {"predictor": "none"}, 1) == "evolution"
    assert _strategy_text("nsga2", {"predictor": "ensemble", "warm_start": "synflow"}, 2) == "nsga2 + predictor ensemble + synflow warm start"
