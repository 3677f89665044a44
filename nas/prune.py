"""Structured channel pruning of a resolved network, staying a resolved network.

The channel groups come from the resolved spec (`SearchSpace.resolve(arch).net`) walked side by
side with the `nas.ops.Network` it builds. Every tensor's channel axis is a *slot*; a conv or
linear layer opens a new slot for its outputs, batch norm, activations, pooling and dropout pass
it on, and slots that must hold the same channels are merged:

- a residual addition (`residual` without projection, a `resblock` with an identity shortcut)
  merges its output with its input, a projection merges the body's output with its own;
- a `cell` adds every edge's output into its node sums, so the whole cell lives in its input's
  slot (every conv of every edge is pruned on both axes with it, depthwise convs on their one);
- a `resblock` has one width for its two convs, so its inner slot keeps as many channels as its
  output (a *count class*), and when it projects (stride 1 and c_in != c_out) the two must stay
  different so that `nas.ops.ResBlock` still builds the projection.

The network's input and the classifier's outputs are never pruned. The result is a new spec of
the same layers with smaller widths (`Network(spec)` rebuilds it, as an export's model.py does)
and the state dict with the kept channels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from .errors import UsageError
from .ops import Network

IMPORTANCES = ("l1", "l2", "taylor")
Spec = dict[str, Any]


@dataclass
class _Entry:
    """A parameter or buffer axis that holds the channels of a slot (`mult` features each)."""

    name: str
    axis: int
    slot: int
    mult: int = 1


@dataclass
class _Graph:
    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    fixed: list[bool] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)
    same_count: list[tuple[int, int]] = field(default_factory=list)
    differ: list[tuple[int, int]] = field(default_factory=list)
    edits: list[tuple[Any, Any, int, int]] = field(default_factory=list)  # (container, key, slot, mult): container[key] = count * mult

    def new(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] != self.size[rb]:
            raise ValueError(f"tied channel groups of different sizes ({self.size[ra]} and {self.size[rb]})")
        self.parent[rb] = ra
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb]
        return ra

    def add(self, name: str, axis: int, slot: int, mult: int = 1) -> None:
        self.entries.append(_Entry(name, axis, slot, mult))

    def edit(self, container: Any, key: Any, slot: int, mult: int = 1) -> None:
        self.edits.append((container, key, slot, mult))


def _children(mod: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{n}", m) for n, m in mod.named_children()]


def _conv_or_bn(g: _Graph, name: str, m: nn.Module, in_slot: int, out_slot: int) -> None:
    """Register a conv (on in and out slots; depthwise on its one) or a BN / linear."""
    if isinstance(m, nn.Conv2d):
        if m.groups > 1:
            if m.groups != m.in_channels or m.out_channels != m.in_channels:
                raise ValueError(f"{name}: grouped conv that is not depthwise")
            g.add(f"{name}.weight", 0, in_slot)
            if m.bias is not None:
                g.add(f"{name}.bias", 0, in_slot)
            return
        g.add(f"{name}.weight", 0, out_slot)
        g.add(f"{name}.weight", 1, in_slot)
        if m.bias is not None:
            g.add(f"{name}.bias", 0, out_slot)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        for p in ("weight", "bias", "running_mean", "running_var"):
            g.add(f"{name}.{p}", 0, out_slot)


def _seq_layer(g: _Graph, prefix: str, mod: nn.Module, slot: int, mult: int) -> tuple[int, int]:
    """A conv / sep_conv / dense layer's Sequential: returns (out slot, out mult)."""
    for name, m in _children(mod, prefix):
        if isinstance(m, nn.Conv2d):
            if m.groups > 1:
                _conv_or_bn(g, name, m, slot, slot)
            else:
                out = g.new(m.out_channels)
                _conv_or_bn(g, name, m, slot, out)
                slot, mult = out, 1
        elif isinstance(m, nn.Linear):
            out = g.new(m.out_features)
            g.add(f"{name}.weight", 0, out)
            g.add(f"{name}.weight", 1, slot, mult)
            if m.bias is not None:
                g.add(f"{name}.bias", 0, out)
            slot, mult = out, 1
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if mult != 1:
                raise ValueError(f"{name}: batch norm over flattened features")
            _conv_or_bn(g, name, m, slot, slot)
        elif isinstance(m, nn.Flatten):
            pass  # handled by the caller through the layer's input shape
        elif any(True for _ in m.parameters()):
            raise ValueError(f"{name}: {type(m).__name__} with parameters is not supported by pruning")
    return slot, mult


def _cell(g: _Graph, prefix: str, mod: nn.Module, slot: int) -> None:
    for name, m in mod.named_modules(prefix=prefix):
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            _conv_or_bn(g, name, m, slot, slot)
        elif isinstance(m, nn.Linear):
            raise ValueError(f"{name}: a linear layer inside a cell")


