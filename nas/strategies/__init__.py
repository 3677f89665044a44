"""Search strategies: they propose architectures (ask) and learn from results (tell).

    from nas.strategies import make_strategy, Result
    strategy = make_strategy("evolution", space, n_objectives=1, seed=0, population=20)
    proposal = strategy.ask()
    strategy.tell(Result(id=0, arch=proposal.arch, values=(loss,)))

Registered: `random` (baseline), `evolution` (aging evolution, one objective), `nsga2`
(NSGA-II on nas.pareto, several objectives and constraints), `rl` (a REINFORCE LSTM controller,
rewarded by accuracy or MnasNet's soft latency/size constraint; torch loads when it is built).
"""

from __future__ import annotations

from . import evolution, random, rl  # noqa: F401  (modules register their strategies on import)
from .base import STRATEGIES, Option, Proposal, Result, Strategy, default_strategy, make_strategy, register_strategy

__all__ = [
    "STRATEGIES",
    "Option",
    "Proposal",
    "Result",
    "Strategy",
    "default_strategy",
    "make_strategy",
    "register_strategy",
]
