"""Behaviour of the search strategies: one suite run over every registered strategy (seeding,
exact resume, steady-state ask/tell, failed and infeasible results, the global RNG, valid
proposals), convergence on toy problems with known optima, NSGA-II's constraint domination,
and the registry's errors."""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any, Callable

import numpy as np
import pytest

from nas.errors import UsageError
from nas.pareto import hypervolume
from nas.space import Architecture, SearchSpace, dsl, load_space
from nas.strategies import (
    STRATEGIES,
    Proposal,
    Result,
    Strategy,
    default_strategy,
    make_strategy,
)
from nas.strategies.base import arch_token

NAMES = sorted(STRATEGIES)
BREEDERS = {"evolution", "nsga2"}  # strategies whose children must name their parents
N_GENES = 8
TARGET = (3, 7, 1, 9, 0, 5, 2, 8)

Evaluation = tuple["tuple[float, ...] | None", float]  # (values, violation)
Evaluator = Callable[[Architecture], Evaluation]


@pytest.fixture(scope="module")
def toy() -> SearchSpace:
    """8 decisions x0..x7, each an integer 0..9; the network itself does not depend on them."""
    return dsl.space(input=[4], body=[dsl.dense(units=8)], name="toy",
                     decisions={f"x{i}": dsl.integer(0, 9) for i in range(N_GENES)})


@pytest.fixture(scope="module")
def mlp() -> SearchSpace:
    """A shipped space with conditional decisions (repeat counts, momentum)."""
    return load_space("mlp")


def genes(arch: Architecture) -> list[int]:
    return [arch[f"x{i}"] for i in range(N_GENES)]


def hashed(arch: Architecture, m: int = 2, *, bad: bool = True) -> Evaluation:
    """A deterministic fake evaluation: values from a hash of the architecture's values; with
    `bad`, about 1 in 10 fails and 2 in 10 are infeasible."""
    h = int.from_bytes(hashlib.sha256(arch_token(arch).encode()).digest(), "big")
    values = tuple(((h >> (16 * k)) & 0xFFFF) / 65535 for k in range(m))
    if bad and h % 10 == 0:
        return None, 0.0
    if bad and h % 10 in (1, 2):
        return values, ((h >> 200) & 0xFF) / 255 + 0.01
    return values, 0.0


def record(p: Proposal) -> tuple[Any, ...]:
    return (arch_token(p.arch), p.generation, p.parents)


class Driver:
    """A minimal driver: ids in order of asking, results told `batch` at a time in reverse."""

    def __init__(self, strategy: Strategy, evaluate: Evaluator) -> None:
        self.strategy = strategy
        self.evaluate = evaluate
        self.next_id = 0
        self.proposals: list[Proposal] = []
        self.results: dict[int, Result] = {}

    def ask(self) -> Result:
        p = self.strategy.ask()
        self.proposals.append(p)
        values, violation = self.evaluate(p.arch)
        r = Result(self.next_id, p.arch, values, violation, p.generation, p.parents)
        self.next_id += 1
        return r

    def tell(self, r: Result) -> None:
        self.results[r.id] = r
        self.strategy.tell(r)

    def run(self, steps: int, batch: int = 1) -> "Driver":
        done = 0
        while done < steps:
            out = [self.ask() for _ in range(min(batch, steps - done))]
            for r in reversed(out):
                self.tell(r)
            done += len(out)
        return self


def strategy(name: str, space: SearchSpace, seed: int = 0, n_objectives: int = 2, **options: Any) -> Strategy:
    return make_strategy(name, space, n_objectives, seed, **options)


def resumed(s: Strategy, space: SearchSpace) -> Strategy:
    """A fresh strategy built like `s`, loaded from a JSON round trip of its state."""
    fresh = make_strategy(s.name, space, s.n_objectives, s.seed, **s.options)
    fresh.load_state_dict(json.loads(json.dumps(s.state_dict(), allow_nan=False)))
    return fresh


