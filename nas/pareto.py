"""Pareto ranking utilities: dominance, non-dominated sorting, crowding,
hypervolume and knee selection.

Convention: every function takes an objective matrix ``F`` of shape ``(n, m)``
in which *all* objectives are minimised.  Convert mixed-direction tables with
:func:`to_minimization` first (it negates the "max" columns).

Plain numpy on purpose: this module is imported by the search driver, the
report code and the tests, none of which should pay for torch or deap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "to_minimization",
    "dominates",
    "nondominated_sort",
    "pareto_mask",
    "update_front",
    "crowding_distance",
    "hypervolume",
    "normalize",
    "normalized_hypervolume",
    "knee_point",
]

# Upper bound on the (rows x n) boolean block built at once while computing the
# domination matrix; keeps the temporaries around 16 MB whatever n is.
_BLOCK_ELEMENTS = 1 << 24
# Largest n for which nondominated_sort keeps the n x n domination matrix (16 MB).
_MATRIX_ROWS = 4096


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _as_objectives(F: np.ndarray, name: str = "F") -> np.ndarray:
    arr = np.asarray(F, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, m) array, got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one objective column")
    if np.isnan(arr).any():
        # NaN compares False with everything, which would silently make such
        # rows non-dominated; better to fail loudly.
        raise ValueError(f"{name} contains NaN")
    return arr


def _as_violation(violation: np.ndarray | None, n: int) -> np.ndarray | None:
    if violation is None:
        return None
    v = np.asarray(violation, dtype=float)
    if v.shape != (n,):
        raise ValueError(f"violation must have shape ({n},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("violation must be finite")
    if (v < 0).any():
        raise ValueError("violation must be non-negative (0 means feasible)")
    return v


def _as_bounds(lower: np.ndarray, upper: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(lower, dtype=float).reshape(-1)
    hi = np.asarray(upper, dtype=float).reshape(-1)
    if lo.shape != (m,) or hi.shape != (m,):
        raise ValueError(f"lower/upper must have shape ({m},), got {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("lower/upper must be finite")
    if (hi < lo).any():
        raise ValueError("upper must be >= lower in every objective")
    return lo, hi


# ---------------------------------------------------------------------------
# directions and dominance
# ---------------------------------------------------------------------------


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Return ``values`` as a float array in which every column is minimised.

    ``directions`` holds one ``"min"`` or ``"max"`` (case-insensitive) per
    column; "max" columns are negated.  ``values`` is ``(n, m)`` (a single
    ``(m,)`` row is also accepted and returned with the same shape).
    """
    if isinstance(directions, str):
        # A bare string would be iterated character by character.
        raise ValueError("directions must be a sequence of 'min'/'max', not a single string")
    dirs = [str(d).strip().lower() for d in directions]
    for raw, d in zip(directions, dirs):
        if d not in ("min", "max"):
            raise ValueError(f"invalid direction {raw!r}: expected 'min' or 'max'")
    arr = np.array(values, dtype=float)  # copy: never mutate the caller's table
    if arr.ndim not in (1, 2):
        raise ValueError(f"values must be (n, m) or (m,), got shape {arr.shape}")
    m = arr.shape[-1]
    if m != len(dirs):
        raise ValueError(
            f"shape mismatch: values have {m} objective columns but {len(dirs)} directions were given"
        )
    sign = np.array([-1.0 if d == "max" else 1.0 for d in dirs])
    return arr * sign


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Pareto dominance for minimisation: ``a`` is no worse everywhere and
    strictly better somewhere.  A NaN anywhere in ``a`` or ``b`` makes it False.
    Plain Python on two vectors (the incremental front calls it per member,
    where numpy's per-call overhead would dominate); the block versions below
    do the same test for whole matrices."""
    if len(a) != len(b):
        raise ValueError(f"shape mismatch: {len(a)} vs {len(b)} objectives")
    better = False
    for x, y in zip(a, b):
        if not x <= y:  # also False for NaN
            return False
        if x < y:
            better = True
    return better


def _domination_matrix(F: np.ndarray, violation: np.ndarray | None) -> np.ndarray:
    """``D[i, j]`` is True when row i (constraint-)dominates row j."""
    n = F.shape[0]
    D = np.empty((n, n), dtype=bool)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    if violation is not None:
        feasible = violation == 0
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        dom = _dominance(F[start:stop], F)
        if violation is not None:
            # Deb (2000): feasible beats infeasible; among infeasible the
            # smaller total violation wins; among feasible use Pareto.
            fi = feasible[start:stop, None]
            fj = feasible[None, :]
            vi = violation[start:stop, None]
            vj = violation[None, :]
            dom = (fi & fj & dom) | (fi & ~fj) | (~fi & ~fj & (vi < vj))
        D[start:stop] = dom
    return D


# ---------------------------------------------------------------------------
# sorting
# ---------------------------------------------------------------------------


def nondominated_sort(F: np.ndarray, violation: np.ndarray | None = None) -> list[np.ndarray]:
    """Fast non-dominated sorting (Deb et al. 2002, NSGA-II).

    Returns a list of fronts, each an ascending ``int`` array of row indices;
    front 0 is non-dominated and every row is in exactly one front.  Identical
    rows never dominate each other, so duplicates share a front.

    With ``violation`` (shape ``(n,)``, non-negative, 0 = feasible) Deb's
    constraint-domination (Deb 2000; Deb et al. 2002, Sec. V) is used: a
    feasible row dominates every infeasible one, an infeasible row dominates
    another with a strictly larger violation, and feasible rows compare by
    ordinary Pareto dominance.

    Up to ``_MATRIX_ROWS`` rows the domination matrix is built vectorised and
    stored as an ``n x n`` boolean array (``n**2`` bytes, the fastest way for
    the populations of a search); beyond that the fronts are peeled one after
    the other with :func:`pareto_mask`, in memory ``O(n * m)``.
    """
    F = _as_objectives(F)
    n = F.shape[0]
    v = _as_violation(violation, n)
    if n == 0:
        return []
    if n > _MATRIX_ROWS:
        return _peel(F, v)
    D = _domination_matrix(F, v)
    # Number of rows dominating each row; peeling a front subtracts its rows'
    # contributions, which is the counting scheme of Deb et al. 2002 done in
    # bulk instead of per individual.
    count = D.sum(axis=0, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current)
        done[current] = True
        count -= D[current].sum(axis=0, dtype=np.int64)
        current = np.flatnonzero((count == 0) & ~done)
    # Dominance is a strict partial order (irreflexive, transitive, also with
    # the constraint rules), so peeling always empties the set.
    assert done.all()
    return fronts


def _peel(F: np.ndarray, v: np.ndarray | None) -> list[np.ndarray]:
    """Fronts by repeated :func:`pareto_mask`: the feasible rows' Pareto fronts,
    then one front per distinct violation, smallest first (Deb 2000)."""
    fronts: list[np.ndarray] = []
    rest = np.arange(F.shape[0]) if v is None else np.flatnonzero(v == 0)
    while rest.size:
        mask = _pareto_mask(F[rest])
        fronts.append(rest[mask])
        rest = rest[~mask]
    if v is not None:
        infeasible = np.flatnonzero(v > 0)
        for level in np.unique(v[infeasible]):
            fronts.append(infeasible[v[infeasible] == level])
    return fronts


def first_fronts(F: np.ndarray, through: int) -> list[np.ndarray]:
    """The fronts of :func:`nondominated_sort` (no constraints), best first, up to and including
    the first that takes their count past ``through``: what a cut of the best ``through`` rows
    looks at, without ranking the rest.  The rows are sorted once (lexicographically) and the
    fronts peeled in that order with the sweep of :func:`pareto_mask`, ``O(n log n)`` a front
    for two objectives, instead of the ``n x n`` domination matrix of every front."""
    F = _as_objectives(F)
    n, m = F.shape
    fronts: list[np.ndarray] = []
    if n == 0:
        return fronts
    order = np.lexsort(F.T[::-1])
    S, idx = F[order], order
    held = 0
    while idx.size and held <= through:
        if m == 1:
            keep = S[:, 0] == S[0, 0]
        else:
            keep = _sweep2(S) if m == 2 else _filter_sorted(S)
        fronts.append(np.sort(idx[keep]))
        held += fronts[-1].size
        S, idx = S[~keep], idx[~keep]
    return fronts


def pareto_mask(F: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the rows in the first front of :func:`nondominated_sort`
    (same constraint-domination rules when ``violation`` is given): the rows
    no other row dominates.  Identical rows never dominate each other, so
    duplicates of a non-dominated row are all in the mask.

    Sort-based, memory ``O(n * m)`` whatever ``n`` is (never an ``n x n``
    matrix): one objective is a minimum; two are the sweep of Kung, Luccio and
    Preparata (1975, "On finding the maxima of a set of vectors") after a
    lexicographic sort, ``O(n log n)``; three and more are the sorted
    incremental filter (the same paper's simple algorithm): after a
    lexicographic sort no row can be dominated by a later one, so each row is
    tested only against the non-dominated rows before it, in blocks of rows
    at a time.  That is ``O(n * front size * m)`` time: fast for the small
    fronts of real searches (100,000 random points in 3-D take well under a
    second), quadratic only when nearly every point is on the front.

    With ``violation`` (Deb 2000): if any row is feasible the mask is the
    Pareto front of the feasible rows; otherwise it is the rows of least
    violation.
    """
    F = _as_objectives(F)
    n = F.shape[0]
    v = _as_violation(violation, n)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if v is not None:
        feasible = v == 0
        if not feasible.any():
            return v == v.min()
        idx = np.flatnonzero(feasible)
        mask[idx] = _pareto_mask(F[idx])
        return mask
    return _pareto_mask(F)


def _pareto_mask(F: np.ndarray) -> np.ndarray:
    n, m = F.shape
    if m == 1:
        return F[:, 0] == F[:, 0].min()
    # Lexicographic order (first column most significant): a row that dominates
    # another is lexicographically smaller, so it comes first.
    order = np.lexsort(F.T[::-1])
    S = F[order]
    keep = _sweep2(S) if m == 2 else _filter_sorted(S)
    mask = np.zeros(n, dtype=bool)
    mask[order[keep]] = True
    return mask


def _sweep2(S: np.ndarray) -> np.ndarray:
    # Rows sorted by (f1, f2).  A row (x, y) is non-dominated iff y is the
    # smallest f2 among rows with f1 == x (equal rows tie, and tie is fine) and
    # y is strictly smaller than every f2 among rows with f1 < x.
    x, y = S[:, 0], S[:, 1]
    n = S.shape[0]
    starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, n)))
    group_min = y[starts]  # sorted by f2 within a group: its first row has the minimum
    before = np.concatenate(([np.inf], np.minimum.accumulate(group_min)[:-1]))
    return (y == group_min[group]) & (y < before[group])


