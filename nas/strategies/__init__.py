"""Search strategies: they propose architectures (ask) and learn from results (tell).

    from nas.strategies import make_strategy, Result
    strategy = make_strategy("evolution", space, n_objectives=1, seed=0, population=20)
    proposal = strategy.ask()
    strategy.tell(Result(id=0, arch=proposal.arch, values=(loss,)))

Registered: `random` (baseline), `evolution` (aging evolution, one objective), `nsga2`
(NSGA-II with DEAP, several objectives and constraints), `rl` (a REINFORCE LSTM controller,
rewarded by accuracy or MnasNet's soft latency/size constraint; torch loads when it is built).

`make_strategy` also takes the options of `guided.Guided` (`predictor`, `warm_start`,
`warm_start_pool`, ...): given any of them, the strategy comes wrapped in it. `auto` is
`AUTO_OPTIONS` on the default strategy of the number of objectives (see `auto_strategy`).
"""

from __future__ import annotations

from typing import Any, Sequence

from . import evolution, random, rl  # noqa: F401  (modules register their strategies on import)
from .base import STRATEGIES, Option, Proposal, Result, Strategy, default_strategy, register_strategy
from .base import make_strategy as make_base_strategy
from .guided import Guided, split_options

# what `--strategy auto` is (chosen by benchmarks/nb201_strategies.py; README "Predictors, proxies, warm starts")
AUTO_OPTIONS: dict[str, Any] = {"predictor": "ensemble"}


def auto_strategy(n_objectives: int) -> tuple[str, dict[str, Any]]:
    """The strategy and options `auto` stands for with `n_objectives` objectives."""
    return default_strategy(n_objectives), dict(AUTO_OPTIONS)


def make_strategy(name: str, space: Any, n_objectives: int = 1, seed: int = 0, *, objectives: Sequence[str] | None = None,
                  **options: Any) -> Strategy:
    """The strategy registered as `name` (or `auto`), wrapped in `Guided` when a predictor or
    warm-start option is given; UsageError for unknown names and bad options."""
    if name == "auto":
        name, auto = auto_strategy(n_objectives)
        options = {**auto, **options}
    mine, theirs = split_options(options)
    base = make_base_strategy(name, space, n_objectives, seed, objectives=objectives, **theirs)
    if not mine:
        return base
    return Guided(base, **mine)


__all__ = [
    "AUTO_OPTIONS",
    "STRATEGIES",
    "Guided",
    "Option",
    "Proposal",
    "Result",
    "Strategy",
    "auto_strategy",
    "default_strategy",
    "make_base_strategy",
    "make_strategy",
    "register_strategy",
]
