"""Zero-cost proxies: each against a value computed by hand on a tiny network; seeded and
deterministic; fast enough on the shipped spaces' networks."""

from __future__ import annotations

import math
import statistics
import time

import pytest
import torch
from torch import nn

from nas import proxies
from nas.errors import UsageError
from nas.space import load_space


def linear(rows: list[list[float]]) -> nn.Linear:
    out, inp = len(rows), len(rows[0])
    m = nn.Linear(inp, out, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(rows))
    return m


def test_synflow_of_a_two_layer_net_by_hand() -> None:
    # |W1| = [[1, 2], [3, 4]], |w2| = [1, 2], input (1, 1): hidden = (3, 7), R = 3 + 14 = 17.
    # dR/dw2 = hidden -> sum |w2 * grad| = 3 + 14 = 17; dR/dW1[i, j] = |w2[i]| -> 1+2+6+8 = 17.
    net = nn.Sequential(linear([[1, -2], [3, 4]]), nn.ReLU(), linear([[-1, 2]]))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert proxies.synflow(net, (2,)) == pytest.approx(34.0)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "synflow must put the signed weights back"
    assert next(net.parameters()).dtype == torch.float32


def test_naswot_of_a_relu_layer_by_hand() -> None:
    # pre-activations of the three inputs: (1, -1, 0), (-1, 1, 0), (1, 1, 2) -> codes 100, 010, 111;
    # K[i, j] = units where the codes agree = [[3, 1, 1], [1, 3, 1], [1, 1, 3]], det 20.
    net = nn.Sequential(linear([[1, 0], [0, 1], [1, 1]]), nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    assert proxies.naswot(net, x) == pytest.approx(math.log(20.0))


def test_grad_norm_and_snip_of_a_linear_classifier_by_hand() -> None:
    # W = I, x = (1, 2), label 0: logits (1, 2), softmax (1, e) / (1 + e); dL/dlogits = (-p, p)
    # with p = e / (1 + e); dL/dW = g x^T = p * [[-1, -2], [1, 2]].
    net = linear([[1, 0], [0, 1]])
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    p = math.e / (1 + math.e)
    assert proxies.grad_norm(net, x, y) == pytest.approx(p * math.sqrt(10.0), rel=1e-6)
    assert proxies.snip(net, x, y) == pytest.approx(3 * p, rel=1e-6)  # |1 * -p| + |1 * 2p|
    assert all(q.grad is None for q in net.parameters()), "gradients are cleared afterwards"


def test_jacob_cov_of_a_relu_layer_by_hand() -> None:
    # input gradients of sum(relu(x)): (1, 0, 0), (0, 1, 0), (1, 1, 0); their correlations
    # -1/2, 1/2, 1/2 give eigenvalues 0, 3/2, 3/2.
    net = nn.Sequential(linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), nn.ReLU())
    x = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, -1.0]])
    k = 1e-5
    expected = -(2 * (math.log(1.5 + k) + 1 / (1.5 + k)) + math.log(k) + 1 / k)
    assert proxies.jacob_cov(net, x) == pytest.approx(expected, rel=1e-6)


def test_proxies_are_seeded_and_leave_torch_rng_alone() -> None:
    space = load_space("resnet")  # its head has dropout: train-mode proxies draw from the RNG
    arch = space.sample(3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name in proxies.PROXIES:
        a = proxies.score(space, arch, name, seed=1)
        b = proxies.score(space, arch, name, seed=1)
        assert a == b, name
    assert torch.equal(torch.get_rng_state(), state)
    assert proxies.score(space, arch, "synflow", seed=1) != proxies.score(space, arch, "synflow", seed=2)


def test_tabular_batch_is_fixed_and_says_so() -> None:
    space = load_space("nb201")
    s = proxies.ProxyScorer(space, "naswot")
    x, y = s.batch
    assert tuple(x.shape) == (proxies.BATCH_SIZE, 3, 32, 32) and int(y.max()) < 10
    assert torch.equal(x, proxies.batch_for((3, 32, 32), 10)[0])
    assert "synthetic" in s.batch_note and "(3, 32, 32)" in s.batch_note
    assert "no data" in proxies.ProxyScorer(space, "synflow").batch_note
    arch = space.sample(0)
    first = s(arch)
    spent = s.seconds
    assert s(arch) == first and s.seconds == spent, "a key is scored once"
    with pytest.raises(UsageError, match="unknown zero-cost proxy 'zen'"):
        proxies.ProxyScorer(space, "zen")


@pytest.mark.parametrize("space_name", ["nb201", "cnn", "mlp", "resnet"])
def test_each_proxy_scores_a_shipped_network_in_under_a_second(space_name: str) -> None:
    space = load_space(space_name)
    proxies.score(space, space.sample(0), "synflow")  # warm-up: the first double-precision pass
    for name in proxies.PROXIES:
        times = []
        for seed in range(3):
            t0 = time.perf_counter()
            value = proxies.score(space, space.sample(seed), name)
            times.append(time.perf_counter() - t0)
            assert math.isfinite(value) or value == float("-inf")
        assert statistics.median(times) < 1.0, (name, times)
