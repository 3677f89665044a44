"""Cell DAGs: the minimal network a cell builds, its canonical form, NB201 strings.

A cell has nodes 0..n-1; node i sums an op applied to every earlier node; node 0 is the cell's
input and node n-1 its output. What a cell builds is its *minimal* form (`minimal_cell`), made
by rewrites that keep the function the cell computes and every module that can change it:

- `none` edges carry nothing and are dropped; so is every edge not on a path from the input to
  the output (its op could not change the output);
- a node whose only input is one `skip_connect` is its source's tensor: it is contracted into
  that source (the output too: a cell whose output is its input's tensor is the identity);
- a node whose only use is one `skip_connect` into another node is summed there directly
  (sums are unordered and associative);

and nodes are then numbered by an exact canonical labelling (sums are unordered, intermediate
nodes have no identity of their own), so that two cells with the same minimal form give the
same edge list, which is what the resolver writes into the network spec and hashes into the
key. The labelling is individualisation-refinement: colour refinement, then a search over the
ways to break ties, pruned with the automorphisms it finds; exact for every cell size.
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

Edge = tuple[int, int, str]  # (to, from, op)

#: The op that passes its input on unchanged: a node fed only by it is its source's tensor.
SKIP = "skip_connect"


def live_edges(nodes: int, edges: Iterable[Edge]) -> list[Edge] | None:
    """The non-`none` edges on some input-to-output path, or None when the output is cut off."""
    real = [(int(t), int(f), str(op)) for t, f, op in edges if op != "none"]
    out = nodes - 1
    forward = {0}
    for t, f, _ in sorted(real):  # sorted by target: sources come first in a cell DAG
        if f in forward:
            forward.add(t)
    if out not in forward:
        return None
    backward = {out}
    for t, f, _ in sorted(real, reverse=True):
        if t in backward:
            backward.add(f)
    live = forward & backward
    return sorted((t, f, op) for t, f, op in real if t in live and f in live)


def minimal_cell(nodes: int, edges: Iterable[Edge]) -> tuple[int, tuple[Edge, ...]] | None:
    """(nodes, edges) of the network the cell builds, canonically numbered; None if the output
    is cut off from the input. `(1, ())` is a cell that is the identity (its output is its
    input's tensor). Edges are sorted (to, from, op) with from < to; two edges may join the
    same pair of nodes (two modules summed)."""
    return _minimal(int(nodes), tuple(e if type(e) is tuple else tuple(e) for e in edges))


def canonical_cell(nodes: int, edges: Iterable[Edge]) -> str | None:
    """A string equal for two cells iff they build the same minimal network; None if the
    output is cut off."""
    form = minimal_cell(nodes, edges)
    if form is None:
        return None
    n, es = form
    return f"{n}:" + ";".join(f"{t}<{f}:{op}" for t, f, op in es)


@functools.lru_cache(maxsize=65536)
def _minimal(nodes: int, edges: tuple[Edge, ...]) -> tuple[int, tuple[Edge, ...]] | None:
    live = live_edges(nodes, [(int(t), int(f), str(op)) for t, f, op in edges])
    if live is None:
        return None
    return _minimal_live(nodes, tuple(live))


# Cells that differ only in edges that are `none` or cannot reach the output share their live
# edges, and many live edge sets contract to one graph: each step is memoised on its own input.
@functools.lru_cache(maxsize=65536)
def _minimal_live(nodes: int, live: tuple[Edge, ...]) -> tuple[int, tuple[Edge, ...]]:
    es = list(live)
    out = nodes - 1
    changed = True
    while changed:
        changed = False
        # a node fed by a single skip_connect is its source's tensor
        for v in sorted({t for t, _, _ in es}):
            ins = [e for e in es if e[0] == v]
            if len(ins) == 1 and ins[0][2] == SKIP:
                u = ins[0][1]
                es = [(t, u if f == v else f, op) for t, f, op in es if (t, f, op) != ins[0]]
                if v == out:
                    out = u
                changed = True
                break
        if changed:
            continue
        # a node used only by one skip_connect is summed into its user
        for v in sorted({f for _, f, _ in es} - {0, out}):
            outs = [e for e in es if e[1] == v]
            if len(outs) == 1 and outs[0][2] == SKIP:
                w = outs[0][0]
                es = [(w if t == v else t, f, op) for t, f, op in es if (t, f, op) != outs[0]]
                changed = True
                break
    if out == 0:
        return (1, ())
    inner = sorted({n for t, f, _ in es for n in (t, f)} - {0, out})
    index = {0: 0, out: len(inner) + 1, **{v: i + 1 for i, v in enumerate(inner)}}
    graph = tuple((index[t], index[f], op) for t, f, op in es)
    return _canonical_form(len(inner) + 2, graph)


@functools.lru_cache(maxsize=65536)
def _canonical_form(nodes: int, edges: tuple[Edge, ...]) -> tuple[int, tuple[Edge, ...]]:
    return canonical_form(nodes, edges)


def canonical_form(nodes: int, edges: Sequence[Edge]) -> tuple[int, tuple[Edge, ...]]:
    """The cell DAG (node 0 its input, node n-1 its output, every other node reachable from the
    input and reaching the output) renumbered canonically: isomorphic cells (intermediate nodes
    permuted, ops as edge labels, parallel edges counted) give equal results, others differ.
    The numbering is topological (every edge goes from a lower to a higher node)."""
    labelling = _canonical_labelling(nodes, [(int(t), int(f), str(op)) for t, f, op in edges])
    relabelled = [(labelling[t], labelling[f], op) for t, f, op in edges]
    # a canonical topological order of the canonical graph: Kahn's algorithm, lowest label first
    preds: dict[int, set[int]] = {v: set() for v in range(nodes)}
    for t, f, _ in relabelled:
        preds[t].add(f)
    order: list[int] = []
    done: set[int] = set()
    while len(order) < nodes:
        ready = min(v for v in range(nodes) if v not in done and preds[v] <= done)
        order.append(ready)
        done.add(ready)
    topo = {v: i for i, v in enumerate(order)}
    final = sorted((topo[t], topo[f], op) for t, f, op in relabelled)
    assert all(f < t for t, f, _ in final), final
    return nodes, tuple(final)


def _canonical_labelling(nodes: int, edges: list[Edge]) -> dict[int, int]:
    """node -> canonical label (input 0, output n-1), by individualisation-refinement."""
    out = nodes - 1
    ins: dict[int, list[tuple[str, int]]] = {v: [] for v in range(nodes)}
    outs: dict[int, list[tuple[str, int]]] = {v: [] for v in range(nodes)}
    for t, f, op in edges:
        ins[t].append((op, f))
        outs[f].append((op, t))

    def refine(colour: dict[int, int]) -> dict[int, int]:
        """Equitable colouring finer than `colour`; colours are ranks of isomorphism-invariant
        signatures, so they are canonical."""
        while True:
            sig = [(colour[v], tuple(sorted([(op, colour[u]) for op, u in ins[v]])), tuple(sorted([(op, colour[u]) for op, u in outs[v]])))
                   for v in range(nodes)]
            ranks = {s: i for i, s in enumerate(sorted(set(sig)))}
            new = {v: ranks[sig[v]] for v in range(nodes)}
            if len(ranks) == len(set(colour.values())):
                return new
            colour = new

    def code(colour: dict[int, int]) -> tuple:
        return tuple(sorted((colour[t], colour[f], op) for t, f, op in edges))

    start = refine({v: 0 if v == 0 else 2 if v == out else 1 for v in range(nodes)})
    if len(set(start.values())) == nodes:  # discrete already: the search's only leaf is `start`
        return start
    best: list = [None, None]  # code, labelling
    seen: dict[tuple, dict[int, int]] = {}  # leaf code -> its labelling
    automorphisms: list[dict[int, int]] = []

    def individualise(colour: dict[int, int], v: int) -> dict[int, int]:
        # v gets a colour of its own just below its cell's: doubled ranks leave room for it
        return {u: 2 * c + (0 if u == v else 1) if c == colour[v] else 2 * c + 1 for u, c in colour.items()}

    def search(colour: dict[int, int], fixed: tuple[int, ...]) -> None:
        cells: dict[int, list[int]] = {}
        for v, c in colour.items():
            cells.setdefault(c, []).append(v)
        target = next((sorted(cells[c]) for c in sorted(cells) if len(cells[c]) > 1), None)
        if target is None:
            leaf = code(colour)
            if leaf in seen:  # two labellings give one graph: an automorphism
                first = seen[leaf]
                inverse = {label: v for v, label in colour.items()}
                automorphisms.append({v: inverse[first[v]] for v in range(nodes)})
            else:
                seen[leaf] = dict(colour)
            if best[0] is None or leaf < best[0]:
                best[0], best[1] = leaf, dict(colour)
            return
        explored: list[int] = []
        for v in target:
            # skip v if an automorphism found so far that fixes the individualised nodes maps an
            # explored node to it: its subtree gives the same leaves
            stabiliser = [g for g in automorphisms if all(g[x] == x for x in fixed)]
            if explored and v in _orbit(explored, stabiliser):
                continue
            explored.append(v)
            search(refine(individualise(colour, v)), fixed + (v,))

    search(start, ())
    return best[1]


def _orbit(points: list[int], generators: list[dict[int, int]]) -> set[int]:
    orbit = set(points)
    frontier = list(points)
    while frontier:
        x = frontier.pop()
        for g in generators:
            y = g[x]
            if y not in orbit:
                orbit.add(y)
                frontier.append(y)
    return orbit


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
