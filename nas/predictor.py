"""A surrogate of an architecture's score: encodings and an ensemble with its spread.

    enc = Encoder(space)                     # path encoding for cell spaces, else one-hot
    model = Ensemble(seed=0).fit(enc.matrix(archs), y)
    mean, spread = model.predict(enc.matrix(candidates))

Encodings:

- one-hot of every decision, with an extra 'inactive' slot for a decision the architecture does
  not use (a layer past the chosen repeat count, the momentum of Adam);
- for a space whose architecture is one cell (NAS-Bench-201), the path encoding of White et al.
  2021 (BANANAS): for each path from the cell's input node to its output node, the sequence of
  ops along it (a `none` edge cuts the path), counted by sequence. Renumbering the intermediate
  nodes of a cell maps its paths onto paths with the same op sequences, so isomorphic cells get
  the same encoding, and ops on edges that no input-output path uses do not enter it. When the
  number of possible sequences is large (many ops or nodes) they are hashed into 4,096 counts.

The model (numpy only): `members` ridge regressions, each on its own bootstrap resample of the
data and on its own random ReLU features of the encoding (plus the encoding itself), solved in
closed form. The mean of the members is the prediction, their standard deviation the
uncertainty. Fitting 200 points takes milliseconds, so the search refits it after every result.
The members' randomness comes from `seed` alone: the same data and seed give the same model.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Sequence

import numpy as np

HASHED = 4096  # features when the path encoding would have more possible sequences than this


def _cell_edges(nodes: int) -> list[tuple[int, int]]:
    """(to, from) of every edge of a `nodes`-node cell, in cell-string order."""
    return [(j, i) for j in range(1, nodes) for i in range(j)]


class Encoder:
    """Feature vectors of a space's architectures (see the module docstring)."""

    def __init__(self, space: Any, extra: Callable[[Any], Sequence[float]] | None = None, n_extra: int = 0) -> None:
        self.space = space
        self.extra = extra
        self.n_extra = n_extra if extra is not None else 0
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}  # by values, not key: twins may differ in dead edges
        form = space.cell_form
        self.kind = "path" if form is not None else "onehot"
        if form is not None:
            nodes, labels = form
            edges = _cell_edges(nodes)
            if len(edges) != len(labels):
                self.kind = "onehot"
            else:
                self._labels = labels
                self._edge = dict(zip(edges, labels))
                ops = sorted({str(v) for lab in labels for v in space.decision(lab).values if str(v) != "none"})
                self._ops = {op: i for i, op in enumerate(ops)}
                self._paths = self._all_paths(nodes)
                lengths = sorted({len(p) for p in self._paths})
                self._offset, total = {}, 0
                for n in lengths:
                    self._offset[n] = total
                    total += len(ops) ** n
                self._hashed = total > HASHED
                self.width = HASHED if self._hashed else total
        if self.kind == "onehot":
            self._decisions = [(d.label, list(d.values)) for d in space.decisions]
            self._slot: list[int] = []
            total = 0
            for _, values in self._decisions:
                self._slot.append(total)
                total += len(values) + 1
            self.width = total

    @staticmethod
    def _all_paths(nodes: int) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = []

        def walk(node: int, path: list[tuple[int, int]]) -> None:
            if node == nodes - 1:
                out.append(list(path))
                return
            for nxt in range(node + 1, nodes):
                path.append((nxt, node))
                walk(nxt, path)
                path.pop()

        walk(0, [])
        return out

    @property
    def dim(self) -> int:
        return self.width + self.n_extra

    def encode(self, arch: Any) -> np.ndarray:
        memo = tuple(arch.items())
        hit = self._cache.get(memo)
        if hit is not None:
            return hit
        f = np.zeros(self.dim)
        if self.kind == "path":
            for path in self._paths:
                seq = [str(arch[self._edge[e]]) for e in path]
                if "none" in seq:
                    continue
                if self._hashed:
                    digest = hashlib.sha1("|".join(seq).encode()).digest()
                    f[int.from_bytes(digest[:4], "big") % HASHED] += 1
                else:
                    idx = 0
                    for op in seq:
                        idx = idx * len(self._ops) + self._ops[op]
                    f[self._offset[len(seq)] + idx] += 1
        else:
            for (label, values), slot in zip(self._decisions, self._slot):
                f[slot + (values.index(arch[label]) if label in arch else len(values))] = 1.0
        if self.n_extra:
            assert self.extra is not None
            f[self.width:] = self.extra(arch)
        self._cache[memo] = f
        return f

    def matrix(self, archs: Sequence[Any]) -> np.ndarray:
        if not archs:
            return np.zeros((0, self.dim))
        return np.stack([self.encode(a) for a in archs])


class Ensemble:
    """Bootstrap ensemble of ridge regressions on random ReLU features (module docstring)."""

    def __init__(self, members: int = 10, hidden: int = 64, ridge: float = 1.0, seed: int = 0) -> None:
        if members < 2:
            raise ValueError("an ensemble needs at least 2 members to give a spread")
        self.members = members
        self.hidden = hidden
        self.ridge = ridge
        self.seed = seed
        self._fitted: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._mu = 0.0
        self._sd = 1.0

    def _features(self, X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.hstack([np.maximum(X @ W + b, 0.0), X, np.ones((len(X), 1))])

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Ensemble":
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"fit needs as many targets as rows, and at least one; got {len(X)} rows and {len(y)} targets")
        self._mu = float(y.mean())
        self._sd = float(y.std()) or 1.0
        z = (y - self._mu) / self._sd
        rng = np.random.default_rng(self.seed)
        d = X.shape[1]
        self._fitted = []
        for _ in range(self.members):
            W = rng.normal(size=(d, self.hidden)) / math.sqrt(max(d, 1))
            b = rng.normal(size=self.hidden) * 0.5
            idx = rng.integers(0, len(X), len(X))
            F = self._features(X[idx], W, b)
            A = F.T @ F + self.ridge * np.eye(F.shape[1])
            w = np.linalg.solve(A, F.T @ z[idx])
            self._fitted.append((W, b, w))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) of the members' predictions for each row."""
        if not self._fitted:
            raise RuntimeError("predict before fit")
        X = np.asarray(X, dtype=float)
        P = np.stack([self._features(X, W, b) @ w for W, b, w in self._fitted]) * self._sd + self._mu
        return P.mean(axis=0), P.std(axis=0)
