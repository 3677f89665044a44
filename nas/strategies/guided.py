"""Predictor-guided proposals and zero-cost warm starts, around any base strategy.

    make_strategy("evolution", space, seed=0, predictor="ensemble")          # nas.strategies
    make_strategy("nsga2", space, 2, warm_start="synflow", warm_start_pool=200)

`Guided` wraps a base strategy (evolution, nsga2, random; rl for warm starts only) and changes
only which of its proposals reach the driver:

- Warm start (`warm_start=PROXY`, `warm_start_pool=N`): on the first ask, N architectures are
  sampled and scored by the zero-cost proxy (`nas.proxies`, no training); the best
  `warm_start_seeds` of them (default: the base's population, else 10) are the first
  proposals, standing in for the base's initial random ones. Their scores are kept in the
  strategy state (never recomputed on resume) and recorded with the candidates
  (`proposal_info`, merged into the metrics by the driver).
- Predictor (`predictor=ensemble`): once `init` results are in, each ask builds a pool: `pool`
  proposals drawn from the base (mutants for evolution, offspring for nsga2, samples for
  random), every one-decision change of the `local` best results (the whole non-dominated set,
  at most 20, for several objectives: local search around the incumbents, as in White et al.
  2021's local search and BANANAS's mutation of the best), and `random_pool` uniform samples
  (100: they let the predictor jump to another region when the incumbents' neighbourhoods hold
  nothing better). Networks already evaluated or in flight are dropped (and a random 1,000 kept
  of a larger pool; 150 when each one's parameters or FLOPs must be counted on its built
  network), and the ensemble of `nas.predictor`, refitted on every completed candidate, scores
  the rest; its features are the architecture's encoding plus the standardised log parameter
  count where that is known without training (on the table; or when parameters are an
  objective). One objective: independent Thompson sampling as in BANANAS, one draw
  `mean + kappa * z * spread` (z ~ N(0, 1), kappa 2.0) per candidate, the best draw trained.
  Several: the largest hypervolume improvement of the optimistic predicted vector
  (`mean + kappa * spread`, kappa 1.0) over the evaluated front, with the cheap objectives exact
  (parameters and FLOPs counted from the built network, everything the table has on an
  `nb201:*` run); when no candidate improves the front, the one closest to it. With several
  objectives every 2nd proposal after `init` (`explore`) is the base's own (an offspring of
  NSGA-II, a uniform sample of random), not the predictor's pick: the predictor misjudges
  networks unlike the ones it learnt from (on NAS-Bench-201 the identity cell, 73.6% at 4.2 ms,
  is predicted near the 30-60% of the other parameter-free cells it has seen, and never picked),
  and the base's turns find them.
- Under a multi-fidelity scheduler (`nas.schedulers`), which reports every rung a candidate
  completes through `observe(result, epochs)`, the guided strategy works as BOHB does (Falkner
  et al. 2018): the predictor learns from, and the local search starts at, the results at the
  largest number of epochs that holds at least `init` of them (the first rung's until a higher
  one does), and every 3rd proposal after `init` (`uniform`) is a uniform sample (BOHB's random
  third; where it is also an `explore` turn, the uniform sample is made). Fitted on the first
  rung alone (one epoch), the model learnt what learns fastest in one epoch -- wide networks,
  small batches -- and the search drifted to networks that cost more per epoch (a median of
  62 k parameters under ASHA against 41 k without a scheduler on mlp/digits); the uniform turns
  bring unbiased networks to the higher rungs, where the model learns from them.
- Twins on a table: cells of one key build one network, but NAS-Bench-201 measured every cell
  with all its edges, so the table's parameters, FLOPs and latency differ between them (up to
  half again as slow for the same network). With several objectives of which some are read from
  the table, every proposal (the base's before the predictor starts, and every pool candidate)
  stands for the cell of its key with the lowest cheap objectives (in objective order), found
  in an index of the whole space by key, built once per process (spaces of at most 20,000
  genomes). On accuracy against latency this is most of what the guided nsga2 gains at the
  fast end of the front. Cheap objectives counted on built networks are the same for twins.
- Without the predictor the base's proposals pass, except that a proposal whose network was
  already evaluated or is in flight is drawn again, up to `retries` times, so a converged
  population wastes at most that many draws per trained network.

Draws the base makes for the pool but that are not chosen leave no trace in it: its ask counter
is put back, and NSGA-II forgets the genomes it kept for them. Everything the wrapper needs to carry on -- the base's
state, the evaluated candidates the predictor learns from, the warm-start seeds -- is in
`state_dict()`; the predictor's randomness derives from the seed and the number of results, so
a resumed run refits the same models.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any, Mapping, Sequence

import numpy as np

from .. import pareto
from ..errors import UsageError
from ..predictor import Encoder, Ensemble
from ..space import Architecture
from .base import Option, Proposal, Result, Strategy, arch_token, standing

PREDICTORS = ("none", "ensemble")
GUIDABLE = ("evolution", "nsga2", "random")  # strategies the predictor and the retries apply to
CHEAP = {"params": "params", "flops": "flops", "latency": "latency_ms"}  # objective -> metric
MAX_FRONT_NEIGHBOURHOODS = 20
MAX_NEIGHBOURS = 120  # per incumbent, a random subset when the space offers more
MAX_POOL = 1000  # candidates scored per ask (a random subset of a larger pool)
SIZE = -1  # `_cheap_value`'s key of the parameter count used as a feature (objectives are 0, 1, ...)
MAX_POOL_BUILT = 150  # ... when each one's parameters or FLOPs need its network built
MAX_TWIN_INDEX = 20_000  # genomes of a space indexed by key for `_cheapest_twin`


class Guided(Strategy):
    name = "guided"
    OPTIONS = {
        "pool": Option(10, int, lambda v: v >= 1, "an integer >= 1", "predictor: base proposals drawn per step"),
        "random_pool": Option(100, int, lambda v: v >= 0, "an integer >= 0", "predictor: uniform samples added per step"),
        "local": Option(3, int, lambda v: v >= 0, "an integer >= 0", "predictor: best results whose one-change neighbours join the pool"),
        "kappa": Option(None, float, lambda v: v >= 0, "a number >= 0", "predictor: scale of the spread in the acquisition (default 2.0 for one objective, 1.0 for several)", optional=True),
        "thompson": Option(None, int, lambda v: v in (0, 1), "0 or 1", "predictor: 1 = mean + kappa * z * spread with z ~ N(0, 1) per candidate, 0 = mean + kappa * spread (default 1 for one objective, 0 for several)", optional=True),
        "explore": Option(None, int, lambda v: v >= 0, "an integer >= 0", "predictor: every n-th proposal is the base's own, not the predictor's pick (0 = never; default 2 for several objectives, 0 for one)", optional=True),
        "uniform": Option(None, int, lambda v: v >= 0, "an integer >= 0", "predictor: every n-th proposal is a uniform sample (0 = never; default 3 under a multi-fidelity scheduler, BOHB's random third, else 0)", optional=True),
        "init": Option(10, int, lambda v: v >= 2, "an integer >= 2", "predictor: results before it is used"),
        "members": Option(5, int, lambda v: v >= 2, "an integer >= 2", "predictor: ensemble members"),
        "retries": Option(20, int, lambda v: v >= 0, "an integer >= 0", "redraws of a proposal whose network was already evaluated"),
        "warm_start_pool": Option(100, int, lambda v: v >= 1, "an integer >= 1", "warm start: architectures scored by the proxy"),
        "warm_start_seeds": Option(None, int, lambda v: v >= 1, "an integer >= 1", "warm start: best ones proposed first (default: the population)", optional=True),
    }

    def __init__(self, base: Strategy, *, predictor: str = "none", warm_start: str | None = None, **options: Any) -> None:
        if predictor not in PREDICTORS:
            raise UsageError(f"unknown predictor {predictor!r}; use one of {', '.join(PREDICTORS)}")
        if predictor != "none" and base.name not in GUIDABLE:
            raise UsageError(f"the predictor guides {', '.join(GUIDABLE)}; strategy {base.name!r} takes warm starts only")
        if warm_start is not None:
            from ..proxies import check_proxy

            check_proxy(warm_start)
        super().__init__(base.space, base.n_objectives, base.seed, objectives=base.objective_names, **options)
        self.base = base
        self.name = base.name  # the state says which strategy it is; options say it is guided
        self.predictor = predictor
        self.warm_start = warm_start
        self.options = {**base.options, **self.options, "predictor": predictor, "warm_start": warm_start}
        self.rng = random.Random(f"guided:{base.seed}")  # not the base's stream
        self._history: list[Result] = []  # first result of every distinct key, in order told
        self._fidelity: dict[int, dict[str, Result]] = {}  # epochs -> key -> result (`observe`, under a scheduler)
        self._json: dict[int, tuple[Result, str]] = {}  # id(result) -> (result, its JSON text in the state)
        self._evaluated: set[str] = set()
        self._pending: dict[str, list[Architecture]] = {}  # asked, not yet told
        self._seeds: list[tuple[Architecture, float]] = []
        self._warm_done = warm_start is None
        self._batch_note = ""
        self._info: dict[str, dict[str, Any]] = {}
        self._cheap: dict[int, Any] = {}  # objective index -> arch -> value
        self._dataset: Any = None
        self._builds = False  # cheap objectives are counted on built networks (not read from a table)
        self._encoder = Encoder(self.space)
        self._models: dict[tuple[int, int], Ensemble] = {}
        self._sizes = self.space.genome_sizes()
        self._cheap_values: dict[tuple[int, tuple[Any, ...]], float] = {}
        self._size: Any = None  # arch -> parameter count, where it is known without training
        self._size_scale: tuple[float, float] | None = None
        self._twin_best: dict[str, Architecture] = {}  # key -> its cheapest architecture (`_cheapest_twin`)
        one = self.n_objectives == 1
        self._kappa = self.options["kappa"] if self.options["kappa"] is not None else (2.0 if one else 1.0)
        self._thompson = bool(self.options["thompson"]) if self.options["thompson"] is not None else one
        self._explore = self.options["explore"] if self.options["explore"] is not None else (0 if one else 2)

    # -- the driver's hooks ---------------------------------------------------------------------
    def bind_evaluator(self, evaluator: Any) -> None:
        """Learn what can be known without training: on the NB201 table its parameters, FLOPs and
        latency; when training, parameters and FLOPs of the built network; and the data that
        data-needing proxies take a batch of."""
        from ..tabular import TabularEvaluator

        self._dataset = getattr(evaluator, "dataset", None)
        if isinstance(evaluator, TabularEvaluator):
            self._size = lambda arch, ev=evaluator: float(ev.costs(self.space, arch)["params"])
        elif "params" in self.objective_names:  # counted for the objective anyway
            self._size = lambda arch: float(_counted(self.space, arch, "params"))
        for k, name in enumerate(self.objective_names):
            metric = CHEAP.get(name)
            if metric is None:
                continue
            if isinstance(evaluator, TabularEvaluator):
                self._cheap[k] = lambda arch, m=metric, ev=evaluator: float(ev.costs(self.space, arch)[m])
            elif metric in ("params", "flops"):
                self._cheap[k] = lambda arch, m=metric: float(_counted(self.space, arch, m))
                self._builds = True

    def proposal_info(self, arch: Architecture) -> dict[str, Any]:
        """What the driver records with this candidate's metrics (its proxy score, for a seed)."""
        return dict(self._info.get(arch.key, {}))

    @property
    def members(self) -> tuple[Result, ...]:
        return self.base.members  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> Any:  # the base's own attributes (n_selections, ...)
        if name == "base" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    # -- ask ------------------------------------------------------------------------------------
    def _seen(self, key: str) -> bool:
        return key in self._evaluated or key in self._pending

    def ask(self) -> Proposal:
        self.n_asked += 1
        if not self._warm_done:
            self._warm()
        while self._seeds:
            arch, value = self._seeds.pop(0)
            if self._seen(arch.key):
                continue
            self.base.n_asked += 1  # a seed stands in for one of the base's first proposals
            self._info[arch.key] = {f"proxy_{self.warm_start}": value if math.isfinite(value) else None, "proxy_batch": self._batch_note}
            return self._out(Proposal(arch))
        if self.predictor == "ensemble" and len(self._rows()) >= self.options["init"]:
            uniform = self.options["uniform"] if self.options["uniform"] is not None else (3 if self._fidelity else 0)
            if uniform and self.n_asked % uniform == 0:
                return self._out(self._uniform())
            if self._explore and self.n_asked % self._explore == 0:
                return self._out(self._fresh())  # the base's own turn: what the predictor cannot foresee
            return self._out(self._guided())
        if self.base.name not in GUIDABLE:
            return self._out(self.base.ask())
        return self._out(self._fresh())

    def _out(self, p: Proposal) -> Proposal:
        self._pending.setdefault(p.arch.key, []).append(p.arch)
        return p

    def _warm(self) -> None:
        from ..proxies import ProxyScorer, rank_key

        assert self.warm_start is not None
        scorer = ProxyScorer(self.space, self.warm_start, dataset=self._dataset, seed=self.seed)
        self._batch_note = scorer.batch_note
        pool: dict[str, Architecture] = {}
        for _ in range(self.options["warm_start_pool"]):
            arch = self.space.sample(self.rng)
            pool.setdefault(arch.key, arch)
        scored = sorted(((scorer(a), i, a) for i, a in enumerate(pool.values())), key=lambda t: (-rank_key(t[0]), t[1]))
        n = self.options["warm_start_seeds"] or int(self.base.options.get("population", 10))
        self._seeds = [(a, s if math.isfinite(s) else -math.inf) for s, _, a in scored[:n]]
        self._warm_done = True

    def _draw(self, n: int) -> list[Proposal]:
        """`n` proposals of the base (give back the ones not used with `_forget`)."""
        asked = self.base.n_asked
        out = [self.base.ask() for _ in range(n)]
        self.base.n_asked = asked + 1
        return out

    def _forget(self, drawn: Sequence[Proposal], kept: Proposal | None) -> None:
        """Undo what the base remembered of the proposals it made that were not used: NSGA-II
        keeps each proposal's genome until its result comes back (evolution and random keep
        nothing)."""
        pending = getattr(self.base, "_pending", None)
        if not isinstance(pending, dict):
            return
        skip = kept is not None
        for p in reversed(drawn):
            if skip and p is kept:
                skip = False
                continue
            token = arch_token(p.arch)
            genomes = pending.get(token)
            if genomes:
                genomes.pop()
                if not genomes:
                    del pending[token]

    def _fresh(self) -> Proposal:
        """The base's proposal, redrawn (up to `retries` times) while its network was seen."""
        asked = self.base.n_asked
        drawn = [self.base.ask()]
        for _ in range(self.options["retries"]):
            if not self._seen(drawn[-1].arch.key):
                break
            drawn.append(self.base.ask())
        self.base.n_asked = asked + 1
        chosen = self._cheapest_twin(drawn[-1]) if self._by_twins() else drawn[-1]
        self._forget(drawn, chosen)
        return chosen

    def _sample(self) -> Architecture:
        """A uniform sample (as `space.sample`: every active decision uniform, invalid ones
        redrawn), through a genome so that architectures already built are reused."""
        for _ in range(1000):
            arch = self._decode(tuple(self.rng.randrange(n) for n in self._sizes))
            if arch.valid:
                return arch
        return self.space.sample(self.rng)

    def _uniform(self) -> Proposal:
        """A uniform sample (redrawn up to `retries` times while its network was seen): unbiased by
        what the model, and under a scheduler the first rung, favours."""
        arch = self._sample()
        for _ in range(self.options["retries"]):
            if not self._seen(arch.key):
                break
            arch = self._sample()
        return Proposal(arch)

    def _guided(self) -> Proposal:
        drawn = self._draw(self.options["pool"])
        pool: dict[str, Proposal] = {}
        for p in drawn:
            if not self._seen(p.arch.key):
                pool.setdefault(p.arch.key, p)
        for r in self._incumbents():
            for n in self._neighbourhood(r.arch):
                if not self._seen(n.key):
                    pool.setdefault(n.key, Proposal(n, r.generation + 1, (r.id,)))
        # the uniform samples join; when the pool is larger than `cap` a random share is kept (the
        # cheap objectives of each candidate may cost a build), and a uniform sample is drawn only
        # for a place it takes in that share: decoding the 100 samples cost more than the rest of
        # an ask, and around 20 incumbents' neighbourhoods most were dropped again
        known = list(pool.values())
        slots = len(known) + self.options["random_pool"]
        cap = MAX_POOL_BUILT if self._builds else MAX_POOL
        cands: list[Proposal] = []
        for i in (self.rng.sample(range(slots), cap) if slots > cap else range(slots)):
            if i < len(known):
                cands.append(known[i])
                continue
            a = self._sample()
            if not self._seen(a.key) and a.key not in pool:
                pool[a.key] = Proposal(a)
                cands.append(pool[a.key])
        if not cands:
            self._forget(drawn, drawn[0])
            return drawn[0]  # every network in reach was seen: the driver answers from the store
        if self._by_twins():
            cands = [self._cheapest_twin(p) for p in cands]
        chosen = cands[self._acquire([p.arch for p in cands])]
        self._forget(drawn, chosen)
        return chosen

    def _by_twins(self) -> bool:
        """Whether a candidate stands for the cheapest of its twins: with several objectives, some
        of them read from a table (free, and different between twins: the table measured every
        edge, live or not), in a space small enough to index by key."""
        if self.n_objectives == 1 or not self._cheap or self._builds:
            return False
        return math.prod(self._sizes) <= MAX_TWIN_INDEX

    def _cheapest_twin(self, p: Proposal) -> Proposal:
        """`p`, or the architecture of the same key (the same network) with the lowest cheap
        objectives (in objective order, then by genome)."""
        best = self._twin_best.get(p.arch.key)
        if best is None:
            twins = _twin_index(self.space, self._decode)[p.arch.key]
            cheap = sorted(self._cheap)
            best = min(twins, key=lambda a: ([self._cheap_value(k, a) for k in cheap], self.space.encode(a)))
            self._twin_best[p.arch.key] = best
        return p if best == p.arch else Proposal(best, p.generation, p.parents)

    def _incumbents(self) -> list[Result]:
        rows = self._rows()
        if self.n_objectives == 1:
            return sorted(rows, key=standing)[: self.options["local"]]
        feas = [r for r in rows if r.feasible]
        if not feas:
            return sorted(rows, key=lambda r: r.violation)[: self.options["local"]]
        F = np.array([r.values for r in feas])
        front = [r for r, m in zip(feas, pareto.pareto_mask(F)) if m]
        if len(front) > MAX_FRONT_NEIGHBOURHOODS:
            front = self.rng.sample(front, MAX_FRONT_NEIGHBOURHOODS)
        return front

    def _neighbourhood(self, arch: Architecture) -> list[Architecture]:
        """Every valid architecture one active decision away (newly active decisions at their first value)."""
        memo = tuple(arch.items())  # by values: twins (one key) differ in dead edges, so in neighbours
        known = _NEIGHBOURS.setdefault(self.space.fingerprint, {})
        out = known.get(memo)
        if out is None:
            out = []
            keys = {arch.key}
            genome = list(self.space.encode(arch))
            for i, label in enumerate(self.space.labels):
                if label not in arch:
                    continue
                for g in range(self._sizes[i]):
                    if g == genome[i]:
                        continue
                    n = self._decode(tuple(genome[:i] + [g] + genome[i + 1:]))
                    if n.valid and n.key not in keys:
                        keys.add(n.key)
                        out.append(n)
            if len(known) < 20_000:
                known[memo] = out
        if len(out) > MAX_NEIGHBOURS:
            return self.rng.sample(out, MAX_NEIGHBOURS)
        return out

    def _decode(self, genome: tuple[int, ...]) -> Architecture:
        """`space.decode`, remembered per space and genome (shared by all strategies of a process)."""
        built = _BUILT.setdefault(self.space.fingerprint, {})
        arch = built.get(genome)
        if arch is None:
            arch = self.space.decode(genome)
            if len(built) < 200_000:
                built[genome] = arch
        return arch

    # -- the predictor --------------------------------------------------------------------------
    def _rows(self) -> list[Result]:
        return self._learning()[1]

    def _learning(self) -> tuple[int, list[Result]]:
        """(epochs, results) the predictor learns from and the local search starts at. Without a
        scheduler: every evaluated network's result (epochs 0). Under one (results by fidelity,
        from `observe`): the results at the largest number of epochs that holds at least `init`
        of them, as BOHB fits its model on the largest budget with enough observations (Falkner
        et al. 2018); before any does, the first results. A model of the first rung alone (one
        epoch) learns what learns fastest in one epoch: wide networks with small batches, which
        cost more per epoch."""
        for epochs in sorted(self._fidelity, reverse=True):
            rows = [r for r in self._fidelity[epochs].values() if not r.failed]
            if len(rows) >= self.options["init"]:
                return epochs, rows
        return 0, [r for r in self._history if not r.failed]

    def _features(self, archs: Sequence[Architecture]) -> np.ndarray:
        """The encoding of each architecture, with its standardised log parameter count as one more
        feature where parameters are known without training (the table; or counted because they
        are an objective): network size is the strongest single signal of accuracy in the shipped
        spaces, and the encoding alone does not see widths. The standardisation comes from the
        first `init` results, so a resumed run computes the same features."""
        if self._size is not None and self._size_scale is None:
            first = [r.arch for r in self._history if not r.failed][: self.options["init"]]
            logs = np.log([max(self._cheap_value(SIZE, a), 1.0) for a in first])
            self._size_scale = (float(logs.mean()), float(logs.std()) or 1.0)
            c, sd = self._size_scale
            self._encoder = Encoder(self.space, lambda a: [(math.log(max(self._cheap_value(SIZE, a), 1.0)) - c) / sd], 1)
        return self._encoder.matrix(list(archs))

    def _model(self, k: int, epochs: int, rows: Sequence[Result]) -> Ensemble:
        key = (k, epochs, len(rows))
        model = self._models.get(key)
        if model is None:
            X = self._features([r.arch for r in rows])
            y = np.array([r.values[k] for r in rows])  # type: ignore[index]
            seed = (self.seed * 1_000_003 + len(rows) * 101 + k + epochs * 7_919) % 2**32
            model = Ensemble(members=self.options["members"], seed=seed).fit(X, y)
            self._models = {kk: m for kk, m in self._models.items() if kk[1:] == key[1:]}
            self._models[key] = model
        return model

    def _cheap_value(self, k: int, arch: Architecture) -> float:
        memo = (k, tuple(arch.items()))  # by values: twins may differ in parameters (dead edges are built)
        v = self._cheap_values.get(memo)
        if v is None:
            v = self._cheap_values[memo] = (self._size if k == SIZE else self._cheap[k])(arch)
        return v

    def _acquire(self, archs: list[Architecture]) -> int:
        epochs, rows = self._learning()
        with _one_blas_thread():
            X = self._features(archs)
            cols = []
            for k in range(self.n_objectives):
                if k in self._cheap:
                    cols.append(np.array([self._cheap_value(k, a) for a in archs]))
                else:
                    mean, spread = self._model(k, epochs, rows).predict(X)
                    if self._thompson:  # independent Thompson sampling (BANANAS): one draw per candidate
                        z = np.random.default_rng(self.rng.randrange(2**32)).normal(size=len(mean))
                        cols.append(mean - self._kappa * z * spread)
                    else:
                        cols.append(mean - self._kappa * spread)  # optimistic: all minimised
        P = np.stack(cols, axis=1)
        if self.n_objectives == 1:
            return int(np.argmin(P[:, 0]))
        feas = [r for r in rows if r.feasible]
        if not feas:
            return int(np.argmin(P[:, 0]))
        F = np.array([r.values for r in feas], dtype=float)
        F = F[pareto.pareto_mask(F)]
        both = np.vstack([F, P])
        lower, upper = both.min(axis=0), both.max(axis=0)
        span = np.where(upper > lower, upper - lower, 1.0)
        Fn, Pn = (F - lower) / span, (P - lower) / span
        ref = np.full(self.n_objectives, 1.1)
        # only a candidate that no front point weakly dominates can add hypervolume
        dominated = (Fn[None, :, :] <= Pn[:, None, :]).all(axis=2).any(axis=1)
        if not dominated.all() and self.n_objectives <= 3:
            base = pareto.hypervolume(Fn, ref)
            gains = np.full(len(P), -1.0)
            for i in np.flatnonzero(~dominated):
                gains[i] = pareto.hypervolume(np.vstack([Fn, Pn[i]]), ref) - base
            return int(np.argmax(gains))
        # all dominated: the one that needs the least improvement to reach the front
        gap = np.max(Pn[:, None, :] - Fn[None, :, :], axis=2).min(axis=1)
        return int(np.argmin(gap))

    # -- tell -----------------------------------------------------------------------------------
    def tell(self, result: Result) -> None:
        self._check(result)
        self.n_told += 1
        self.base.tell(result)
        key = result.arch.key
        waiting = self._pending.get(key)
        if waiting:
            waiting.pop(0)
            if not waiting:
                del self._pending[key]
        self._info.pop(key, None)
        if key not in self._evaluated:
            self._evaluated.add(key)
            self._history.append(result)

    def observe(self, result: Result, epochs: int) -> None:
        self._check(result)
        self._fidelity.setdefault(int(epochs), {}).setdefault(result.arch.key, result)
        self.base.observe(result, epochs)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        enc = self.space.encode
        memo = self._json

        def res(r: Result) -> str:  # results are immutable: each is encoded once (a state is saved at every commit)
            hit = memo.get(id(r))
            if hit is None or hit[0] is not r:
                form = [[int(g) for g in enc(r.arch)], None if r.values is None else [float(v) for v in r.values],
                        float(r.violation), int(r.id), int(r.generation)]
                hit = memo[id(r)] = (r, json.dumps(form, separators=(",", ":")))
            return hit[1]

        # The results (every one told, and under a scheduler each at every fidelity observed) are
        # most of the state and only grow: they are kept as JSON text, joined from each result's
        # text encoded once, so a commit does not encode hundreds of results again (4 ms a commit
        # after a minute of ASHA on digits, at every rung's commit).
        return {
            **super().state_dict(),
            "base": self.base.state_dict(),
            "history": "[" + ",".join(res(r) for r in self._history) + "]",
            "fidelity": "[" + ",".join(f"[{int(epochs)},[" + ",".join(res(r) for r in rows.values()) + "]]"
                                       for epochs, rows in self._fidelity.items()) + "]",
            "pending": [list(enc(a)) for archs in self._pending.values() for a in archs],
            "seeds": [[list(enc(a)), s if math.isfinite(s) else None] for a, s in self._seeds],
            "warm_done": self._warm_done,
            "batch_note": self._batch_note,
            "info": self._info,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.base.load_state_dict(state["base"])
        dec = self.space.decode
        self._history = []
        for genome, values, violation, rid, gen in _json_list(state["history"]):
            vals = None if values is None else tuple(float(v) for v in values)
            self._history.append(Result(int(rid), dec(genome), vals, float(violation), int(gen)))
        self._evaluated = {r.arch.key for r in self._history}
        self._fidelity = {}
        for epochs, rows in _json_list(state.get("fidelity", [])):
            got = self._fidelity.setdefault(int(epochs), {})
            for genome, values, violation, rid, gen in rows:
                vals = None if values is None else tuple(float(v) for v in values)
                r = Result(int(rid), dec(genome), vals, float(violation), int(gen))
                got.setdefault(r.arch.key, r)
        self._pending = {}
        for genome in state["pending"]:
            a = dec(genome)
            self._pending.setdefault(a.key, []).append(a)
        self._seeds = [(dec(g), -math.inf if s is None else float(s)) for g, s in state["seeds"]]
        self._warm_done = bool(state["warm_done"])
        self._batch_note = str(state["batch_note"])
        self._info = {k: dict(v) for k, v in state["info"].items()}
        self._models = {}
        self._size_scale = None
        self._encoder = Encoder(self.space)


def _json_list(value: Any) -> list[Any]:
    """A state's list of results: JSON text (`Guided.state_dict`), or a list (states saved before)."""
    return json.loads(value) if isinstance(value, str) else list(value)


_COUNTS: dict[tuple[Any, ...], int] = {}
_LAYER_COUNTS: dict[tuple[str, str, bool], int] = {}
_FREE = ("pool", "global_pool", "flatten", "identity", "act", "dropout")  # layer types without parameters or counted FLOPs
_BLAS: list[Any] = []


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread while the predictor fits (small matrices: threads only add
    overhead, and contend with training); the controller is built once, it is slow to make."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # threadpoolctl < 3 (scikit-learn >= 1.2 asks for >= 2)
            from threadpoolctl import threadpool_limits

            return threadpool_limits(1, user_api="blas")
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")
_BUILT: dict[str, dict[tuple[int, ...], Architecture]] = {}
_TWINS: dict[str, dict[str, list[Architecture]]] = {}


def _twin_index(space: Any, decode: Any) -> dict[str, list[Architecture]]:
    """Every valid architecture of a small space, by key (built once per space and process)."""
    index = _TWINS.get(space.fingerprint)
    if index is None:
        found: dict[str, dict[Architecture, None]] = {}  # genomes differing in inactive genes give one architecture
        for genome in itertools.product(*(range(n) for n in space.genome_sizes())):
            arch = decode(genome)
            if arch.valid:
                found.setdefault(arch.key, {})[arch] = None
        index = _TWINS[space.fingerprint] = {key: list(archs) for key, archs in found.items()}
    return index


_NEIGHBOURS: dict[str, dict[tuple[Any, ...], list[Architecture]]] = {}


def _counted(space: Any, arch: Architecture, metric: str) -> int:
    """`params` or `flops` of the built network (each once per architecture), summed over its
    layers (a layer's FLOPs depend only on its input shape, which its spec holds; `_layer_count`).
    A pool of 150 fresh candidates then costs a resolve and a sum each, not a network build (0.7
    ms each for an MLP, about 75% of a two-objective ask). A test compares both counts with a real
    build of the whole network."""
    memo = (space.fingerprint, tuple(arch.items()), metric)
    hit = _COUNTS.get(memo)
    if hit is None:
        net = space.resolve(arch).net
        head = {"input": net["head"]["in"], "body": [], "head": net["head"], "classes": net["classes"]}
        hit = sum(_layer_count(layer, metric) for layer in net["body"]) + _layer_count(head, metric, whole=True)
        _COUNTS[memo] = hit
    return hit


def _layer_count(spec: Mapping[str, Any], metric: str, whole: bool = False) -> int:
    """`params` or `flops` of one layer of a resolved spec (`whole`: a network spec, here the head
    alone, its input the body's output). Dense layers (whose widths vary too much to be found
    built before) and layers without weights are counted from their spec, by the formulas of
    `nas.ops._dense` and `count_flops`; every other spec, a user's layer types included, is built
    once per process on the meta device (no weight initialised; FLOPs get uninitialised CPU
    storage for one forward pass, only the shapes matter)."""
    if not whole and spec["type"] in _FREE:
        return 0
    if not whole and spec["type"] == "dense":
        bias = spec["norm"] == "none"
        n_in = math.prod(spec["in"])
        if metric == "params":
            return spec["units"] * (n_in + bias) + (0 if bias else 2 * spec["units"])  # batch norm: weight and bias
        return spec["units"] * (n_in + bias)  # count_flops: the Linear's multiply-adds and bias adds only
    key = (json.dumps(spec, sort_keys=True, default=str), metric, whole)
    hit = _LAYER_COUNTS.get(key)
    if hit is None:
        import torch

        from ..measure import count_flops, count_params
        from ..ops import Network, build_layer

        with torch.device("meta"):
            module = Network(dict(spec)) if whole else build_layer(dict(spec))
        if metric == "params":
            hit = count_params(module)
        else:
            hit = count_flops(module.to_empty(device="cpu"), spec["input"] if whole else spec["in"])
        if len(_LAYER_COUNTS) < 200_000:
            _LAYER_COUNTS[key] = hit
    return hit


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the wrapper's options, the base's) of a strategy's options."""
    mine = {k: v for k, v in options.items() if k in Guided.OPTIONS or k in ("predictor", "warm_start")}
    return mine, {k: v for k, v in options.items() if k not in mine}
