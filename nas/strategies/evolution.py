"""Evolutionary strategies: aging evolution (one objective) and NSGA-II (several, with DEAP).

This is the only module of the project that imports DEAP. DEAP's global `creator` is not used:
the fitness class is built privately per strategy, so nothing global is registered. DEAP's
operators draw from the global `random` module; every call into DEAP runs inside
`_deap_random`, which lends them the strategy's own generator and puts the global state back,
so a strategy stays seeded and resumable and the caller's `random` is untouched.
"""

from __future__ import annotations

import random
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from deap import base as deap_base
from deap import tools

from ..errors import UsageError
from ..space import Architecture, SearchSpace, SpaceError
from .base import (
    Option,
    Proposal,
    Result,
    Strategy,
    arch_token,
    register_strategy,
    result_from_json,
    result_to_json,
    standing,
)


@contextmanager
def _deap_random(rng: random.Random) -> Iterator[None]:
    """Run DEAP's global-`random` draws on `rng`'s stream; restore the global state after.
    Not thread-safe: another thread drawing from `random` meanwhile would see `rng`'s stream."""
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


# -- aging evolution ----------------------------------------------------------------------------
@register_strategy("evolution")
class AgingEvolution(Strategy):
    """Aging (regularised) evolution: Real, Aggarwal, Huang and Le, "Regularized Evolution for
    Image Classifier Architecture Search", AAAI 2019.

    The first `population` asks are uniform samples. Afterwards each ask draws `sample` members
    of the current population uniformly (without replacement), takes the best and returns a
    mutation of it (`space.mutate`: one active decision changed). Every told result joins the
    population in order of arrival, and once it holds more than `population` members the
    oldest leaves -- whatever its quality, which is what regularises the search.

    Only the FIRST objective is optimised; further objectives are ignored (use `nsga2` for a
    Pareto front). Feasible results beat infeasible ones, infeasible ones rank by violation,
    failed ones (values None or non-finite) are worst.

    Steady-state: with asks outstanding and the population still empty (all initial samples
    still out) an ask is another uniform sample; a space whose mutation fails repeatedly
    (SpaceError) also gets a sample.
    """

    OPTIONS = {
        # Real et al. ran P=100, S=25 over 20k models; at the 100-500 evaluations of a typical
        # run here a smaller P leaves most of the budget to evolution (NASLib runs P=10, S=3 on
        # NAS-Bench-201 at 100 evaluations). P=20 keeps the initial random phase at 20% of 100
        # and S=5 keeps Real et al.'s selection pressure S/P = 1/4.
        "population": Option(20, int, lambda v: v >= 2, "an integer >= 2", "members kept (P); the first P asks are random"),
        "sample": Option(5, int, lambda v: v >= 1, "an integer >= 1", "members drawn per tournament (S); at most P"),
    }

    def __init__(self, space: SearchSpace, n_objectives: int = 1, seed: int = 0, **options: Any) -> None:
        super().__init__(space, n_objectives, seed, **options)
        if self.options["sample"] > self.options["population"]:
            raise UsageError(f"option 'sample' of strategy {self.name!r} must be at most population ({self.options['population']}), got {self.options['sample']}")
        self._population: deque[Result] = deque()

    @property
    def members(self) -> tuple[Result, ...]:
        """The current population, oldest first."""
        return tuple(self._population)

    def ask(self) -> Proposal:
        self.n_asked += 1
        if self.n_asked <= self.options["population"] or not self._population:
            return Proposal(self.space.sample(self.rng))
        contenders = self.rng.sample(list(self._population), min(self.options["sample"], len(self._population)))
        parent = min(contenders, key=standing)
        try:
            child = self.space.mutate(parent.arch, self.rng)
        except SpaceError:
            return Proposal(self.space.sample(self.rng))
        return Proposal(child, parent.generation + 1, (parent.id,))

    def tell(self, result: Result) -> None:
        self._check(result)
        self.n_told += 1
        self._population.append(result)
        while len(self._population) > self.options["population"]:
            self._population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": [result_to_json(r) for r in self._population]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._population = deque(result_from_json(self.space, d) for d in state["population"])


# -- NSGA-II ------------------------------------------------------------------------------------
class _Individual(list):
    """An integer genome (one gene per decision, inactive ones kept as latent information)
    with the DEAP fitness and the result it was evaluated as."""

    def __init__(self, genome: Sequence[int], result: Result, fitness: deap_base.Fitness) -> None:
        super().__init__(genome)
        self.result = result
        self.fitness = fitness


