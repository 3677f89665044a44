"""Zero-cost proxies: scores of an untrained network from one batch (or none), no training.

    from nas.proxies import score
    s = score(space, arch, "synflow")                       # data-free
    s = score(space, arch, "naswot", batch=(x, y))          # one batch of the training data

Proxies (higher is better for all of them, as their authors rank networks):

- `synflow` (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow"; the network-level sum of Abdelfattah et al. 2021, "Zero-cost
  proxies for lightweight NAS"): every weight replaced by its absolute value, batch norm in eval
  mode, in double precision, one all-ones input; R = sum of the outputs; the score is the sum
  over conv and linear weights of |w * dR/dw|. Needs no data.
- `naswot` (Mellor et al. 2021, "Neural architecture search without training"): for every
  activation unit, the binary code "input > 0" of each of the N inputs of the batch; the kernel
  K[i, j] = number of units where inputs i and j agree; the score is log |det K|.
- `grad_norm` (Abdelfattah et al. 2021): the sum over conv and linear layers of the L2 norm of
  the cross-entropy loss's gradient with respect to their weights, on one batch.
- `snip` (Lee et al. 2019, "SNIP: single-shot network pruning"; summed as Abdelfattah et al.):
  the sum over conv and linear weights of |w * dL/dw| for the cross-entropy loss L of one batch.
- `jacob_cov` (Mellor et al. 2020, v1 of "NAS without training"): J = the gradient of the sum
  of the outputs with respect to each input of the batch, C = the correlation matrix of the
  rows of J, with eigenvalues v; the score is -sum(log(v + 1e-5) + 1 / (v + 1e-5)).

Everything is seeded (weights from `seed`, the batch from `seed` when none is given) and runs
on the CPU, so the same architecture and seed give the same score. Without data (a tabular run
such as `nb201:cifar10`) the proxies that need a batch get one of standard-normal inputs of the
network's input shape with uniformly drawn labels, made from a fixed seed (`batch_for`), and
`describe_batch` says so.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from .errors import UsageError

PROXIES = ("synflow", "naswot", "grad_norm", "snip", "jacob_cov")
NEEDS_DATA = {"synflow": False, "naswot": True, "grad_norm": True, "snip": True, "jacob_cov": True}
BATCH_SIZE = 16  # inputs per batch: small enough that an NB201 network scores in well under a second on a CPU
BATCH_SEED = 0  # the fixed seed of the synthetic batch of a tabular run


def check_proxy(name: str) -> str:
    if name not in PROXIES:
        raise UsageError(f"unknown zero-cost proxy {name!r}; valid proxies: {', '.join(PROXIES)}")
    return name


# -- the proxies on any torch module ----------------------------------------------------------
def _weighted_layers(model: Any) -> list[Any]:
    from torch import nn

    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def synflow(model: Any, input_shape: Sequence[int]) -> float:
    """Synaptic flow of `model` (changed in place while scoring, restored after)."""
    import torch

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dtype = next(model.parameters()).dtype
    was_training = model.training
    try:
        model.double().eval()
        with torch.no_grad():
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.abs_()
        model.zero_grad(set_to_none=True)
        out = model(torch.ones((1, *input_shape), dtype=torch.float64))
        out.sum().backward()
        total = 0.0
        for m in _weighted_layers(model):
            if m.weight.grad is not None:
                total += float((m.weight.detach() * m.weight.grad).abs().sum())
        return total
    finally:
        model.zero_grad(set_to_none=True)
        model.to(dtype)
        model.load_state_dict(saved)
        model.train(was_training)


def naswot(model: Any, x: Any) -> float:
    """log |det K| of the activation-code kernel of the batch `x` (train mode, no gradients)."""
    import torch
    from torch import nn

    acts = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.ELU, nn.Tanh, nn.Sigmoid)
    n = x.shape[0]
    K = torch.zeros((n, n), dtype=torch.float64)

    def hook(mod: Any, inp: tuple[Any, ...], out: Any) -> None:
        c = (inp[0].detach().reshape(n, -1) > 0).to(torch.float64)
        K.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, acts)]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    sign, logdet = np.linalg.slogdet(K.numpy())
    return float(logdet) if sign != 0 else float("-inf")


def _loss_grads(model: Any, x: Any, y: Any) -> list[tuple[Any, Any]]:
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    was_training = model.training
    try:
        model.train()
        F.cross_entropy(model(x), y).backward()
    finally:
        model.train(was_training)
    out = [(m.weight, m.weight.grad) for m in _weighted_layers(model)]
    return [(w.detach(), torch.zeros_like(w) if g is None else g.detach()) for w, g in out]


def grad_norm(model: Any, x: Any, y: Any) -> float:
    """Sum over conv/linear layers of ||dL/dW||_2 for the cross-entropy of one batch."""
    try:
        return float(sum(float(g.norm()) for _, g in _loss_grads(model, x, y)))
    finally:
        model.zero_grad(set_to_none=True)


def snip(model: Any, x: Any, y: Any) -> float:
    """Sum over conv/linear weights of |w * dL/dw| for the cross-entropy of one batch."""
    try:
        return float(sum(float((w * g).abs().sum()) for w, g in _loss_grads(model, x, y)))
    finally:
        model.zero_grad(set_to_none=True)


def jacob_cov(model: Any, x: Any) -> float:
    """-sum(log(v + 1e-5) + 1/(v + 1e-5)) over the eigenvalues v of the correlation matrix of
    the input gradients of the batch."""
    was_training = model.training
    x = x.detach().clone().requires_grad_(True)
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    J = x.grad.detach().reshape(x.shape[0], -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.corrcoef(J)
    if not np.all(np.isfinite(C)):
        return float("-inf")  # a constant gradient row: no correlation defined, the worst score
    v = np.linalg.eigvalsh(C)
    k = 1e-5
    return float(-np.sum(np.log(np.maximum(v, 0) + k) + 1.0 / (np.maximum(v, 0) + k)))


# -- batches ---------------------------------------------------------------------------------
def batch_for(input_shape: Sequence[int], classes: int, size: int = BATCH_SIZE, seed: int = BATCH_SEED) -> tuple[Any, Any]:
    """A synthetic batch: standard-normal inputs of `input_shape`, uniform labels, from `seed`
    (what the data-needing proxies see on a tabular run, where there is no data)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((size, *input_shape), generator=g)
    y = torch.randint(0, classes, (size,), generator=g)
    return x, y