# -- the suite over every strategy ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals_other_seed_others(name: str, toy: SearchSpace) -> None:
    runs = [Driver(strategy(name, toy, seed), hashed).run(80, batch=3) for seed in (5, 5, 6)]
    a, b, c = ([record(p) for p in d.proposals] for d in runs)
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [7, 45])
@pytest.mark.parametrize("space_name", ["toy", "mlp"])
def test_resume_from_state_dict_is_exact(name: str, k: int, space_name: str, request: pytest.FixtureRequest) -> None:
    space = request.getfixturevalue(space_name)
    whole = Driver(strategy(name, space, 1), hashed).run(k + 40)
    first = Driver(strategy(name, space, 1), hashed).run(k)
    second = Driver(resumed(first.strategy, space), hashed)
    second.next_id = first.next_id
    second.run(40)
    assert [record(p) for p in first.proposals + second.proposals] == [record(p) for p in whole.proposals]
    assert second.strategy.state_dict() == whole.strategy.state_dict()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [3, 41])
@pytest.mark.parametrize("space_name", ["toy", "mlp"])
def test_resume_with_asks_outstanding_is_exact(name: str, k: int, space_name: str, request: pytest.FixtureRequest) -> None:
    space = request.getfixturevalue(space_name)

    def until_snapshot() -> tuple[Driver, list[Result]]:
        d = Driver(strategy(name, space, 2), hashed).run(k)
        return d, [d.ask(), d.ask()]

    whole, out = until_snapshot()
    for r in reversed(out):
        whole.tell(r)
    told = resumed(whole.strategy, space)  # a copy: `whole` runs on
    whole.run(30)

    cut, out2 = until_snapshot()
    assert out2 == out
    rest = Driver(resumed(cut.strategy, space), hashed)
    rest.next_id = cut.next_id
    for r in reversed(out2):
        rest.tell(r)
    assert rest.strategy.state_dict() == told.state_dict()
    rest.run(30)
    assert [record(p) for p in cut.proposals + rest.proposals] == [record(p) for p in whole.proposals]
    assert rest.strategy.state_dict() == whole.strategy.state_dict()


@pytest.mark.parametrize("name", NAMES)
def test_steady_state_many_asks_then_tells_in_any_order(name: str, toy: SearchSpace) -> None:
    s = strategy(name, toy, 3)
    d = Driver(s, hashed)
    shuffle = random.Random(0)
    for _ in range(12):
        out = [d.ask() for _ in range(7)]
        shuffle.shuffle(out)
        for r in out:
            d.tell(r)
    assert len(d.proposals) == 84
    assert all(p.arch.valid for p in d.proposals)


@pytest.mark.parametrize("name", NAMES)
def test_failed_and_infeasible_results_are_not_preferred_as_parents(name: str, toy: SearchSpace) -> None:
    def mostly_bad(arch: Architecture) -> Evaluation:
        values, _ = hashed(arch, bad=False)
        h = int(hashlib.sha256(arch_token(arch).encode()).hexdigest(), 16) % 10
        if h < 4:
            return None, 0.0
        if h < 7:
            return values, 0.5 + h
        return values, 0.0

    d = Driver(strategy(name, toy, 4), mostly_bad).run(200, batch=2)
    bad = [not r.feasible for r in d.results.values()]
    picks = [not d.results[i].feasible for p in d.proposals for i in p.parents]
    assert np.mean(bad) > 0.6
    if name in BREEDERS:
        assert picks, "children were bred"
    if picks:
        assert np.mean(picks) < 0.5 * np.mean(bad)


@pytest.mark.parametrize("name", NAMES)
def test_global_random_state_is_untouched(name: str, toy: SearchSpace) -> None:
    random.seed(1234)
    before = random.getstate()
    d = Driver(strategy(name, toy, 0), hashed).run(70, batch=2)
    resumed(d.strategy, toy).ask()
    assert random.getstate() == before


