"""A REINFORCE controller: an LSTM that emits the space's decisions one by one (Zoph and Le,
"Neural Architecture Search with Reinforcement Learning", ICLR 2017; the controller of ENAS,
Pham, Guan, Zoph, Le and Dean, "Efficient Neural Architecture Search via Parameter Sharing",
ICML 2018), rewarded by accuracy or by MnasNet's soft latency/size constraint (Tan, Chen, Pang,
Vasudevan, Sandler, Howard and Le, "MnasNet: Platform-Aware Neural Architecture Search for
Mobile", CVPR 2019).

torch is imported when a controller is built, not with this module, so `import nas.strategies`
stays cheap. The controller is tiny (float64, CPU) and never touches the global `random` or
torch generators: weights are drawn from a private `torch.Generator`, and choices from the
strategy's own `random.Random` (`self.rng`), so a run is seeded and resumes bit for bit.
"""

from __future__ import annotations

import base64
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..space import Architecture, SearchSpace
from .base import _BAD, Option, Proposal, Result, Strategy, register_strategy

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class _Choice(Option):
    """An option whose value is one of a few names (the base Option takes numbers only)."""

    def parse(self, value: Any) -> Any:
        value = value.strip() if isinstance(value, str) else value
        return value if isinstance(value, str) and self.check(value) else _BAD


REWARDS = ("accuracy", "mnas")


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _to_json(t: Tensor) -> str:
    """A float64 tensor as base64 of its bytes (exact, and far smaller than a list of floats)."""
    return base64.b64encode(t.detach().numpy().tobytes()).decode("ascii")


def _from_json(text: str) -> Tensor:
    import torch

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.float64).copy())


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread meanwhile: the controller's ops are tiny, and waking a thread pool
    for each costs far more than the op (up to 50x on a small VM); the setting is put back."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


class _Controller:
    """The policy: a learned start token feeds an LSTM cell; at each active decision its own
    softmax head reads the hidden state, and the embedding of the value chosen (one table per
    decision) is the next step's input.

    All weights are slices of one flat float64 vector, so Adam is a few vector ops and the state
    is three base64 strings. Plain tensors rather than `nn.Module`s and `torch.optim`: building
    one draws from the private generator only, and importing `torch.optim` would cost seconds.
    """

    def __init__(self, sizes: Sequence[int], hidden: int, seed: int, lr: float) -> None:
        import torch

        self.torch = torch
        self.hidden = hidden
        self.lr = lr
        self.shapes: dict[str, tuple[int, ...]] = {"start": (hidden,), "lstm_w": (4 * hidden, 2 * hidden), "lstm_b": (4 * hidden,)}
        for i, n in enumerate(sizes):
            self.shapes.update({f"embed{i}": (n, hidden), f"head_w{i}": (n, hidden), f"head_b{i}": (n,)})
        total = sum(math.prod(shape) for shape in self.shapes.values())
        gen = torch.Generator().manual_seed(seed)
        self.flat = (torch.rand(total, generator=gen, dtype=torch.float64) * 2 - 1) * 0.1  # ENAS's init: U(-0.1, 0.1)
        self.adam_m = torch.zeros(total, dtype=torch.float64)
        self.adam_v = torch.zeros(total, dtype=torch.float64)
        self.adam_t = 0
        self.weights = self.views(self.flat)  # share the flat vector's storage: updates show through
        with torch.no_grad():
            for i in range(len(sizes)):
                self.weights[f"head_b{i}"].zero_()  # a uniform policy to start from

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        at = 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            out[name] = flat[at:at + n].view(shape)
            at += n
        return out

    def zero_state(self, w: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(input, h, c) before the first decision."""
        zeros = self.torch.zeros(self.hidden, dtype=self.torch.float64)
        return w["start"], zeros, zeros

    def step(self, w: Mapping[str, Tensor], x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One LSTM cell step (Hochreiter and Schmidhuber 1997, with a forget gate)."""
        torch = self.torch
        i, f, g, o = (w["lstm_w"] @ torch.cat([x, h]) + w["lstm_b"]).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def log_probs(self, w: Mapping[str, Tensor], i: int, h: Tensor, temperature: float, tanh_constant: float | None) -> Tensor:
        logits = (w[f"head_w{i}"] @ h + w[f"head_b{i}"]) / temperature
        if tanh_constant is not None:  # ENAS: bounded logits keep the policy from collapsing early
            logits = tanh_constant * self.torch.tanh(logits)
        return self.torch.log_softmax(logits, dim=0)

    def adam_step(self, grad: Tensor, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        """Adam (Kingma and Ba, ICLR 2015), as torch.optim.Adam computes it."""
        self.adam_t += 1
        with self.torch.no_grad():
            self.adam_m.mul_(beta1).add_(grad, alpha=1 - beta1)
            self.adam_v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.adam_v.sqrt() / math.sqrt(1 - beta2**self.adam_t)).add_(eps)
            self.flat.addcdiv_(self.adam_m, denom, value=-self.lr / (1 - beta1**self.adam_t))

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"weights": _to_json(self.flat), "adam_m": _to_json(self.adam_m), "adam_v": _to_json(self.adam_v), "adam_t": self.adam_t}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, vec in (("weights", self.flat), ("adam_m", self.adam_m), ("adam_v", self.adam_v)):
            saved = _from_json(state[name])
            if saved.shape != vec.shape:
                raise UsageError(f"cannot resume strategy 'rl': the saved controller has {saved.numel()} weights, this one {vec.numel()}")
            vec.copy_(saved)
        self.adam_t = int(state["adam_t"])


