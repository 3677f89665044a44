"""Random search: every proposal a fresh uniform sample of the space -- the baseline every
other strategy must beat (Li & Talwalkar 2019, "Random search and reproducibility for NAS")."""

from __future__ import annotations

from .base import Proposal, Result, Strategy, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform samples of the space (`space.sample`, which redraws invalid networks)."""

    def ask(self) -> Proposal:
        self.n_asked += 1
        return Proposal(self.space.sample(self.rng))

    def tell(self, result: Result) -> None:
        self._check(result)
        self.n_told += 1