@register_strategy("nsga2")
class NSGA2(Strategy):
    """NSGA-II (Deb, Pratap, Agarwal and Meyarivan, "A fast and elitist multiobjective genetic
    algorithm: NSGA-II", IEEE TEC 2002) on the space's integer genome, with DEAP.

    Breeding: two binary tournaments on the parent population (Pareto dominance first, then
    the larger crowding distance, then a coin), uniform crossover (`tools.cxUniform`, swap
    probability 1/2) with probability `crossover_prob`, and uniform integer mutation
    (`tools.mutUniformInt`) of each gene with probability `mutation_prob` (default 1/genes).
    A child whose active decisions equal a parent's gets one active gene changed; an invalid
    child (`not arch.valid`) is bred again, and after a few tries the child is
    `space.mutate(first parent)`. Genes of inactive decisions stay in the genome.

    Steady-state: the first `population` (N) asks are uniform samples; after that each ask
    breeds one child from the current parents without waiting for outstanding results (before
    the first selection the results told so far stand in for the parents). Each time N new
    results have been told, environmental selection `tools.selNSGA2(parents + new, N)`
    (non-dominated sorting, then crowding distance) picks the next parents. With one worker
    this is the generational NSGA-II.

    Constraints (Deb 2000, "An efficient constraint handling method for genetic algorithms";
    Deb et al. 2002, Sec. V): within the individuals being compared, a feasible one keeps its
    objective vector; an infeasible one gets (M + r*step, ..., M + r*step) where M is the
    largest feasible objective value, step = max(1, |M| * 2**-40) and r >= 1 is the rank of its
    violation among the distinct violations present; a failed one (values None or non-finite)
    gets r one beyond the largest. Every infeasible vector is then strictly worse than every
    feasible one in every objective, and a smaller violation strictly better than a larger one,
    so DEAP's ordinary Pareto dominance reproduces Deb's constraint-domination exactly: a
    feasible individual dominates any infeasible one, and among infeasible ones less violation
    dominates. The violation's rank stands in for the violation itself so that M + violation
    cannot round a small violation away when M is large (a FLOP count, say).
    """

    OPTIONS = {
        # N=20: at 100-500 evaluations this gives 5-25 generations, with a front of up to 20
        # points to choose from; Deb et al. 2002 used N=100 over 25k evaluations.
        "population": Option(20, int, lambda v: v >= 2, "an integer >= 2", "parents kept (N); the first N asks are random"),
        "crossover_prob": Option(0.9, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "probability a child is crossed over (Deb et al. 2002: 0.9)"),
        "mutation_prob": Option(None, float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1] (or None for 1/genes)", "probability each gene is redrawn; default 1/genes (Deb et al. 2002)", optional=True),
    }
    TRIES = 20  # breeding attempts before falling back to space.mutate

    def __init__(self, space: SearchSpace, n_objectives: int = 1, seed: int = 0, **options: Any) -> None:
        super().__init__(space, n_objectives, seed, **options)
        self._sizes = space.genome_sizes()
        self._labels = space.labels
        self._indpb = self.options["mutation_prob"] or 1.0 / max(1, len(self._sizes))
        self._fitness = type("NasFitness", (deap_base.Fitness,), {"weights": (-1.0,) * n_objectives})
        self._parents: list[_Individual] = []
        self._new: list[_Individual] = []  # told since the last selection, in order of arrival
        self._pending: dict[str, list[list[int]]] = {}  # genomes of proposals not yet told
        self.n_selections = 0

    @property
    def members(self) -> tuple[Result, ...]:
        """The current parent population (the last selection's survivors)."""
        return tuple(ind.result for ind in self._parents)

    # -- ask ------------------------------------------------------------------------------------
    def ask(self) -> Proposal:
        self.n_asked += 1
        pool = self._parents or self._ranked(self._new)
        if self.n_asked <= self.options["population"] or not pool:
            arch = self.space.sample(self.rng)
            self._remember(arch, self._with_active(None, arch))
            return Proposal(arch)
        a, b = self._tournament(pool), self._tournament(pool)
        genome, arch = self._breed(a, b)
        self._remember(arch, genome)
        parents = tuple(dict.fromkeys((a.result.id, b.result.id)))
        return Proposal(arch, max(a.result.generation, b.result.generation) + 1, parents)

    def _tournament(self, pool: Sequence[_Individual]) -> _Individual:
        """Binary tournament on dominance, then crowding distance (as DEAP's selTournamentDCD,
        which needs a population size divisible by 4)."""
        i, j = self.rng.sample(range(len(pool)), 2) if len(pool) > 1 else (0, 0)
        a, b = pool[i], pool[j]
        if a.fitness.dominates(b.fitness):
            return a
        if b.fitness.dominates(a.fitness):
            return b
        if a.fitness.crowding_dist != b.fitness.crowding_dist:
            return a if a.fitness.crowding_dist > b.fitness.crowding_dist else b
        return a if self.rng.random() < 0.5 else b

    def _breed(self, a: _Individual, b: _Individual) -> tuple[list[int], Architecture]:
        up = [s - 1 for s in self._sizes]
        low = [0] * len(up)
        for _ in range(self.TRIES):
            child, other = list(a), list(b)
            cross = self.rng.random() < self.options["crossover_prob"]
            with _deap_random(self.rng):
                if cross:
                    tools.cxUniform(child, other, 0.5)
                tools.mutUniformInt(child, low, up, self._indpb)
            arch = self.space.decode(child)
            if arch in (a.result.arch, b.result.arch):
                self._change_one_active(child, arch)
                arch = self.space.decode(child)
            if arch.valid and arch not in (a.result.arch, b.result.arch):
                return child, arch
        try:
            arch = self.space.mutate(a.result.arch, self.rng)
        except SpaceError:
            arch = self.space.sample(self.rng)
        return self._with_active(list(a), arch), arch

    def _change_one_active(self, genome: list[int], arch: Architecture) -> None:
        movable = [i for i, label in enumerate(self._labels) if label in arch and self._sizes[i] > 1]
        if movable:
            i = self.rng.choice(movable)
            genome[i] = self.rng.choice([g for g in range(self._sizes[i]) if g != genome[i]])

    def _with_active(self, genome: list[int] | None, arch: Architecture) -> list[int]:
        """`arch`'s genes for its active decisions; the others from `genome`, or random."""
        active = self.space.encode(arch)
        if genome is None:
            genome = [self.rng.randrange(s) for s in self._sizes]
        return [active[i] if label in arch else genome[i] for i, label in enumerate(self._labels)]

    def _remember(self, arch: Architecture, genome: list[int]) -> None:
        self._pending.setdefault(arch_token(arch), []).append(genome)

    # -- tell -----------------------------------------------------------------------------------
    def tell(self, result: Result) -> None:
        self._check(result)
        self.n_told += 1
        token = arch_token(result.arch)
        waiting = self._pending.get(token)
        if waiting:
            genome = waiting.pop(0)
            if not waiting:
                del self._pending[token]
        else:  # a result the strategy did not propose (e.g. seeded by the driver)
            genome = list(self.space.encode(result.arch))
        self._new.append(_Individual(genome, result, self._fitness()))
        if len(self._new) >= self.options["population"]:
            pool = self._parents + self._new
            self._assign_fitness(pool)
            with _deap_random(self.rng):
                self._parents = tools.selNSGA2(pool, self.options["population"])
            self._new = []
            self.n_selections += 1

    def _ranked(self, inds: list[_Individual]) -> list[_Individual]:
        """`inds` with fitness and crowding distance assigned (as a selection would), same order."""
        if inds:
            self._assign_fitness(inds)
            with _deap_random(self.rng):
                tools.selNSGA2(inds, len(inds))
        return inds

    def _assign_fitness(self, inds: Sequence[_Individual]) -> None:
        """Feasible: the objectives; infeasible and failed: the penalised vectors of the class
        docstring, which make Pareto dominance equal Deb's constraint-domination."""
        top = max((v for ind in inds if ind.result.feasible for v in ind.result.values or ()), default=0.0)
        step = max(1.0, abs(top) * 2.0**-40)
        levels = sorted({ind.result.violation for ind in inds if not ind.result.failed and not ind.result.feasible})
        rank = {v: r for r, v in enumerate(levels, 1)}
        for ind in inds:
            r = ind.result
            if r.feasible:
                ind.fitness.values = r.values
            else:
                level = len(levels) + 1 if r.failed else rank[r.violation]
                ind.fitness.values = (top + step * level,) * self.n_objectives

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def parent(ind: _Individual) -> dict[str, Any]:
            crowd = ind.fitness.crowding_dist
            return {**result_to_json(ind.result), "genome": list(ind), "fitness": list(ind.fitness.values),
                    "crowding": None if crowd == float("inf") else crowd}

        return {
            **super().state_dict(),
            "parents": [parent(ind) for ind in self._parents],
            "new": [{**result_to_json(ind.result), "genome": list(ind)} for ind in self._new],
            "pending": {token: [list(g) for g in genomes] for token, genomes in self._pending.items()},
            "selections": self.n_selections,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._parents = []
        for d in state["parents"]:
            ind = _Individual([int(g) for g in d["genome"]], result_from_json(self.space, d), self._fitness(tuple(d["fitness"])))
            ind.fitness.crowding_dist = float("inf") if d["crowding"] is None else float(d["crowding"])
            self._parents.append(ind)
        self._new = [_Individual([int(g) for g in d["genome"]], result_from_json(self.space, d), self._fitness()) for d in state["new"]]
        self._pending = {token: [[int(g) for g in genome] for genome in genomes] for token, genomes in state["pending"].items()}
        self.n_selections = int(state["selections"])