@register_strategy("rl")
class Reinforce(Strategy):
    """REINFORCE (Williams 1992) on an autoregressive LSTM controller, for any space.

    Sampling walks `space.decisions` in order, skips the decisions inactive under the values
    chosen so far, and draws each active one from its own softmax head, so conditional spaces
    need nothing special. A network the space cannot build is drawn again (up to 100 times,
    then a uniform sample). The choices are read back from a told architecture itself -- its
    active decisions, in order, are exactly the sequence the controller emitted -- so results
    may arrive in any order, any number of asks later, and nothing is kept per ask.

    Every `batch` told results make one Adam step on

        loss = -mean_i[(R_i - b) * log p(a_i) + entropy_weight * H(a_i)]

    where log p and H (the summed entropy of the softmaxes along the sequence) are recomputed
    with the current weights at update time: with several workers a sample may be a few steps
    old, the usual small lag of asynchronous REINFORCE. The baseline b is an exponential moving
    average of past rewards (decay `baseline_decay`, ENAS); the first batch uses its own mean.

    Reward (`reward`): `accuracy` is the value of the objective named "accuracy" (told negated,
    so -values[i]); a run without one rewards -values[0], the first objective negated. `mnas`
    is MnasNet's soft constraint accuracy * (latency / target_latency_ms) ** w, times
    (params / target_params) ** w when that target is given too; the run must have the
    accuracy objective and the objective of each target. A failed or infeasible candidate gets
    the floor reward: 0, or the lowest reward seen so far if one was lower (rewards from
    -values[0] can be negative), so every feasible result is preferred to it.
    """

    OPTIONS = {
        # Defaults tuned on NAS-Bench-201 CIFAR-10: mean 200-epoch test accuracy of the pick over
        # seeds 200-299 (not the benchmark's), random search 93.82 at 100 evaluations. lr
        # 0.002-0.01 stayed at 93.8-93.9 (too few updates to move); lr 0.02-0.05 bounded by
        # ENAS's tanh gave 93.9-94.0 whatever the rest; unbounded, lr >= 0.02 collapsed onto one
        # network in some seeds. The entropy weight decides longer runs: at 300 evaluations,
        # 1e-4 to 1e-3 collapsed (thousands of duplicate proposals), 0.01 found the optimum
        # (94.37) in 20 of 20 seeds with ~2.5 proposals per new network; at 100 it scored 93.97.
        "lr": Option(0.02, float, _positive, "a number > 0", "Adam learning rate of the controller"),
        "batch": Option(5, int, lambda v: v >= 1, "an integer >= 1", "told results per policy update"),
        "temperature": Option(1.0, float, _positive, "a number > 0", "softmax temperature of the logits"),
        "tanh_constant": Option(2.5, float, _positive, "a number > 0 (or None for none)", "ENAS's C * tanh(logits) bound (None: unbounded)", optional=True),
        "entropy_weight": Option(0.01, float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0", "weight of the entropy bonus"),
        "baseline_decay": Option(0.9, float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)", "decay of the moving-average reward baseline"),
        "hidden": Option(32, int, lambda v: v >= 1, "an integer >= 1", "LSTM hidden size (and embedding size)"),
        "reward": _Choice("accuracy", str, lambda v: v in REWARDS, "'accuracy' or 'mnas'", "accuracy, or MnasNet's accuracy * (cost / target) ** w"),
        "target_latency_ms": Option(None, float, _positive, "a number > 0", "MnasNet latency target in ms (reward mnas)", optional=True),
        "target_params": Option(None, float, _positive, "a number > 0", "MnasNet parameter-count target (reward mnas)", optional=True),
        "w": Option(-0.07, float, lambda v: math.isfinite(v) and v <= 0, "a number <= 0", "MnasNet exponent (Tan et al. 2019: -0.07)"),
    }
    TRIES = 100  # draws of the controller before falling back to a uniform sample

    def __init__(self, space: SearchSpace, n_objectives: int = 1, seed: int = 0, **options: Any) -> None:
        super().__init__(space, n_objectives, seed, **options)
        self._reward_terms = self._parse_reward()
        o = self.options
        self._ctl = _Controller(space.genome_sizes(), o["hidden"], seed, o["lr"])
        self._batch: list[tuple[list[int], float]] = []  # (choice indices, reward) told since the last update
        self._baseline: float | None = None
        self._lowest: float | None = None  # lowest reward of a feasible result so far
        self.n_updates = 0
        self._saved: dict[str, Any] | None = None  # the controller's state, kept until the next update

    def _parse_reward(self) -> list[tuple[int, float | None]]:
        """(objective index, target) pairs: accuracy's (target None), then each cost's."""
        names = self.objective_names
        o = self.options
        targets = [(n, o[key]) for n, key in (("latency", "target_latency_ms"), ("params", "target_params")) if o[key] is not None]
        if o["reward"] == "accuracy":
            if targets:
                given = " and ".join(f"target_{'latency_ms' if n == 'latency' else n}" for n, _ in targets)
                raise UsageError(f"option {given} of strategy {self.name!r} applies only with reward 'mnas'")
            return [(names.index("accuracy") if "accuracy" in names else 0, None)]
        if not targets:
            raise UsageError(f"reward 'mnas' of strategy {self.name!r} needs target_latency_ms or target_params (or both)")
        missing = [n for n in ["accuracy"] + [n for n, _ in targets] if n not in names]
        if missing:
            raise UsageError(f"reward 'mnas' of strategy {self.name!r} needs the objective(s) {', '.join(missing)}; "
                             f"this run's objectives are {', '.join(names)}")
        return [(names.index("accuracy"), None)] + [(names.index(n), t) for n, t in targets]

    # -- reward ---------------------------------------------------------------------------------
    def reward(self, result: Result) -> float:
        """The controller's reward for `result` (the class docstring says how)."""
        if not result.feasible:
            return min(0.0, self._lowest) if self._lowest is not None else 0.0
        assert result.values is not None
        (acc_index, _), *costs = self._reward_terms
        r = -result.values[acc_index]
        for i, target in costs:
            r *= (max(result.values[i], 1e-12) / target) ** self.options["w"]
        return r

    # -- the controller's walk ------------------------------------------------------------------
    def _walk(self, w: Mapping[str, Tensor], forced: Iterator[int] | None) -> tuple[dict[str, Any], list[int], Tensor, Tensor]:
        """Values, choice indices, summed log-probability and entropy of one sequence under
        weights `w`: drawn with `self.rng` (forced None), or the given choices'."""
        ctl, o = self._ctl, self.options
        x, h, c = ctl.zero_state(w)
        values: dict[str, Any] = {}
        choices: list[int] = []
        logp = entropy = 0.0
        for i, d in enumerate(self.space.decisions):
            if not self.space._active(d, values):
                continue
            h, c = ctl.step(w, x, h, c)
            lp = ctl.log_probs(w, i, h, o["temperature"], o["tanh_constant"])
            k = self._draw(lp.exp().tolist()) if forced is None else next(forced)
            values[d.label] = d.values[k]
            choices.append(k)
            logp = logp + lp[k]
            entropy = entropy - (lp.exp() * lp).sum()
            x = w[f"embed{i}"][k]
        return values, choices, logp, entropy

    def _draw(self, probs: list[float]) -> int:
        u = self.rng.random()
        total = 0.0
        for k, p in enumerate(probs):
            total += p
            if u < total:
                return k
        return len(probs) - 1  # u above a sum rounded below 1

    def _choices(self, arch: Architecture) -> list[int]:
        return [d.values.index(arch[d.label]) for d in self.space.decisions if d.label in arch]

    # -- ask / tell -----------------------------------------------------------------------------
    def ask(self) -> Proposal:
        self.n_asked += 1
        with _one_thread(), self._ctl.torch.no_grad():
            for _ in range(self.TRIES):
                arch = self.space.make(self._walk(self._ctl.weights, None)[0])
                if arch.valid:
                    return Proposal(arch)
        return Proposal(self.space.sample(self.rng))

    def tell(self, result: Result) -> None:
        self._check(result)
        self.n_told += 1
        r = self.reward(result)
        if result.feasible:
            self._lowest = r if self._lowest is None else min(self._lowest, r)
        self._batch.append((self._choices(result.arch), r))
        if len(self._batch) >= self.options["batch"]:
            self._update()

    def _update(self) -> None:
        o, ctl = self.options, self._ctl
        rewards = [r for _, r in self._batch]
        b = self._baseline if self._baseline is not None else sum(rewards) / len(rewards)
        with _one_thread():
            flat = ctl.flat.detach().requires_grad_()
            w = ctl.views(flat)
            loss = 0.0
            for choices, r in self._batch:
                _, _, logp, entropy = self._walk(w, iter(choices))
                loss = loss - (r - b) * logp - o["entropy_weight"] * entropy
            if ctl.torch.is_tensor(loss):  # a float: the space has no decision, nothing to learn
                (loss / len(self._batch)).backward()
                ctl.adam_step(flat.grad)
        for r in rewards:
            b = o["baseline_decay"] * b + (1 - o["baseline_decay"]) * r
        self._baseline = b
        self._batch = []
        self.n_updates += 1
        self._saved = None

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._saved is None:  # the driver saves the state at every ask and tell; encode once per update
            self._saved = self._ctl.state_dict()
        return {
            **super().state_dict(),
            "controller": self._saved,
            "batch": [[list(choices), r] for choices, r in self._batch],
            "baseline": self._baseline,
            "lowest": self._lowest,
            "updates": self.n_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._ctl.load_state_dict(state["controller"])
        self._saved = None
        self._batch = [([int(k) for k in choices], float(r)) for choices, r in state["batch"]]
        self._baseline = None if state["baseline"] is None else float(state["baseline"])
        self._lowest = None if state["lowest"] is None else float(state["lowest"])
        self.n_updates = int(state["updates"])