def _filter_sorted(S: np.ndarray) -> np.ndarray:
    n, m = S.shape
    keep = np.zeros(n, dtype=bool)
    front = np.empty((0, m))
    block = 256
    for start in range(0, n, block):
        B = S[start:start + block]
        alive = ~_dominated_by(front, B)
        if alive.any():
            C = B[alive]
            # Within the block (sorted): drop rows dominated by another survivor.
            alive_idx = np.flatnonzero(alive)
            inner = _dominated_by(C, C)
            alive[alive_idx[inner]] = False
            front = np.concatenate((front, B[alive]))
        keep[start:start + B.shape[0]] = alive
    return keep


def _dominated_by(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """For each row of ``Q``: is it dominated by some row of ``P``?  Works in
    chunks of ``P`` so the temporaries stay under ``_BLOCK_ELEMENTS``."""
    out = np.zeros(Q.shape[0], dtype=bool)
    if P.shape[0] == 0 or Q.shape[0] == 0:
        return out
    rows = max(1, _BLOCK_ELEMENTS // max(Q.shape[0], 1))
    for start in range(0, P.shape[0], rows):
        out |= _dominance(P[start:start + rows], Q).any(axis=0)
    return out


def _dominance(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``D[i, j]``: row i of ``A`` Pareto-dominates row j of ``B`` (minimisation).
    Accumulated per objective instead of one (rows, n, m) broadcast, so peak
    memory does not scale with m."""
    le = np.ones((A.shape[0], B.shape[0]), dtype=bool)
    lt = np.zeros_like(le)
    for k in range(A.shape[1]):
        a = A[:, k, None]
        b = B[None, :, k]
        le &= a <= b
        lt |= a < b
    return le & lt


def update_front(P: np.ndarray, p: np.ndarray) -> tuple[bool, np.ndarray]:
    """One step of an incremental front, vectorised for large fronts: whether
    row ``p`` enters the front ``P`` (no row of ``P`` dominates it; an equal
    row does not) and the mask of the rows of ``P`` that stay (those ``p`` does
    not dominate).  The same rule as :func:`dominates` applied row by row, and
    as :func:`pareto_mask`: adding rows one at a time gives its front."""
    p = np.asarray(p, dtype=float).reshape(1, -1)
    P = np.asarray(P, dtype=float).reshape(-1, p.shape[1])
    if np.isnan(p).any():
        raise ValueError("p contains NaN")
    if _dominated_by(P, p)[0]:
        return False, np.ones(P.shape[0], dtype=bool)
    return True, ~_dominated_by(p, P)


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (Deb et al. 2002).

    For every objective the rows are sorted (stable sort, so ties keep row
    order); the first and last get ``inf`` and interior rows add
    ``(next - prev) / (max - min)``.  An objective whose range in the front is
    zero contributes nothing (not even boundary ``inf``), since its "extremes"
    would be an arbitrary pick among equal values.  Fronts of one or two rows
    are all boundary and get ``inf``.
    """
    F = _as_objectives(F)
    n, m = F.shape
    dist = np.zeros(n, dtype=float)
    if n <= 2:
        dist[:] = np.inf
        return dist
    for k in range(m):
        col = F[:, k]
        order = np.argsort(col, kind="stable")
        sorted_col = col[order]
        span = sorted_col[-1] - sorted_col[0]
        if not np.isfinite(span) or span <= 0:
            continue
        dist[order[0]] = np.inf
        dist[order[-1]] = np.inf
        dist[order[1:-1]] += (sorted_col[2:] - sorted_col[:-2]) / span
    return dist


# ---------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------


def _hv2d(P: np.ndarray, ref: np.ndarray) -> float:
    # Sort by f1 (ties by f2) and sweep: each point that improves the best f2
    # seen so far adds the strip between its f2 and that previous best.
    order = np.lexsort((P[:, 1], P[:, 0]))
    x = P[order, 0]
    y = P[order, 1]
    best = np.minimum.accumulate(y)
    prev = np.concatenate(([ref[1]], best[:-1]))
    gain = np.clip(prev - y, 0.0, None)
    return float(np.sum((ref[0] - x) * gain))


def _hv3d(P: np.ndarray, ref: np.ndarray) -> float:
    # Dimension sweep over f3: between consecutive f3 values the dominated
    # cross-section is the 2-D hypervolume of the (f1, f2) front of the points
    # seen so far.  The front is kept as arrays sorted by f1 ascending (hence
    # f2 strictly descending), updated by one insertion per point.
    order = np.argsort(P[:, 2], kind="stable")
    P = P[order]
    xs = np.empty(0)
    ys = np.empty(0)
    area = 0.0
    volume = 0.0
    k = P.shape[0]
    for i in range(k):
        x, y, z = P[i]
        j = int(np.searchsorted(xs, x, side="right"))  # xs[:j] <= x
        if not (j > 0 and ys[j - 1] <= y):  # skip if weakly dominated in 2-D
            start = j - 1 if (j > 0 and xs[j - 1] == x) else j
            # ys is descending, so the points p dominates form a run from start.
            end = start + int(np.searchsorted(-ys[start:], -y, side="right"))
            xs = np.concatenate((xs[:start], [x], xs[end:]))
            ys = np.concatenate((ys[:start], [y], ys[end:]))
            widths = np.diff(np.append(xs, ref[0]))
            area = float(np.sum(widths * (ref[1] - ys)))
        z_next = P[i + 1, 2] if i + 1 < k else ref[2]
        volume += area * (z_next - z)
    return float(volume)


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of the region dominated by the rows of ``F``
    (minimisation) and bounded above by the reference point ``ref``.

    Rows that are not strictly better than ``ref`` in every objective add
    nothing.  Algorithms: m=1 is ``ref - min``; m=2 is the sort-and-sweep over
    the first objective; m=3 is the dimension-sweep of Fonseca, Paquete and
    Lopez-Ibanez (2006, "An improved dimension-sweep algorithm for the
    hypervolume indicator") sweeping the third objective, but with the 2-D
    front stored in sorted arrays rather than a balanced tree, so it is
    O(n^2) instead of O(n log n) -- fine for a few thousand points.  More than
    three objectives raise ``ValueError``.
    """
    F = _as_objectives(F)
    m = F.shape[1]
    r = np.asarray(ref, dtype=float).reshape(-1)
    if r.shape != (m,):
        raise ValueError(f"ref must have shape ({m},), got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("ref must be finite")
    if m > 3:
        raise ValueError(
            f"hypervolume is only supported exactly for 1-3 objectives, got {m}"
        )
    P = F[np.all(F < r, axis=1)]
    if P.shape[0] == 0:
        return 0.0
    if np.isinf(P).any():
        # A point at -inf in some objective dominates an unbounded region.
        return float("inf")
    if m == 1:
        return float(r[0] - P[:, 0].min())
    if m == 2:
        return _hv2d(P, r)
    return _hv3d(P, r)


def normalize(F: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Map column k affinely so that ``lower[k] -> 0`` and ``upper[k] -> 1``.

    Values outside the bounds land outside [0, 1] (no clipping: clipping would
    make points beyond the nadir look as good as the nadir).  Columns with
    ``upper == lower`` map to 0.
    """
    F = _as_objectives(F)
    lo, hi = _as_bounds(lower, upper, F.shape[1])
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = (F - lo) / safe
    out[:, span <= 0] = 0.0
    return out


def normalized_hypervolume(
    F: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    ref_offset: float = 0.1,
) -> float:
    """Hypervolume after :func:`normalize` with the given bounds.

    Each objective is mapped by ``(f - lower) / (upper - lower)`` (typically
    ``lower`` = ideal and ``upper`` = nadir point of a reference table, all
    objectives already minimised) and the reference point is
    ``1 + ref_offset`` in every objective.  The result is therefore comparable
    across runs that use the same bounds, and lies in
    ``[0, (1 + ref_offset) ** m]`` for points inside the bounds.
    """
    if not np.isfinite(ref_offset) or ref_offset < 0:
        raise ValueError(f"ref_offset must be finite and >= 0, got {ref_offset}")
    N = normalize(F, lower, upper)
    ref = np.full(N.shape[1], 1.0 + float(ref_offset))
    return hypervolume(N, ref)


# ---------------------------------------------------------------------------
# knee
# ---------------------------------------------------------------------------


def knee_point(F: np.ndarray) -> int:
    """Index (into ``F``) of the knee of the non-dominated rows of ``F``.

    The first front is normalised to [0, 1] per objective and the knee is the
    point farthest from the hyperplane through the extreme points (for two
    objectives, the line through the two extremes), counting only distance on
    the ideal-point side -- the normal-boundary-intersection notion of Das
    (1999) used for knees by Branke et al. (2004).  Falls back to the point
    closest (Euclidean, normalised) to the ideal point when the front has
    fewer than three distinct points, the hyperplane is degenerate, or no
    point bulges towards the ideal (e.g. a concave front).  With one
    objective this is the argmin.  Ties go to the lowest index.
    """
    F = _as_objectives(F)
    n, m = F.shape
    if n == 0:
        raise ValueError("knee_point needs at least one row")
    if m == 1:
        return int(np.argmin(F[:, 0]))
    idx = np.flatnonzero(pareto_mask(F))
    P = F[idx]
    if np.isinf(P).any():
        raise ValueError("knee_point needs finite objective values on the front")
    lo = P.min(axis=0)
    span = P.max(axis=0) - lo
    N = np.where(span > 0, (P - lo) / np.where(span > 0, span, 1.0), 0.0)

    def closest_to_ideal() -> int:
        return int(idx[np.argmin(np.linalg.norm(N, axis=1))])

    if np.unique(N, axis=0).shape[0] < 3:
        return closest_to_ideal()
    # Extreme (anchor) point of objective k: the minimiser of f_k, ties broken
    # by the smallest sum of the other objectives so it is a true corner.
    anchors = np.empty((m, m))
    for k in range(m):
        anchors[k] = N[np.lexsort((N.sum(axis=1), N[:, k]))[0]]
    # Hyperplane w . x = 1 through the anchors; singular means the anchors do
    # not span a hyperplane (e.g. one point is extreme in two objectives).
    try:
        if np.linalg.cond(anchors) > 1e12:
            raise np.linalg.LinAlgError
        w = np.linalg.solve(anchors, np.ones(m))
    except np.linalg.LinAlgError:
        return closest_to_ideal()
    norm_w = float(np.linalg.norm(w))
    if not np.isfinite(norm_w) or norm_w == 0:
        return closest_to_ideal()
    # Signed distance, positive on the origin (ideal) side since w . 0 = 0 < 1.
    d = (1.0 - N @ w) / norm_w
    best = int(np.argmax(d))
    if d[best] <= 1e-12:
        return closest_to_ideal()
    return int(idx[best])
