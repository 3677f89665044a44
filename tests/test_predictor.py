"""The predictor (encodings, ensemble) and the guided strategies built on it: proposals never
repeat a seen network, they are fast on the table, warm starts seed the first proposals, and a
guided search resumes exactly, also after kill -9."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nas.errors import UsageError
from nas.predictor import Encoder, Ensemble
from nas.search import SearchConfig, search, space_config, start
from nas.space import load_space
from nas.strategies import Guided, Result, make_strategy
from nas.tabular import TabularEvaluator

ROOT = Path(__file__).resolve().parents[1]
NB201 = load_space("nb201")
TABLE = TabularEvaluator("cifar10")


def cell(*ops: str):
    return NB201.make(dict(zip(NB201.cell_form[1], ops)))


def test_path_encoding_by_hand_and_equal_for_isomorphic_cells() -> None:
    enc = Encoder(NB201)
    assert enc.kind == "path" and enc.dim == 4 + 16 + 64  # 4 ops (not none), paths of 1, 2 and 3 edges
    # edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; node 1 and node 2 swapped give an isomorphic cell
    a = cell("nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "avg_pool_3x3", "nor_conv_3x3")
    b = cell("nor_conv_1x1", "nor_conv_3x3", "none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")
    fa, fb = enc.encode(a), enc.encode(b)
    assert np.array_equal(fa, fb)
    ops = {op: i for i, op in enumerate(sorted(["avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect"]))}
    expected = np.zeros(enc.dim)
    expected[ops["skip_connect"]] = 1  # 0->3
    expected[4 + 4 * ops["nor_conv_3x3"] + ops["avg_pool_3x3"]] = 1  # 0->1->3
    expected[4 + 4 * ops["nor_conv_1x1"] + ops["nor_conv_3x3"]] = 1  # 0->2->3; 0->1->2->3 is cut by none
    assert np.array_equal(fa, expected)
    c = cell("nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")
    assert not np.array_equal(enc.encode(c), fa)


def test_one_hot_has_an_inactive_slot_per_decision() -> None:
    space = load_space("mlp")
    enc = Encoder(space)
    assert enc.kind == "onehot" and enc.dim == sum(len(d.values) + 1 for d in space.decisions)
    for seed in range(10):
        arch = space.sample(seed)
        f = enc.encode(arch)
        assert f.sum() == len(space.decisions)  # one slot per decision, active or not
        slot = 0
        for d in space.decisions:
            block = f[slot: slot + len(d.values) + 1]
            assert block[-1] == (0 if d.label in arch else 1)
            slot += len(d.values) + 1


def test_ensemble_is_seeded_fits_and_spreads_away_from_data() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(150, 20)).astype(float)
    w = rng.normal(size=20)
    y = X @ w
    a = Ensemble(seed=3).fit(X, y)
    mean, spread = a.predict(X)
    assert np.corrcoef(mean, y)[0, 1] > 0.99
    far_mean, far_spread = a.predict(X * 5.0)  # far outside the data
    assert far_spread.mean() > 3 * spread.mean()
    b_mean, b_spread = Ensemble(seed=3).fit(X, y).predict(X)
    assert np.array_equal(mean, b_mean) and np.array_equal(spread, b_spread)
    assert not np.array_equal(Ensemble(seed=4).fit(X, y).predict(X)[0], mean)


def drive(strategy, steps: int, start_id: int = 0) -> list[str]:
    """Ask and tell `steps` times on the table (accuracy, and latency for two objectives)."""
    keys = []
    for i in range(start_id, start_id + steps):
        p = strategy.ask()
        m = TABLE.evaluate(NB201, p.arch).metrics
        values = (-m["val_accuracy"], m["latency_ms"])[: strategy.n_objectives]
        strategy.tell(Result(i, p.arch, values, 0.0, p.generation, p.parents))
        keys.append(p.arch.key)
    return keys


def guided(name: str, seed: int = 0, population: int | None = None, **options):
    if population is not None and name != "random":
        options["population"] = population
    objectives = ["accuracy"] if name == "evolution" else ["accuracy", "latency"]
    s = make_strategy(name, NB201, len(objectives), seed, objectives=objectives, predictor="ensemble", **options)
    s.bind_evaluator(TABLE)
    return s


@pytest.mark.parametrize("name", ["evolution", "nsga2", "random"])
def test_guided_proposals_are_new_networks_and_fast(name: str) -> None:
    s = guided(name, population=10)
    assert isinstance(s, Guided)
    drive(s, 20)
    t0 = time.process_time()  # CPU seconds of this process: what other processes on the machine do not inflate
    keys = drive(s, 100, 20)
    rate = 100 / (time.process_time() - t0)
    assert len(set(keys)) == 100 and not set(keys) & s._evaluated - set(keys)
    assert rate >= 50, f"{rate:.1f} proposals (ask, table lookup, tell) per CPU second"
    if name == "nsga2":
        assert not s.base._pending, "nsga2 forgets the genomes of pool draws that were not proposed"


@pytest.mark.parametrize("name", ["evolution", "nsga2", "random"])
def test_guided_state_round_trip_is_exact(name: str) -> None:
    s = guided(name, seed=5, population=8, warm_start="synflow", warm_start_pool=12, warm_start_seeds=4)
    drive(s, 30)
    state = json.loads(json.dumps(s.state_dict(), allow_nan=False))
    fresh = guided(name, seed=5, population=8, warm_start="synflow", warm_start_pool=12, warm_start_seeds=4)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == s.state_dict()
    assert drive(fresh, 25, 30) == drive(s, 25, 30)
    assert fresh.state_dict() == s.state_dict()


def test_without_predictor_duplicates_are_bounded(tmp_path: Path) -> None:
    def duplicates(options: dict) -> int:
        result = search(NB201, data="nb201:cifar10", strategy="evolution", budget=300, seed=0, run=tmp_path / str(len(options)),
                        progress=False, strategy_options={"population": 10, **options})
        return sum(c.source is not None for c in result.candidates)

    plain, bounded = duplicates({"predictor": "none", "retries": 0}), duplicates({})  # the API's default bounds them
    assert plain > 100, plain  # a converged aging population re-proposes what it has seen
    assert bounded < plain / 10, (plain, bounded)
    assert bounded == duplicates({"predictor": "none"})


def test_warm_start_seeds_are_the_proxys_best_and_recorded(tmp_path: Path) -> None:
    result = search(NB201, data="nb201:cifar10", strategy="evolution", budget=12, seed=2, run=tmp_path / "r", progress=False,
                    strategy_options={"population": 6, "warm_start": "synflow", "warm_start_pool": 15})
    first = result.candidates[:6]
    scores = [c.metrics["proxy_synflow"] for c in first]
    assert scores == sorted(scores, reverse=True)
    assert all("no data" in c.metrics["proxy_batch"] for c in first)
    assert all("proxy_synflow" not in c.metrics for c in result.candidates[6:])
    # the seeds are the best of the pool: no other sampled architecture scores higher than the last seed
    from nas.proxies import score

    pool_rng = random.Random("guided:2")
    pool = [NB201.sample(pool_rng) for _ in range(15)]
    others = [score(NB201, a, "synflow", seed=2) for a in pool if a.key not in {c.key for c in first}]
    assert max(others) <= min(scores)


def test_bad_guided_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown predictor 'forest'"):
        make_strategy("evolution", NB201, predictor="forest")
    with pytest.raises(UsageError, match="strategy 'rl' takes warm starts only"):
        make_strategy("rl", NB201, predictor="ensemble")
    with pytest.raises(UsageError, match="unknown zero-cost proxy"):
        make_strategy("nsga2", NB201, 2, warm_start="zen")
    with pytest.raises(UsageError, match="option 'kappa'"):
        make_strategy("evolution", NB201, predictor="ensemble", kappa=-1)
    with pytest.raises(UsageError, match="option 'thompson'"):
        make_strategy("evolution", NB201, predictor="ensemble", thompson=2)


def test_acquisition_defaults_and_the_size_feature() -> None:
    one, two = guided("evolution"), guided("nsga2")
    assert (one._thompson, one._kappa, one.options["random_pool"]) == (True, 2.0, 100)
    assert (two._thompson, two._kappa) == (False, 1.0)
    assert (one._explore, two._explore) == (0, 2)
    assert not guided("evolution", thompson=0)._thompson
    drive(one, 12)
    rows = one._rows()
    X = one._features([r.arch for r in rows])
    assert X.shape[1] == one._encoder.width + 1  # the path encoding and log parameters (known from the table)
    logs = np.log([TABLE.evaluate(NB201, r.arch).metrics["params"] for r in rows[:10]])  # standardised on the first `init`
    assert np.allclose(X[:10, -1], (logs - logs.mean()) / logs.std())
    # a strategy rebuilt from the state computes the same features (resume refits the same models)
    fresh = guided("evolution")
    fresh.load_state_dict(json.loads(json.dumps(one.state_dict())))
    assert np.array_equal(fresh._features([r.arch for r in rows]), X)
    # training spaces: the size feature only where parameters are counted anyway (an objective)
    from nas.evaluators import TrainingEvaluator

    mlp = load_space("mlp")
    ev = TrainingEvaluator("digits", device="cpu")
    acc = make_strategy("evolution", mlp, 1, 0, objectives=["accuracy"], predictor="ensemble")
    acc.bind_evaluator(ev)
    both = make_strategy("nsga2", mlp, 2, 0, objectives=["accuracy", "params"], predictor="ensemble")
    both.bind_evaluator(ev)
    assert acc._size is None and both._size is not None


def test_several_objectives_on_the_table_propose_the_cheapest_twin() -> None:
    """Cells of one key build one network, but the table measured each cell with every edge:
    with accuracy and latency each proposal is the fastest cell of its key."""
    from nas.nb201 import OPS
    from nas.strategies import Proposal

    slow = cell("none", "skip_connect", "skip_connect", "skip_connect", "skip_connect", "skip_connect")
    fast = cell("skip_connect", "skip_connect", "skip_connect", "skip_connect", "skip_connect", "none")
    latency = lambda a: TABLE.costs(NB201, a)["latency_ms"]  # noqa: E731
    assert slow.key == fast.key and (round(latency(slow), 3), round(latency(fast), 3)) == (4.057, 3.921)
    s = guided("nsga2", population=10)
    assert s._by_twins() and s._cheapest_twin(Proposal(slow)).arch == fast
    fastest: dict[str, float] = {}  # key -> the lowest latency of its cells, from the table's rows
    table = TABLE.table
    for i in range(table.n):
        arch = cell(*(OPS[o] for o in table.ops[i]))
        if arch.valid:
            fastest[arch.key] = min(fastest.get(arch.key, np.inf), latency(arch))
    for i in range(40):  # the base's first proposals (before the predictor) and the guided ones
        p = s.ask()
        assert latency(p.arch) == fastest[p.arch.key], (i, dict(p.arch))
        m = TABLE.evaluate(NB201, p.arch).metrics
        s.tell(Result(i, p.arch, (-m["val_accuracy"], m["latency_ms"]), 0.0, p.generation, p.parents))
    # one objective, and cheap objectives counted on built networks (the same for twins): as drawn
    assert not guided("evolution")._by_twins()
    from nas.evaluators import TrainingEvaluator

    both = make_strategy("nsga2", NB201, 2, 0, objectives=["accuracy", "params"], predictor="ensemble")
    both.bind_evaluator(TrainingEvaluator("digits", device="cpu"))
    assert not both._by_twins()


def test_explore_turns_are_the_base_strategys_own_proposals() -> None:
    """With `explore=1` every proposal after `init` is the base's: the same as without a predictor;
    with the default (every 2nd for several objectives) half of them differ."""
    def keys(**options) -> list[str]:
        s = make_strategy("nsga2", NB201, 2, 3, objectives=["accuracy", "latency"], population=10, **options)
        s.bind_evaluator(TABLE)
        return drive(s, 40)

    plain = keys(predictor="none")
    assert keys(predictor="ensemble", explore=1) == plain
    assert keys(predictor="ensemble") != plain and keys(predictor="ensemble")[:10] == plain[:10]


def test_auto_is_the_guided_default() -> None:
    s = make_strategy("auto", NB201, 1, 0)
    assert isinstance(s, Guided) and s.name == "evolution" and s.options["predictor"] == "ensemble"
    assert make_strategy("auto", NB201, 2, 0).name == "nsga2"


@pytest.mark.slow
def test_kill_9_guided_search_then_resume_is_exact(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from resume_worker import kill_and_resume
    from test_search import front_ids, snapshot

    import subprocess

    options = json.dumps({"population": 8, "predictor": "ensemble", "warm_start": "synflow", "warm_start_pool": 10})
    args = ["nsga2", "4", "60", "0.02", options]
    worker = [sys.executable, str(ROOT / "tests" / "resume_worker.py")]
    subprocess.run(worker + ["start", str(tmp_path / "straight"), str(tmp_path / "straight.log")] + args, check=True, timeout=300)
    kills = kill_and_resume(args, tmp_path / "killed", tmp_path / "killed.log", 3, random.Random(5))
    assert kills >= 2, "the search finished before it could be killed; slow the worker down"
    assert snapshot(tmp_path / "killed") == snapshot(tmp_path / "straight")
    assert front_ids(tmp_path / "killed") == front_ids(tmp_path / "straight")
    # the warm start's proxy scores were computed once per process that needed them, and recorded
    straight = snapshot(tmp_path / "straight")
    assert sum('"proxy_synflow"' in row[4] for row in straight) == 8


def test_config_with_guided_options_starts(tmp_path: Path) -> None:
    cfg = SearchConfig(space=space_config(NB201), data="nb201:cifar10", objectives=["accuracy"], strategy="random", budget=15,
                       strategy_options={"predictor": "ensemble", "init": 5})
    session = start(cfg, tmp_path / "r", progress=False, log=lambda s: None)
    try:
        result = session.run()
    finally:
        session.store.close()
    assert len({c.key for c in result.candidates}) == 15 and all(c.source is None for c in result.candidates)


def test_warm_start_of_rl_seeds_its_first_proposals() -> None:
    s = make_strategy("rl", NB201, 1, 0, warm_start="synflow", warm_start_pool=6, warm_start_seeds=3)
    s.bind_evaluator(TABLE)
    first = [s.ask() for _ in range(3)]
    assert all("proxy_synflow" in s.proposal_info(p.arch) for p in first)
    for i, p in enumerate(first):
        s.tell(Result(i, p.arch, (-TABLE.evaluate(NB201, p.arch).metrics["val_accuracy"],)))
    assert s.proposal_info(s.ask().arch) == {}  # the controller's own proposals from here on


@pytest.mark.parametrize("name", ["nb201", "cnn", "resnet", "mlp"])
def test_cheap_objectives_counted_on_the_meta_device_equal_a_real_build(name: str) -> None:
    from nas.build import build_model
    from nas.measure import count_flops, count_params
    from nas.strategies.guided import _counted
    import nas

    space = nas.load_space(name)
    for seed in range(20):  # counted layer by layer (dense ones from their spec): the sums equal the whole network's
        arch = space.sample(seed)
        model = build_model(space, arch)
        assert _counted(space, arch, "params") == count_params(model)
        assert _counted(space, arch, "flops") == count_flops(model, space.input_shape)


def test_results_are_saved_as_json_text_and_a_state_of_lists_still_loads() -> None:
    """The state's results (`history`, and `fidelity` under a scheduler) are JSON text joined from
    each result's text, encoded once (a commit does not encode them all again); a state saved
    before, with lists there, loads to the same strategy."""
    s = guided("nsga2", seed=3, population=8)
    drive(s, 25)
    for i, r in enumerate(list(s._history)[:10]):
        s.observe(Result(r.id, r.arch, r.values, r.violation, r.generation), 12 if i % 2 else 200)
    state = s.state_dict()
    assert isinstance(state["history"], str) and isinstance(state["fidelity"], str)
    assert json.loads(state["history"]) == [[list(NB201.encode(r.arch)), list(r.values), r.violation, r.id, r.generation]
                                            for r in s._history]
    assert [e for e, _ in json.loads(state["fidelity"])] == list(s._fidelity)
    old = {**state, "history": json.loads(state["history"]), "fidelity": json.loads(state["fidelity"])}
    for form in (json.loads(json.dumps(state)), json.loads(json.dumps(old))):
        fresh = guided("nsga2", seed=3, population=8)
        fresh.load_state_dict(form)
        assert fresh.state_dict() == s.state_dict()
    assert drive(fresh, 10, 100) == drive(s, 10, 100)


def test_under_a_scheduler_the_predictor_learns_from_the_highest_fidelity_with_enough_results() -> None:
    """BOHB's rule: the model is fitted on the results at the largest number of epochs that holds
    at least `init` of them (observed rung by rung), else on the first results; and every 3rd
    proposal is a uniform sample once results come by fidelity. All of it survives a resume."""
    s = guided("evolution")
    low, high = [], []
    for i in range(14):
        p = s.ask()
        m12 = TABLE.evaluate(NB201, p.arch, epochs=12).metrics
        r = Result(i, p.arch, (-m12["val_accuracy"],), 0.0, p.generation, p.parents)
        s.tell(r)
        s.observe(r, 12)
        low.append(r)
    assert s._learning() == (12, low)
    for r in low[:9]:  # nine promoted to 200 epochs: not yet enough
        m200 = TABLE.evaluate(NB201, r.arch, epochs=200).metrics
        hr = Result(r.id, r.arch, (-m200["val_accuracy"],), 0.0, r.generation, r.parents)
        s.observe(hr, 200)
        high.append(hr)
    assert s._learning() == (12, low)
    m200 = TABLE.evaluate(NB201, low[9].arch, epochs=200).metrics
    high.append(Result(low[9].id, low[9].arch, (-m200["val_accuracy"],), 0.0))
    s.observe(high[-1], 200)
    epochs, rows = s._learning()
    assert epochs == 200 and [r.values for r in rows] == [r.values for r in high]
    assert s._incumbents()[0].values == min(r.values for r in high)  # local search starts at the 200-epoch best
    # a rebuilt strategy carries on identically, uniform turns included
    fresh = guided("evolution")
    fresh.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert fresh._learning()[0] == 200 and [r.values for r in fresh._learning()[1]] == [r.values for r in rows]
    uniform = []
    fresh._uniform = lambda real=fresh._uniform: (uniform.append(fresh.n_asked), real())[1]  # type: ignore[method-assign]
    assert drive(s, 6, start_id=100) == drive(fresh, 6, start_id=100)
    assert uniform and all(n % 3 == 0 for n in uniform) and len(uniform) == 2
    # without a scheduler (nothing observed) no proposal is a uniform sample
    plain = guided("evolution")
    plain._uniform = lambda: pytest.fail("a uniform turn without a scheduler")  # type: ignore[method-assign]
    drive(plain, 20)
    assert plain._learning()[0] == 0


def test_a_capped_pool_draws_uniform_samples_only_for_the_places_they_keep(monkeypatch) -> None:
    """Counting parameters on built networks caps the pool at MAX_POOL_BUILT: a random share of the
    base's draws, the incumbents' neighbours and the uniform samples is scored, and a uniform sample
    is decoded only for a place it takes in that share."""
    from nas.evaluators import TrainingEvaluator
    from nas.strategies import guided as G

    mlp = load_space("mlp")
    s = make_strategy("nsga2", mlp, 2, 3, objectives=["accuracy", "params"], predictor="ensemble", explore=0)
    s.bind_evaluator(TrainingEvaluator("digits", device="cpu"))
    for i in range(12):  # accuracy rising with size: all 12 on the front, each with its neighbourhood in the pool
        p = s.ask()
        n = float(G._counted(mlp, p.arch, "params"))
        s.tell(Result(i, p.arch, (-(0.5 + 0.04 * np.log(n)), n)))
    sampled, scored = [], []
    real_sample, real_acquire = s._sample, s._acquire
    monkeypatch.setattr(s, "_sample", lambda: (sampled.append(1), real_sample())[1])
    monkeypatch.setattr(s, "_acquire", lambda archs: (scored.append(len(archs)), real_acquire(archs))[1])
    for _ in range(5):
        s.ask()
    # the neighbourhoods alone fill more than the cap (a uniform sample of a network already in the pool or seen is dropped)
    assert all(G.MAX_POOL_BUILT - 10 <= n <= G.MAX_POOL_BUILT for n in scored) and len(scored) == 5
    assert 0 < len(sampled) < 5 * s.options["random_pool"] // 2  # about cap / pool of the 100 each time, not all