def data_batch(dataset: Any, size: int = BATCH_SIZE, seed: int = BATCH_SEED) -> tuple[Any, Any]:
    """`size` training examples drawn (without replacement) with `seed` from a `nas.data.Dataset`."""
    import torch

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset.x_train), size=min(size, len(dataset.x_train)), replace=False)
    return torch.as_tensor(np.ascontiguousarray(dataset.x_train[idx])), torch.as_tensor(np.ascontiguousarray(dataset.y_train[idx]))


def describe_batch(dataset: Any, input_shape: Sequence[int], size: int = BATCH_SIZE) -> str:
    if dataset is None:
        return (f"a synthetic batch of {size} standard-normal inputs of shape {tuple(input_shape)} with uniform labels "
                f"(seed {BATCH_SEED}): the table has no images")
    return f"{size} training examples of {getattr(dataset, 'name', 'the data')} (seed {BATCH_SEED})"


# -- an architecture's score -----------------------------------------------------------------
def _score_model(name: str, model: Any, input_shape: Sequence[int], batch: tuple[Any, Any] | None) -> float:
    if name == "synflow":
        return synflow(model, input_shape)
    assert batch is not None
    x, y = batch
    if name == "naswot":
        return naswot(model, x)
    if name == "grad_norm":
        return grad_norm(model, x, y)
    if name == "snip":
        return snip(model, x, y)
    return jacob_cov(model, x)


def score(space: Any, arch: Any, proxy: str, *, batch: tuple[Any, Any] | None = None, seed: int = 0) -> float:
    """The proxy's score of `arch`'s network, built with weights from `seed` (torch's global RNG
    is left as it was). `batch` (inputs, labels) for the proxies that need data; by default the
    synthetic batch of `batch_for`."""
    import torch

    from .build import build_model

    check_proxy(proxy)
    if NEEDS_DATA[proxy] and batch is None:
        batch = batch_for(space.input_shape, space.classes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every machine
    try:
        with torch.random.fork_rng(devices=[]):  # weights and any dropout drawn from `seed`
            torch.manual_seed(seed)
            model = build_model(space, arch)
            value = _score_model(proxy, model, space.input_shape, batch)
    finally:
        torch.set_num_threads(threads)
    return value if math.isfinite(value) or value == float("-inf") else float("-inf")


class ProxyScorer:
    """Scores architectures of one space by one proxy, remembering each key's score (a proxy is a
    function of the network and the seed, so a key is scored once per process)."""

    def __init__(self, space: Any, proxy: str, *, dataset: Any = None, seed: int = 0) -> None:
        self.space = space
        self.proxy = check_proxy(proxy)
        self.seed = seed
        self.dataset = dataset
        self._batch: tuple[Any, Any] | None = None
        self._cache: dict[str, float] = {}
        self.seconds = 0.0

    @property
    def batch(self) -> tuple[Any, Any] | None:
        if NEEDS_DATA[self.proxy] and self._batch is None:
            if self.dataset is not None:
                self._batch = data_batch(self.dataset)
            else:
                self._batch = batch_for(self.space.input_shape, self.space.classes)
        return self._batch

    @property
    def batch_note(self) -> str:
        if not NEEDS_DATA[self.proxy]:
            return "no data (all-ones input)"
        return describe_batch(self.dataset, self.space.input_shape)

    def __call__(self, arch: Any) -> float:
        hit = self._cache.get(arch.key)
        if hit is None:
            t0 = time.perf_counter()
            hit = score(self.space, arch, self.proxy, batch=self.batch, seed=self.seed)
            self.seconds += time.perf_counter() - t0
            self._cache[arch.key] = hit
        return hit


def rank_key(value: float) -> float:
    """A score as a sort key (higher is better); -inf and NaN rank last."""
    return value if math.isfinite(value) else -math.inf
