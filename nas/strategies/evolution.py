"""Evolutionary strategies: aging evolution (one objective) and NSGA-II (several objectives).

Both are plain Python on the strategy's own `random.Random` (no DEAP, no global `random`), so a
strategy is deterministic per seed, resumable exactly, and safe to run beside other threads.
NSGA-II's ranking is `nas.pareto`'s: its constrained non-dominated sort and crowding distance.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from .. import pareto
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
    standing_in,
)


def cx_uniform(a: list[int], b: list[int], indpb: float, rng: random.Random) -> None:
    """Uniform crossover in place: swap each gene of `a` and `b` with probability `indpb`
    (what DEAP's `tools.cxUniform` does, drawing from `rng`)."""
    for i in range(min(len(a), len(b))):
        if rng.random() < indpb:
            a[i], b[i] = b[i], a[i]


def mut_uniform_int(genome: list[int], low: Sequence[int], up: Sequence[int], indpb: float, rng: random.Random) -> None:
    """Uniform integer mutation in place: redraw gene i from [low[i], up[i]] with probability
    `indpb` (what DEAP's `tools.mutUniformInt` does, drawing from `rng`)."""
    for i, (lo, hi) in enumerate(zip(low, up)):
        if rng.random() < indpb:
            genome[i] = rng.randint(lo, hi)


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

    def observe(self, result: Result, epochs: int) -> None:
        """Under a multi-fidelity scheduler: a member's result is replaced by its latest rung's,
        so tournaments compare each member at the highest rung it reached (a candidate's rungs
        complete in order, so the latest is the highest). A promoted member's accuracy after
        more epochs then stands for it, not its first rung's; so does a duplicate's of it
        (`standing_in`)."""
        for i, r in enumerate(self._population):
            latest = standing_in(r, result)
            if latest is not None:
                self._population[i] = latest

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": [result_to_json(r) for r in self._population]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._population = deque(result_from_json(self.space, d) for d in state["population"])


# -- NSGA-II ------------------------------------------------------------------------------------
class _Individual:
    """An integer genome (one gene per decision, inactive ones kept as latent information), the
    result it was evaluated as, and its non-domination rank and crowding distance."""

    __slots__ = ("genome", "result", "rank", "crowding")

    def __init__(self, genome: Sequence[int], result: Result) -> None:
        self.genome = list(genome)
        self.result = result
        self.rank = 0
        self.crowding = 0.0


def _rank(inds: Sequence[_Individual]) -> list[np.ndarray]:
    """Assign rank and crowding distance to `inds` and return their fronts (index arrays).

    Deb's constraint domination through `nas.pareto.nondominated_sort(F, violation)`: feasible
    results compare by Pareto dominance on their values, infeasible ones by violation, and a failed
    one (values None or non-finite) counts as more violating than any other. Crowding distance
    (`nas.pareto.crowding_distance`) within each feasible front; 0 in infeasible fronts, whose
    members all share one violation (the earlier member is kept first)."""
    m = max((len(ind.result.values) for ind in inds if ind.result.values is not None), default=1)
    F = np.zeros((len(inds), m))
    v = np.zeros(len(inds))
    worst = max((ind.result.violation for ind in inds if not ind.result.failed), default=0.0) + 1.0
    for i, ind in enumerate(inds):
        r = ind.result
        if r.failed:
            v[i] = worst
        else:
            F[i] = r.values
            v[i] = r.violation
    fronts = pareto.nondominated_sort(F, v)
    for k, front in enumerate(fronts):
        crowd = pareto.crowding_distance(F[front]) if v[front[0]] == 0 else np.zeros(len(front))
        for i, d in zip(front, crowd):
            inds[i].rank, inds[i].crowding = k, float(d)
    return fronts


def _select(pool: Sequence[_Individual], n: int) -> list[_Individual]:
    """NSGA-II environmental selection (Deb et al. 2002, Sec. III-C): whole fronts in rank order
    while they fit, then the last front's members by decreasing crowding distance (ties: earlier
    in `pool` first)."""
    chosen: list[_Individual] = []
    for front in _rank(pool):
        members = [pool[i] for i in front]
        if len(chosen) + len(members) <= n:
            chosen += members
        else:
            chosen += sorted(members, key=lambda ind: -ind.crowding)[: n - len(chosen)]
        if len(chosen) == n:
            break
    return chosen


@register_strategy("nsga2")
class NSGA2(Strategy):
    """NSGA-II (Deb, Pratap, Agarwal and Meyarivan, "A fast and elitist multiobjective genetic
    algorithm: NSGA-II", IEEE TEC 2002) on the space's integer genome.

    Breeding: two binary tournaments on the parent population with the crowded-comparison
    operator (lower non-domination rank first, then the larger crowding distance, then a coin),
    uniform crossover (`cx_uniform`, swap probability 1/2) with probability `crossover_prob`, and
    uniform integer mutation (`mut_uniform_int`) of each gene with probability `mutation_prob`
    (default 1/genes). A child whose active decisions equal a parent's gets one active gene
    changed; an invalid child (`not arch.valid`) is bred again, and after a few tries the child is
    `space.mutate(first parent)`. Genes of inactive decisions stay in the genome.

    Steady-state: the first `population` (N) asks are uniform samples; after that each ask
    breeds one child from the current parents without waiting for outstanding results (before
    the first selection the results told so far, ranked among themselves, stand in for the
    parents). Each time N new results have been told, environmental selection over parents + new
    (non-dominated sorting, then crowding distance) picks the next N parents. With one worker
    this is the generational NSGA-II.

    Constraints: Deb's constraint domination (Deb 2000, "An efficient constraint handling method
    for genetic algorithms"; Deb et al. 2002, Sec. V), as `nas.pareto.nondominated_sort` does it
    given the violations: a feasible individual dominates any infeasible one, among infeasible
    ones less violation dominates, and a failed one is worst.
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
        """Binary tournament with Deb's crowded-comparison operator."""
        i, j = self.rng.sample(range(len(pool)), 2) if len(pool) > 1 else (0, 0)
        a, b = pool[i], pool[j]
        if a.rank != b.rank:
            return a if a.rank < b.rank else b
        if a.crowding != b.crowding:
            return a if a.crowding > b.crowding else b
        return a if self.rng.random() < 0.5 else b

    def _breed(self, a: _Individual, b: _Individual) -> tuple[list[int], Architecture]:
        up = [s - 1 for s in self._sizes]
        low = [0] * len(up)
        for _ in range(self.TRIES):
            child, other = list(a.genome), list(b.genome)
            if self.rng.random() < self.options["crossover_prob"]:
                cx_uniform(child, other, 0.5, self.rng)
            mut_uniform_int(child, low, up, self._indpb, self.rng)
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
        return self._with_active(list(a.genome), arch), arch

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
        self._new.append(_Individual(genome, result))
        if len(self._new) >= self.options["population"]:
            self._parents = _select(self._parents + self._new, self.options["population"])
            self._new = []
            self.n_selections += 1

    def observe(self, result: Result, epochs: int) -> None:
        """Under a multi-fidelity scheduler: an individual's result (a parent's or one told since
        the last selection) is replaced by its latest rung's, so tournaments and the next
        selection compare each at the highest rung it reached, not at the first rung, whose
        one-epoch accuracy favours what learns fastest in one epoch. When a parent changes, the
        parents are ranked again among themselves (their ranks and crowding distances are what
        the tournaments read). A duplicate of the candidate stands where it does (`standing_in`)."""
        upgraded = False
        for ind in self._parents:
            latest = standing_in(ind.result, result)
            if latest is not None:
                ind.result, upgraded = latest, True
        for ind in self._new:
            latest = standing_in(ind.result, result)
            if latest is not None:
                ind.result = latest
        if upgraded:
            _rank(self._parents)

    def _ranked(self, inds: list[_Individual]) -> list[_Individual]:
        """`inds` with rank and crowding distance assigned among themselves, same order."""
        if inds:
            _rank(inds)
        return inds

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def parent(ind: _Individual) -> dict[str, Any]:
            return {**result_to_json(ind.result), "genome": list(ind.genome),
                    "crowding": None if ind.crowding == float("inf") else ind.crowding}

        return {
            **super().state_dict(),
            "parents": [parent(ind) for ind in self._parents],
            "new": [{**result_to_json(ind.result), "genome": list(ind.genome)} for ind in self._new],
            "pending": {token: [list(g) for g in genomes] for token, genomes in self._pending.items()},
            "selections": self.n_selections,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._parents = [_Individual([int(g) for g in d["genome"]], result_from_json(self.space, d)) for d in state["parents"]]
        # The survivors' ranks among themselves are the ranks they had in the selection's pool
        # (every front before the last one kept is kept whole), so they are recomputed; their
        # crowding distances, which came from the pool, are restored as saved.
        _rank(self._parents)
        for ind, d in zip(self._parents, state["parents"]):
            ind.crowding = float("inf") if d["crowding"] is None else float(d["crowding"])
        self._new = [_Individual([int(g) for g in d["genome"]], result_from_json(self.space, d)) for d in state["new"]]
        self._pending = {token: [[int(g) for g in genome] for genome in genomes] for token, genomes in state["pending"].items()}
        self.n_selections = int(state["selections"])