def _resblock(g: _Graph, prefix: str, mod: nn.Module, layer: Spec, slot: int) -> int:
    mid = g.new(layer["out"])
    convs_a = [(n, m) for n, m in mod.a.named_modules(prefix=f"{prefix}.a") if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    convs_b = [(n, m) for n, m in mod.b.named_modules(prefix=f"{prefix}.b") if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    short = [(n, m) for n, m in mod.short.named_modules(prefix=f"{prefix}.short") if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    if short:
        out = g.new(layer["out"])
        for n, m in short:
            _conv_or_bn(g, n, m, slot, out)
        if layer["stride"] == 1:
            g.differ.append((slot, out))  # ResBlock projects only when the widths differ (or it strides)
    else:
        out = slot  # identity shortcut: the block's output holds its input's channels
    for n, m in convs_a:
        _conv_or_bn(g, n, m, slot, mid)
    for n, m in convs_b:
        _conv_or_bn(g, n, m, mid, out)
    g.same_count.append((mid, out))  # one width for both convs
    g.edit(layer, "out", out)
    return out


def _walk(g: _Graph, layers: list[Spec], mods: nn.Sequential, prefix: str, slot: int, mult: int) -> tuple[int, int]:
    for i, layer in enumerate(layers):
        name, mod = f"{prefix}.{i}", mods[i]
        t = layer["type"]
        shape = layer["in"]
        g.edit(layer["in"], 0, slot, mult if len(shape) == 1 else 1)
        if t in ("conv", "sep_conv", "dense"):
            in_mult = mult if len(shape) == 1 else shape[1] * shape[2] if t == "dense" else 1
            slot, mult = _seq_layer(g, name, mod, slot, in_mult)
            g.edit(layer, "units" if t == "dense" else "out", slot)
        elif t in ("pool", "act", "dropout", "identity"):
            pass
        elif t == "norm":
            if len(shape) == 1 and mult != 1:
                raise ValueError(f"{name}: batch norm over flattened features")
            if any(True for _ in mod.parameters()):
                _conv_or_bn(g, name, mod, slot, slot)
        elif t == "global_pool":
            mult = 1
        elif t == "flatten":
            mult = shape[1] * shape[2] if len(shape) == 3 else mult
        elif t == "resblock":
            slot = _resblock(g, name, mod, layer, slot)
        elif t == "cell":
            _cell(g, name, mod, slot)
        elif t == "residual":
            in_slot, in_mult = slot, mult
            end, end_mult = _walk(g, layer["body"], mod.body, f"{name}.body", slot, mult)
            proj = layer.get("proj")
            if proj is None:
                if end_mult != in_mult:
                    raise ValueError(f"{name}: residual joins tensors of different layouts")
                g.union(end, in_slot)
                slot, mult = g.find(in_slot), in_mult
            else:
                out = g.new(proj["out"])
                if proj["kind"] == "linear":
                    g.add(f"{name}.short.weight", 0, out)
                    g.add(f"{name}.short.weight", 1, in_slot, in_mult)
                else:
                    for n, m in mod.short.named_modules(prefix=f"{name}.short"):
                        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                            _conv_or_bn(g, n, m, in_slot, out)
                if end_mult != 1:
                    raise ValueError(f"{name}: a projected residual over flattened features")
                slot = g.union(end, out)
                mult = 1
                g.edit(proj, "out", slot)
        else:
            raise ValueError(f"layer type {t!r} is not supported by pruning")
    return slot, mult


def channel_graph(spec: Spec, net: Network) -> tuple[Spec, _Graph]:
    """The slots, entries and spec fields of a network (on a copy of the spec)."""
    spec = copy.deepcopy(spec)
    g = _Graph()
    shape = spec["input"]
    start = g.new(shape[0], fixed=True)
    slot, mult = _walk(g, spec["body"], net.body, "body", start, 1)
    head = spec["head"]
    feat = head["in"]
    g.edit(feat, 0, slot, mult if len(feat) == 1 else 1)
    if len(feat) == 3 and head.get("pool") not in ("avg", "max"):
        mult = feat[1] * feat[2]
    linear_name = f"head.{len(net.head) - 1}"
    g.add(f"{linear_name}.weight", 1, slot, mult)
    return spec, g


def _channel_norms(t: torch.Tensor, axis: int, mult: int, kind: str) -> torch.Tensor:
    x = t.detach().float().movedim(axis, 0)
    x = x.reshape(x.shape[0] // mult, -1)
    return x.abs().sum(1) if kind == "l1" else x.pow(2).sum(1).sqrt()


def importance(state: Mapping[str, torch.Tensor], g: _Graph, kind: str = "l1",
               grads: Mapping[str, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
    """Per-group channel scores: the sum over every weight tensor of the group (producers and
    consumers) of each channel's L1 or L2 norm, each tensor's scores divided by their mean so
    that no one layer's scale decides; `taylor` scores |sum(w * dL/dw)| per channel instead
    (Molchanov et al. 2019), from `grads` of a few training batches."""
    scores: dict[int, torch.Tensor] = {}
    for e in g.entries:
        t = state[e.name]
        if not e.name.endswith(".weight") or t.dim() < 2:
            continue  # conv and linear filters only (biases and batch-norm scales are not filters)
        if kind == "taylor":
            if grads is None or e.name not in grads:
                continue
            x = (t.detach().float() * grads[e.name].float()).movedim(e.axis, 0)
            s = x.reshape(x.shape[0] // e.mult, -1).sum(1).abs()
        else:
            s = _channel_norms(t, e.axis, e.mult, kind)
        s = s / s.mean().clamp_min(1e-12)
        root = g.find(e.slot)
        scores[root] = scores.get(root, 0) + s
    return scores


@dataclass
class Pruned:
    """A pruned network: its spec (a resolved network with smaller widths) and weights."""

    spec: Spec
    state: dict[str, torch.Tensor]
    groups: int  # channel groups pruned
    kept: dict[int, tuple[int, int]]  # group -> (kept, of)


def prune(spec: Spec, state: Mapping[str, torch.Tensor], ratio: float, kind: str = "l1",
          grads: Mapping[str, torch.Tensor] | None = None) -> Pruned:
    """Remove `ratio` of the channels of every prunable group (at least one channel is kept),
    the lowest-scoring ones by `importance`."""
    if not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
        raise UsageError(f"the pruning ratio must be in (0, 1), got {ratio!r}")
    if kind not in IMPORTANCES:
        raise UsageError(f"unknown importance {kind!r}; use {', '.join(IMPORTANCES)}")
    net = Network(spec)
    net.load_state_dict(dict(state))
    new_spec, g = channel_graph(spec, net)
    roots = sorted({g.find(i) for i in range(len(g.parent))})
    # count classes: groups that must keep as many channels as each other
    cls = {r: r for r in roots}

    def cfind(a: int) -> int:
        while cls[a] != a:
            a = cls[a]
        return a

    for a, b in g.same_count:
        ra, rb = cfind(g.find(a)), cfind(g.find(b))
        if ra != rb:
            cls[rb] = ra
    members: dict[int, list[int]] = {}
    for r in roots:
        members.setdefault(cfind(r), []).append(r)
    count: dict[int, int] = {}
    for c, rs in members.items():
        size = g.size[rs[0]]
        fixed = any(g.fixed[r] for r in rs)
        n = size if fixed else max(1, int(round(size * (1.0 - ratio))))
        for r in rs:
            count[r] = n
    for a, b in g.differ:
        ra, rb = g.find(a), g.find(b)
        if count[ra] == count[rb]:  # a projecting block must keep different widths
            c = cfind(rb)
            if any(g.fixed[r] for r in members[c]):
                c = cfind(ra)
            bump = 1 if count[members[c][0]] < g.size[members[c][0]] else -1
            for r in members[c]:
                count[r] += bump
    scores = importance(state, g, kind, grads)
    keep: dict[int, torch.Tensor] = {}
    for r in roots:
        n = count[r]
        if n == g.size[r]:
            keep[r] = torch.arange(n)
            continue
        s = scores.get(r)
        if s is None:
            s = torch.zeros(g.size[r])
        top = torch.topk(s, n, largest=True, sorted=False).indices
        keep[r] = torch.sort(top).values
    new_state = {k: v.detach().clone() for k, v in state.items()}
    for e in g.entries:
        idx = keep[g.find(e.slot)]
        if e.mult > 1:
            idx = (idx[:, None] * e.mult + torch.arange(e.mult)[None, :]).reshape(-1)
        new_state[e.name] = new_state[e.name].index_select(e.axis, idx)
    for container, key, slot, mult in g.edits:
        container[key] = count[g.find(slot)] * mult
    check = Network(new_spec)
    check.load_state_dict(new_state)  # strict: every tensor has the shape the smaller spec builds
    pruned_groups = sum(1 for r in roots if count[r] < g.size[r])
    return Pruned(new_spec, new_state, pruned_groups, {r: (count[r], g.size[r]) for r in roots})


def taylor_grads(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Gradients of the training loss summed over `batches`, for Taylor importance (eval-mode BN)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    was = net.training
    net.eval()
    net.zero_grad(set_to_none=True)
    for xb, yb in batches:
        loss_fn(net(xb), yb).backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    net.train(was)
    return grads


def param_ratio(before: Spec, after: Spec) -> float:
    a = sum(p.numel() for p in Network(before).parameters())
    b = sum(p.numel() for p in Network(after).parameters())
    return b / a if a else math.nan