@pytest.mark.parametrize("name", NAMES)
def test_strategies_never_use_the_global_random(name: str, toy: SearchSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lending the global `random` to a library is not thread-safe: no strategy may touch it."""
    def used(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the global random module was used")

    for fn in ("getstate", "setstate", "random", "randint", "randrange", "choice", "sample", "shuffle", "uniform", "seed"):
        monkeypatch.setattr(random, fn, used)
    d = Driver(strategy(name, toy, 0), hashed).run(70, batch=2)
    resumed(d.strategy, toy).ask()


@pytest.mark.parametrize("name", sorted(BREEDERS))
def test_strategies_in_threads_propose_as_alone(name: str, toy: SearchSpace) -> None:
    import threading

    def run(seed: int) -> list[Any]:
        return [record(p) for p in Driver(strategy(name, toy, seed), hashed).run(150, batch=2).proposals]

    alone = {seed: run(seed) for seed in range(4)}
    together: dict[int, list[Any]] = {}
    threads = [threading.Thread(target=lambda s=seed: together.__setitem__(s, run(s))) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_nsga2_operators_draw_like_deaps() -> None:
    """The two operators written on the strategy's own RNG make the same draws as DEAP's on the
    global one, so runs keep their proposals for a seed."""
    tools = pytest.importorskip("deap.tools")
    from nas.strategies.evolution import cx_uniform, mut_uniform_int

    for seed in range(20):
        a, b = list(range(12)), list(range(100, 112))
        low, up = [0] * 12, [9] * 12
        random.seed(seed)
        ref_a, ref_b = list(a), list(b)
        tools.cxUniform(ref_a, ref_b, 0.5)
        tools.mutUniformInt(ref_a, low, up, 0.3)
        rng = random.Random(seed)
        cx_uniform(a, b, 0.5, rng)
        mut_uniform_int(a, low, up, 0.3, rng)
        assert (a, b) == (ref_a, ref_b)
        assert rng.getstate() == random.getstate()


def test_nsga2_ranks_with_paretos_constrained_sort(toy: SearchSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Selection is `nas.pareto.nondominated_sort` with the violations (Deb's constraint
    domination), not penalty vectors: what it keeps is what that sort and crowding say."""
    import nas.pareto as pareto

    calls: list[Any] = []
    real = pareto.nondominated_sort

    def spy(F: Any, violation: Any = None) -> Any:
        calls.append(None if violation is None else np.asarray(violation).copy())
        return real(F, violation)

    monkeypatch.setattr(pareto, "nondominated_sort", spy)
    n = 6
    s = strategy("nsga2", toy, 0, population=n)
    archs = iter(toy.make({f"x{i}": (j >> i) & 1 for i in range(N_GENES)}) for j in range(64))
    told = [Result(i, next(archs), values, violation) for i, (values, violation) in enumerate([
        ((0.0, 0.0), 0.5), ((3.0, 3.0), 0.0), ((1.0, 4.0), 0.0), (None, 0.0), ((4.0, 1.0), 0.0), ((2.0, 2.0), 0.0),
        ((9.0, 9.0), 0.0), ((0.0, 0.0), 0.2), (None, 0.0), ((2.5, 2.5), 0.0), ((5.0, 0.5), 0.0), ((0.5, 5.0), 0.0)])]
    for r in told[:n]:
        s.tell(r)
    assert calls and calls[-1] is not None and calls[-1].tolist() == [0.5, 0.0, 0.0, 1.5, 0.0, 0.0]
    for r in told[n:]:
        s.tell(r)
    v = calls[-1]
    assert v is not None and len(v) == 2 * n
    # feasible fronts first ({2,4,5,10,11} then {1,9}); no infeasible or failed one survives
    kept = {r.id for r in s.members}
    assert {2, 4, 5, 10, 11} <= kept and len(kept) == n and kept <= {1, 2, 4, 5, 9, 10, 11}


@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_valid_and_children_name_their_parents(name: str, toy: SearchSpace) -> None:
    d = Driver(strategy(name, toy, 7), hashed).run(90, batch=3)
    assert all(p.arch.valid and p.arch.fingerprint == toy.fingerprint for p in d.proposals)
    children = [p for p in d.proposals if p.parents]
    for p in children:
        assert all(i in d.results for i in p.parents)
        assert p.generation == 1 + max(d.results[i].generation for i in p.parents)
        assert p.arch not in [d.results[i].arch for i in p.parents]
    assert all(p.generation == 0 for p in d.proposals if not p.parents)
    if name in BREEDERS:
        assert len(children) > 30
        assert max(p.generation for p in children) >= 2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("space_name", ["nb201", "mlp"])
def test_shipped_spaces_smoke(name: str, space_name: str) -> None:
    space = load_space(space_name)

    def by_key(arch: Architecture) -> Evaluation:
        h = int(arch.key[-8:], 16) if arch.valid else 0
        return (h % 997 / 997, h % 991 / 991), 0.0

    d = Driver(strategy(name, space, 0), by_key).run(60, batch=3)
    assert all(p.arch.valid and p.arch.fingerprint == space.fingerprint for p in d.proposals)
    assert resumed(d.strategy, space).state_dict() == d.strategy.state_dict()


@pytest.mark.parametrize("name", NAMES)
def test_tell_rejects_results_of_the_wrong_shape(name: str, toy: SearchSpace) -> None:
    s = strategy(name, toy, 0)
    arch = s.ask().arch
    with pytest.raises(ValueError, match="has 1 objective values.*expects 2"):
        s.tell(Result(0, arch, (1.0,)))
    with pytest.raises(ValueError, match="violation"):
        s.tell(Result(0, arch, (1.0, 2.0), violation=-1.0))
    other = load_space("nb201").sample(random.Random(0))
    with pytest.raises(ValueError, match="another space"):
        s.tell(Result(0, other, (1.0, 2.0)))


@pytest.mark.parametrize("name", NAMES)
def test_state_from_other_settings_is_refused(name: str, toy: SearchSpace) -> None:
    state = Driver(strategy(name, toy, 0), hashed).run(5).strategy.state_dict()
    with pytest.raises(UsageError, match="n_objectives: saved 2, now 3"):
        strategy(name, toy, 0, n_objectives=3).load_state_dict(state)
    other = next(n for n in NAMES if n != name)
    with pytest.raises(UsageError, match=f"strategy: saved {name!r}"):
        strategy(other, toy, 0).load_state_dict(state)


# -- convergence --------------------------------------------------------------------------------
def distance(arch: Architecture) -> float:
    return float(sum(abs(g - t) for g, t in zip(genes(arch), TARGET)))


def best_distance(name: str, space: SearchSpace, seed: int, budget: int = 300, **options: Any) -> float:
    d = Driver(strategy(name, space, seed, n_objectives=1, **options), lambda a: ((distance(a),), 0.0))
    d.run(budget)
    return min(r.values[0] for r in d.results.values())


def test_evolution_converges_on_a_toy_optimum(toy: SearchSpace) -> None:
    seeds = range(10)
    rand = [best_distance("random", toy, s) for s in seeds]
    default = [best_distance("evolution", toy, s) for s in seeds]
    # the toy is unimodal and separable: stronger selection pressure (S = P/2) hill-climbs it
    greedy = [best_distance("evolution", toy, s, sample=10) for s in seeds]
    assert np.mean(default) < 0.5 * np.mean(rand), (default, rand)
    assert sum(b <= 1 for b in greedy) >= 7, greedy
    assert min(greedy) == 0, greedy


def zdt1(arch: Architecture) -> Evaluation:
    """A discrete ZDT1 (Zitzler, Deb and Thiele 2000): x0 moves along the front, the other
    genes must all be 0 to reach it; x0 > 7 is infeasible."""
    x = genes(arch)
    f1 = x[0] / 9
    g = 1 + sum(x[1:]) / (N_GENES - 1)
    return (f1, g * (1 - math.sqrt(f1 / g))), float(max(0, x[0] - 7))


def front_hypervolume(name: str, space: SearchSpace, seed: int, budget: int = 300) -> float:
    d = Driver(strategy(name, space, seed), zdt1).run(budget)
    F = np.array([r.values for r in d.results.values() if r.feasible])
    return hypervolume(F, np.array([1.1, 11.0]))


def test_nsga2_front_beats_random_search(toy: SearchSpace) -> None:
    seeds = range(8)
    nsga2 = [front_hypervolume("nsga2", toy, s) for s in seeds]
    rand = [front_hypervolume("random", toy, s) for s in seeds]
    assert np.mean(nsga2) > np.mean(rand) + 0.5, (nsga2, rand)
    # the optimal front (x1..x7 = 0, x0 in 0..7) has hypervolume 11.69; random gets ~10.1
    assert max(nsga2) > 11.2


# -- strategy-specific behaviour ----------------------------------------------------------------
def test_evolution_parent_ranking(toy: SearchSpace) -> None:
    archs = [toy.make({f"x{i}": j for i in range(N_GENES)}) for j in range(8)]

    def fill(results: list[Result]) -> Strategy:
        s = strategy("evolution", toy, 0, n_objectives=1, population=4, sample=4)
        for r in results:
            s.ask()
            s.tell(r)
        return s

    s = fill([
        Result(0, archs[0], None),  # failed
        Result(1, archs[1], (-5.0,), violation=2.0),
        Result(2, archs[2], (-9.0,), violation=1.0),
        Result(3, archs[3], (1e6,)),
    ])
    assert s.ask().parents == (3,)  # feasible beats infeasible whatever the values
    for i in (4, 5, 6):
        s.tell(Result(i, archs[i], None))
    assert [r.id for r in s.members] == [3, 4, 5, 6]  # the oldest leave first
    assert s.ask().parents == (3,)
    s.tell(Result(7, archs[7], (0.0,), violation=0.5))
    assert [r.id for r in s.members] == [4, 5, 6, 7]  # the best one aged out too
    assert s.ask().parents == (7,)  # infeasible beats failed

    s = fill([
        Result(0, archs[0], None),
        Result(1, archs[1], (-5.0,), violation=2.0),
        Result(2, archs[2], (3.0,), violation=1.0),
        Result(3, archs[3], (-9.0,), violation=1.0),
    ])
    assert s.ask().parents == (3,)  # less violation first, then the objective


def test_evolution_uses_only_the_first_objective(toy: SearchSpace) -> None:
    s = strategy("evolution", toy, 0, n_objectives=2, population=2, sample=2)
    a, b = (toy.make({f"x{i}": j for i in range(N_GENES)}) for j in (1, 2))
    for r in (Result(0, a, (1.0, -100.0)), Result(1, b, (0.5, 100.0))):
        s.ask()
        s.tell(r)
    assert s.ask().parents == (1,)


def test_nsga2_constraint_domination(toy: SearchSpace) -> None:
    n = 4
    s = strategy("nsga2", toy, 0, population=n)
    archs = iter(toy.make({f"x{i}": (j >> i) & 1 for i in range(N_GENES)}) for j in range(64))
    ids = iter(range(1000))

    def tell(values: tuple[float, float] | None, violation: float = 0.0) -> int:
        r = Result(next(ids), next(archs), values, violation)
        s.tell(r)
        return r.id

    infeasible = [tell((0.0, 0.0), 1.0 + i) for i in range(n)]
    assert {r.id for r in s.members} == set(infeasible)  # nothing better yet
    # feasible ones with huge values still beat infeasible ones with perfect values
    feasible = [tell((1e15 + i, 1e15 - i)) for i in range(n)]
    assert {r.id for r in s.members} == set(feasible)
    assert s.n_selections == 2

    s = strategy("nsga2", toy, 0, population=n)
    one = tell((1e15, 1e15))
    small = tell((5.0, 5.0), 1e-9)  # tiny violations, which 1e15 + violation would round away
    large = tell((0.0, 0.0), 2e-9)
    failed = [tell(None) for _ in range(2)]
    worse = [tell((0.0, 0.0), 3e-9), tell((0.0, 0.0), 4e-9)]
    tell(None)
    assert s.n_selections == 2
    kept = [r.id for r in s.members]
    assert set(kept) == {one, small, large, worse[0]}
    assert not set(kept) & set(failed)


def test_nsga2_children_keep_latent_genes() -> None:
    space = load_space("mlp")
    s = strategy("nsga2", space, 0, population=6)
    d = Driver(s, lambda a: hashed(a, bad=False))
    latent = []
    for _ in range(20):  # the state after every two results: which parents hold inactive decisions depends on the run
        d.run(2, batch=2)
        state = s.state_dict()
        for ind in state["parents"] + state["new"]:
            assert space.decode(ind["genome"]) == space.make(ind["arch"])
        latent += [g for ind in state["parents"] for g, label in zip(ind["genome"], space.labels) if label not in ind["arch"]]
    assert any(g != 0 for g in latent), "genes of inactive decisions are kept, not zeroed"
    assert s.n_selections == 40 // 6 and len(d.results) == 40


# -- registry and options -----------------------------------------------------------------------
def test_registry_and_default_strategy() -> None:
    assert {"random", "evolution", "nsga2"} <= set(STRATEGIES)
    assert all(STRATEGIES[n].name == n for n in STRATEGIES)
    assert default_strategy(1) == "evolution"
    assert default_strategy(3) == "nsga2"
    with pytest.raises(UsageError, match="n_objectives must be an integer >= 1, got 0"):
        default_strategy(0)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nope", {}, r"unknown strategy 'nope'; valid strategies: .*evolution, nsga2, random"),
        ("evolution", {"pop": 3}, r"unknown option 'pop' for strategy 'evolution'; valid options: population, sample"),
        ("random", {"population": 3}, r"unknown option 'population' for strategy 'random'; valid options: none"),
        ("evolution", {"population": 0}, r"option 'population' of strategy 'evolution' must be an integer >= 2, got 0"),
        ("evolution", {"population": 2.5}, r"'population' .* must be an integer >= 2, got 2.5"),
        ("evolution", {"population": True}, r"'population' .* must be an integer >= 2, got True"),
        ("evolution", {"population": "many"}, r"'population' .* got 'many'"),
        ("evolution", {"population": 4, "sample": 5}, r"option 'sample' of strategy 'evolution' must be at most population \(4\), got 5"),
        ("nsga2", {"crossover_prob": 1.5}, r"option 'crossover_prob' of strategy 'nsga2' must be a number in \[0, 1\], got 1.5"),
        ("nsga2", {"mutation_prob": 0}, r"option 'mutation_prob' .* must be a number in \(0, 1\]"),
        ("nsga2", {"mutation_prob": float("nan")}, r"option 'mutation_prob'"),
    ],
)
def test_make_strategy_errors(name: str, options: dict[str, Any], message: str, toy: SearchSpace) -> None:
    with pytest.raises(UsageError, match=message):
        make_strategy(name, toy, 2, 0, **options)


def test_options_from_a_command_line_and_their_defaults(toy: SearchSpace) -> None:
    s = make_strategy("evolution", toy, 1, 0, population="30", sample="6")
    assert s.options == {"population": 30, "sample": 6}
    assert make_strategy("evolution", toy).options == {"population": 20, "sample": 5}
    assert make_strategy("nsga2", toy, 2).options == {"population": 20, "crossover_prob": 0.9, "mutation_prob": None}
    with pytest.raises(UsageError, match="n_objectives of strategy 'nsga2' must be an integer >= 1"):
        make_strategy("nsga2", toy, 0)
    with pytest.raises(UsageError, match="seed of strategy 'random' must be an integer"):
        make_strategy("random", toy, 1, "x")  # type: ignore[arg-type]
