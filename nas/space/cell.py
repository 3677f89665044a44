"""Cell DAGs: which edges matter, whether the output is reachable, a canonical form, NB201 strings.

A cell has nodes 0..n-1; node i sums an op applied to every earlier node; node 0 is the cell's
input and node n-1 its output. `none` edges carry nothing, so a node that cannot be reached from
the input through non-`none` edges, or from which the output cannot be reached, does not change
what the cell computes. Two cells are the same network when their remaining graphs are
isomorphic with the input and output fixed and ops as edge labels.
"""

from __future__ import annotations

import functools
import itertools
from typing import Iterable, Sequence

Edge = tuple[int, int, str]  # (to, from, op)

#: Exact canonical forms enumerate permutations of the intermediate nodes; past this many,
#: fall back to a Weisfeiler-Lehman hash (networkx), which is exact for all but contrived graphs.
MAX_EXACT_NODES = 7


def live_edges(nodes: int, edges: Iterable[Edge]) -> list[Edge] | None:
    """The edges on some input-to-output path, or None when the output is cut off."""
    real = [(i, j, op) for i, j, op in edges if op != "none"]
    forward = {0}
    for i in range(1, nodes):
        if any(t == i and f in forward for t, f, _ in real):
            forward.add(i)
    out = nodes - 1
    if out not in forward:
        return None
    backward = {out}
    for i in range(nodes - 2, -1, -1):
        if any(f == i and t in backward for t, f, _ in real):
            backward.add(i)
    live = forward & backward
    return sorted((t, f, op) for t, f, op in real if t in live and f in live)


def canonical_cell(nodes: int, edges: Iterable[Edge]) -> str | None:
    """A string equal for two cells iff they compute the same graph; None if the output is cut off."""
    return _canonical(nodes, tuple(tuple(e) for e in edges))


@functools.lru_cache(maxsize=65536)
def _canonical(nodes: int, edges: tuple[Edge, ...]) -> str | None:
    live = live_edges(nodes, edges)
    if live is None:
        return None
    inner = sorted({n for t, f, _ in live for n in (t, f)} - {0, nodes - 1})
    out = len(inner) + 1
    if len(inner) <= MAX_EXACT_NODES:
        best: tuple | None = None
        for perm in itertools.permutations(range(1, len(inner) + 1)):
            relabel = {0: 0, nodes - 1: out, **dict(zip(inner, perm))}
            form = tuple(sorted((relabel[t], relabel[f], op) for t, f, op in live))
            if best is None or form < best:
                best = form
        return ";".join(f"{t}<{f}:{op}" for t, f, op in best or ())
    import networkx as nx

    graph = nx.DiGraph()
    for t, f, op in live:
        graph.add_edge(f, t, op=op)
    for n in graph.nodes:
        graph.nodes[n]["role"] = "in" if n == 0 else "out" if n == nodes - 1 else "mid"
    return "wl:" + nx.weisfeiler_lehman_graph_hash(graph, node_attr="role", edge_attr="op", iterations=5)


def to_graph(nodes: int, edges: Iterable[Edge]):
    """The cell as a networkx DiGraph (edges from -> to with an `op` attribute), `none` edges left out."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(range(nodes))
    for t, f, op in edges:
        if op != "none":
            graph.add_edge(f, t, op=op)
    return graph


def cell_string(nodes: int, ops: Sequence[str]) -> str:
    """NAS-Bench-201 form: `|op~0|+|op~0|op~1|+|...|` with ops in edge order (1<-0, 2<-0, 2<-1, ...)."""
    groups, k = [], 0
    for i in range(1, nodes):
        groups.append("|" + "|".join(f"{ops[k + j]}~{j}" for j in range(i)) + "|")
        k += i
    return "+".join(groups)


def parse_cell_string(text: str) -> tuple[int, list[str]]:
    """Inverse of `cell_string`: (nodes, ops in edge order). ValueError on a malformed string;
    op names are not checked here (the caller knows which are allowed)."""
    ops: list[str] = []
    groups = text.strip().split("+")
    for i, group in enumerate(groups, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"node {i} must look like '|op~0|...|', got {group!r}")
        items = group[1:-1].split("|")
        if len(items) != i:
            raise ValueError(f"node {i} must have {i} input edge(s), got {len(items)}")
        for j, item in enumerate(items):
            op, sep, src = item.rpartition("~")
            if not sep:
                raise ValueError(f"edge {item!r} of node {i} lacks '~input'")
            if src != str(j):
                raise ValueError(f"edge {item!r} of node {i} must read from node {j}, got {src!r}")
            ops.append(op)
    return len(groups) + 1, ops
