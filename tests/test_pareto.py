from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas.pareto import (
    crowding_distance,
    dominates,
    first_fronts,
    hypervolume,
    knee_point,
    nondominated_sort,
    normalize,
    normalized_hypervolume,
    pareto_mask,
    to_minimization,
)


# ---------------------------------------------------------------------------
# naive references
# ---------------------------------------------------------------------------


def _naive_constrained_dominates(a, b, va, vb) -> bool:
    if va == 0 and vb == 0:
        return bool(np.all(a <= b) and np.any(a < b))
    if va == 0:
        return True
    if vb == 0:
        return False
    return va < vb


def _naive_sort(F, violation=None):
    n = F.shape[0]
    v = np.zeros(n) if violation is None else violation
    remaining = set(range(n))
    fronts = []
    while remaining:
        front = sorted(
            i
            for i in remaining
            if not any(_naive_constrained_dominates(F[j], F[i], v[j], v[i]) for j in remaining)
        )
        fronts.append(front)
        remaining -= set(front)
    return fronts


def _hv_inclusion_exclusion(F, ref):
    P = [p for p in F if np.all(p < ref)]
    total = 0.0
    for r in range(1, len(P) + 1):
        for S in itertools.combinations(P, r):
            corner = np.max(np.array(S), axis=0)
            total += (-1) ** (r + 1) * np.prod(ref - corner)
    return total


def _hv_grid(F, ref):
    # Exact box union on the grid induced by all coordinates.
    m = F.shape[1]
    axes = [np.unique(np.concatenate((F[:, k][F[:, k] < ref[k]], [ref[k]]))) for k in range(m)]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = np.array([axes[k][c] for k, c in enumerate(cell)])
        hi = np.array([axes[k][c + 1] for k, c in enumerate(cell)])
        if np.any(np.all(F <= lo, axis=1)):
            total += np.prod(hi - lo)
    return total


# ---------------------------------------------------------------------------
# to_minimization / dominates
# ---------------------------------------------------------------------------


def test_to_minimization_negates_max_columns():
    vals = np.array([[1, 2, 3], [4, 5, 6]])
    out = to_minimization(vals, ["min", "max", "MAX"])
    np.testing.assert_array_equal(out, [[1, -2, -3], [4, -5, -6]])
    assert out.dtype == float
    assert vals[0, 1] == 2  # input untouched


def test_to_minimization_validation():
    with pytest.raises(ValueError, match="'maximize'"):
        to_minimization(np.zeros((2, 2)), ["min", "maximize"])
    with pytest.raises(ValueError, match="shape mismatch"):
        to_minimization(np.zeros((2, 3)), ["min", "max"])
    with pytest.raises(ValueError, match="single string"):
        to_minimization(np.zeros((2, 3)), "min")


def test_dominates():
    assert dominates([1, 2], [1, 3])
    assert not dominates([1, 3], [1, 2])
    assert not dominates([1, 2], [1, 2])
    assert not dominates([0, 3], [1, 2])
    with pytest.raises(ValueError):
        dominates([1, 2], [1, 2, 3])


# ---------------------------------------------------------------------------
# nondominated sort
# ---------------------------------------------------------------------------


def test_sort_hand_example():
    F = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [2, 2], [6, 6]])
    fronts = [f.tolist() for f in nondominated_sort(F)]
    assert fronts == [[0, 1, 2, 5], [3], [4], [6]]
    np.testing.assert_array_equal(pareto_mask(F), [1, 1, 1, 0, 0, 1, 0])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sort_matches_naive(seed, m):
    rng = np.random.default_rng(seed)
    # Few distinct levels -> many ties and exact duplicates.
    F = rng.integers(0, 4, size=(40, m)).astype(float)
    F = np.vstack([F, F[:5]])
    fronts = nondominated_sort(F)
    assert [f.tolist() for f in fronts] == _naive_sort(F)
    allrows = np.sort(np.concatenate(fronts))
    np.testing.assert_array_equal(allrows, np.arange(F.shape[0]))


@pytest.mark.parametrize("seed", range(6))
def test_constrained_sort_matches_naive(seed):
    rng = np.random.default_rng(100 + seed)
    F = rng.integers(0, 5, size=(35, 2)).astype(float)
    v = rng.choice([0.0, 0.0, 0.5, 1.0, 2.0], size=35)
    fronts = nondominated_sort(F, violation=v)
    assert [f.tolist() for f in fronts] == _naive_sort(F, v)


def test_constraint_domination_ordering():
    F = np.array(
        [
            [0.0, 0.0],  # infeasible, best objectives
            [5.0, 5.0],  # feasible, worst objectives
            [1.0, 1.0],  # infeasible, small violation
            [4.0, 6.0],  # feasible, non-dominated with row 1
            [0.5, 0.5],  # infeasible, same violation as row 2
        ]
    )
    v = np.array([3.0, 0.0, 1.0, 0.0, 1.0])
    fronts = [f.tolist() for f in nondominated_sort(F, violation=v)]
    assert fronts == [[1, 3], [2, 4], [0]]
    np.testing.assert_array_equal(pareto_mask(F, v), [0, 1, 0, 1, 0])
    # Without constraints row 0 dominates everything.
    assert nondominated_sort(F)[0].tolist() == [0]


def test_violation_validation():
    F = np.zeros((3, 2))
    with pytest.raises(ValueError, match="non-negative"):
        nondominated_sort(F, violation=[0, -1, 0])
    with pytest.raises(ValueError, match="shape"):
        nondominated_sort(F, violation=[0, 0])


def test_sort_empty_and_single():
    assert nondominated_sort(np.zeros((0, 2))) == []
    assert [f.tolist() for f in nondominated_sort(np.ones((1, 3)))] == [[0]]
    # All duplicates: one front.
    assert [f.tolist() for f in nondominated_sort(np.ones((4, 2)))] == [[0, 1, 2, 3]]


def test_sort_large_runs():
    rng = np.random.default_rng(0)
    F = rng.random((2000, 3))
    fronts = nondominated_sort(F)
    assert sum(len(f) for f in fronts) == 2000
    # Spot-check the first front against a direct test.
    f0 = fronts[0]
    for i in f0[:20]:
        assert not np.any(np.all(F <= F[i], axis=1) & np.any(F < F[i], axis=1))


@pytest.mark.parametrize("m", [1, 2, 3])
def test_first_fronts_are_the_sorts_first_fronts(m):
    """first_fronts(F, k) is nondominated_sort(F) cut after the first front that takes the count
    past k: the same fronts, rows ascending, on ties (few distinct values) and on continuous values."""
    rng = np.random.default_rng(m)
    for trial in range(600):
        n = int(rng.integers(0, 40))
        F = rng.integers(0, int(rng.integers(1, 6)), size=(n, m)).astype(float) if trial % 2 else rng.random((n, m))
        full = nondominated_sort(F)
        through = int(rng.integers(0, n + 2))
        want, held = [], 0
        for front in full:
            if held > through:
                break
            want.append(front.tolist())
            held += len(front)
        assert [f.tolist() for f in first_fronts(F, through)] == want
    assert first_fronts(np.zeros((0, 2)), 3) == []
    F = rng.random((50, 2))
    assert [f.tolist() for f in first_fronts(F, 50)] == [f.tolist() for f in nondominated_sort(F)]  # past every row: all fronts


def test_sort_chunked_path(monkeypatch):
    import nas.pareto as pareto

    rng = np.random.default_rng(5)
    F = rng.integers(0, 6, size=(60, 3)).astype(float)
    expected = [f.tolist() for f in nondominated_sort(F)]
    monkeypatch.setattr(pareto, "_BLOCK_ELEMENTS", 7 * 60)  # 7-row blocks
    assert [f.tolist() for f in pareto.nondominated_sort(F)] == expected


# ---------------------------------------------------------------------------
# crowding distance
# ---------------------------------------------------------------------------


def test_crowding_known_example():
    F = np.array([[1.0, 3.0], [0.0, 5.0], [6.0, 0.0], [3.0, 1.0]])
    d = crowding_distance(F)
    assert np.isinf(d[1]) and np.isinf(d[2])
    # row 0: f1 (3-0)/6 + f2 (5-1)/5 ; row 3: f1 (6-1)/6 + f2 (3-0)/5
    assert d[0] == pytest.approx(0.5 + 0.8)
    assert d[3] == pytest.approx(5 / 6 + 0.6)


def test_crowding_small_and_constant():
    assert np.all(np.isinf(crowding_distance(np.array([[1.0, 2.0]]))))
    assert np.all(np.isinf(crowding_distance(np.array([[1.0, 2.0], [2.0, 1.0]]))))
    # Second objective constant: contributes nothing, first behaves normally.
    F = np.array([[0.0, 1.0], [1.0, 1.0], [4.0, 1.0]])
    d = crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[2])
    assert d[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(crowding_distance(np.ones((4, 2))), 0.0)


# ---------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------


def test_hv_1d():
    assert hypervolume(np.array([[3.0], [1.0], [5.0]]), [4.0]) == pytest.approx(3.0)
    assert hypervolume(np.array([[5.0]]), [4.0]) == 0.0


def test_hv_2d_staircase_by_hand():
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [2.5, 2.5], [5.0, 0.5]])
    # ref (4,4): boxes 3x1 + 2x1 + 1x1 stacked -> 3 + 2 + 1 = 6 ; (2.5,2.5)
    # is dominated, (5, 0.5) is outside the reference box.
    assert hypervolume(F, [4.0, 4.0]) == pytest.approx(6.0)
    # Point on the reference boundary contributes nothing.
    assert hypervolume(np.array([[4.0, 0.0]]), [4.0, 4.0]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0


def test_hv_3d_hand():
    # Unit cube corner point and ref 2: volume 1; two points overlapping.
    assert hypervolume(np.array([[1.0, 1.0, 1.0]]), [2, 2, 2]) == pytest.approx(1.0)
    F = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    # 2*2*1 + 1*1*2 - 1*1*1
    assert hypervolume(F, [2, 2, 2]) == pytest.approx(5.0)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("m", [2, 3])
def test_hv_exact_vs_inclusion_exclusion(seed, m):
    rng = np.random.default_rng(seed)
    # Mix continuous and tied coordinates; some points fall outside ref.
    F = rng.random((8, m))
    F[:3] = np.round(F[:3] * 4) / 4
    F = np.vstack([F, F[:1]])  # duplicate
    ref = np.full(m, 0.9)
    hv = hypervolume(F, ref)
    assert hv == pytest.approx(_hv_inclusion_exclusion(F, ref), abs=1e-12)
    assert hv == pytest.approx(_hv_grid(F, ref), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_hv_3d_grid_medium(seed):
    rng = np.random.default_rng(50 + seed)
    F = rng.integers(0, 10, size=(25, 3)).astype(float)
    ref = np.array([10.0, 10.0, 10.0])
    assert hypervolume(F, ref) == pytest.approx(_hv_grid(F, ref), abs=1e-9)


def test_hv_3d_monte_carlo():
    rng = np.random.default_rng(7)
    # Points near the simplex so the front is non-trivial.
    F = rng.random((40, 3))
    F = F / F.sum(axis=1, keepdims=True)
    ref = np.ones(3)
    hv = hypervolume(F, ref)
    S = rng.random((200_000, 3))
    dominated = np.zeros(len(S), dtype=bool)
    for p in F:
        dominated |= np.all(S >= p, axis=1)
    p_hat = dominated.mean()
    sigma = np.sqrt(p_hat * (1 - p_hat) / len(S))
    assert abs(hv - p_hat) < 5 * sigma + 1e-9


def test_hv_order_invariant_and_dominated_rows_ignored():
    rng = np.random.default_rng(3)
    F = rng.random((30, 3))
    ref = np.full(3, 1.1)
    hv = hypervolume(F, ref)
    assert hypervolume(F[rng.permutation(30)], ref) == pytest.approx(hv)
    assert hypervolume(F[pareto_mask(F)], ref) == pytest.approx(hv)


def test_hv_validation():
    with pytest.raises(ValueError, match="1-3 objectives"):
        hypervolume(np.zeros((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match="ref"):
        hypervolume(np.zeros((2, 2)), np.ones(3))


def test_normalize_and_normalized_hv():
    F = np.array([[10.0, 0.0, 5.0], [20.0, 2.0, 5.0]])
    N = normalize(F, [10.0, 0.0, 5.0], [20.0, 4.0, 5.0])
    np.testing.assert_allclose(N, [[0, 0, 0], [1, 0.5, 0]])
    lower, upper = np.array([0.0, 0.0]), np.array([10.0, 100.0])
    assert normalized_hypervolume(np.array([[0.0, 0.0]]), lower, upper) == pytest.approx(1.1**2)
    assert normalized_hypervolume(np.array([[10.0, 100.0]]), lower, upper) == pytest.approx(0.01)
    assert normalized_hypervolume(
        np.array([[5.0, 50.0]]), lower, upper, ref_offset=0.0
    ) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        normalized_hypervolume(np.array([[5.0, 50.0]]), lower, upper, ref_offset=-1)


# ---------------------------------------------------------------------------
# knee
# ---------------------------------------------------------------------------


def test_knee_convex_2d_obvious():
    # Two nearly straight arms meeting at (0.1, 0.1) -> that corner is the knee.
    t = np.linspace(0, 1, 11)
    arm1 = np.column_stack([0.1 * t, 1 - 0.9 * t])
    arm2 = np.column_stack([0.1 + 0.9 * t, 0.1 - 0.1 * t])
    front = np.unique(np.vstack([arm1, arm2]), axis=0)
    dominated = front[:5] + 0.05
    F = np.vstack([dominated, front])
    F[:, 1] *= 1000.0  # scaling must not matter (normalisation)
    perm = np.random.default_rng(0).permutation(len(F))
    F = F[perm]
    k = knee_point(F)
    np.testing.assert_allclose(F[k], [0.1, 100.0])
    assert pareto_mask(F)[k]


def test_knee_3d_bulge():
    F = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.5, 0.5, 0.0],
            [0.2, 0.2, 0.2],
            [0.3, 0.3, 0.3],  # dominated
            [0.0, 0.5, 0.5],
        ]
    )
    assert knee_point(F) == 4


def test_knee_fallbacks():
    # Single objective: argmin.
    assert knee_point(np.array([[3.0], [1.0], [2.0]])) == 1
    # Two-point front: closest to ideal after normalisation (ties -> first).
    F = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    assert knee_point(F) == 0
    # Concave front: nothing bulges towards the ideal (the middle point lies
    # just beyond the line through the extremes), so the fallback picks the
    # point closest to the ideal -- the middle one, not an extreme.
    concave = np.array([[0.0, 1.0], [0.5, 0.55], [1.0, 0.0]])
    assert knee_point(concave) == 1
    # Only dominated-by-one setup: the non-dominated row wins.
    assert knee_point(np.array([[2.0, 2.0], [1.0, 1.0]])) == 1
    with pytest.raises(ValueError):
        knee_point(np.zeros((0, 2)))


# ---------------------------------------------------------------------------
# sort-based pareto_mask and the peeling sort (no n x n matrix)
# ---------------------------------------------------------------------------


def _brute_mask(F, violation=None):
    n = F.shape[0]
    v = np.zeros(n) if violation is None else np.asarray(violation, dtype=float)
    return np.array([not any(_naive_constrained_dominates(F[j], F[i], v[j], v[i]) for j in range(n)) for i in range(n)], dtype=bool)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force_with_ties(m):
    rng = np.random.default_rng(m)
    for _ in range(150):
        n = int(rng.integers(1, 40))
        F = rng.integers(0, 5, size=(n, m)).astype(float)  # many ties and duplicates
        assert np.array_equal(pareto_mask(F), _brute_mask(F)), F
        v = np.where(rng.random(n) < 0.4, rng.integers(1, 4, size=n), 0).astype(float)
        assert np.array_equal(pareto_mask(F, v), _brute_mask(F, v)), (F, v)


@pytest.mark.parametrize("m", [2, 3])
def test_pareto_mask_100k_points_small_memory(m):
    import time
    import tracemalloc

    rng = np.random.default_rng(7)
    F = np.round(rng.random((100_000, m)), 3)  # rounding makes ties
    tracemalloc.start()
    t0 = time.perf_counter()
    mask = pareto_mask(F)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # an n x n matrix would be 10 GB; O(n*m) is a few MB
    assert peak < 64e6, f"peak {peak / 1e6:.0f} MB"
    assert seconds < 10, f"{seconds:.1f} s"
    # brute force on a sample: front members and non-members, each against all 100,000 rows
    sample = np.concatenate((np.flatnonzero(mask)[:100], rng.choice(F.shape[0], 200, replace=False)))
    for i in sample:
        dominated = bool(np.any(np.all(F <= F[i], axis=1) & np.any(F < F[i], axis=1)))
        assert mask[i] == (not dominated)


def test_nondominated_sort_large_n_peels_like_the_matrix(monkeypatch):
    import nas.pareto as pareto

    rng = np.random.default_rng(11)
    F = rng.integers(0, 8, size=(300, 3)).astype(float)
    v = np.where(rng.random(300) < 0.3, rng.integers(1, 5, size=300), 0).astype(float)
    expected = [[f.tolist() for f in nondominated_sort(F)], [f.tolist() for f in nondominated_sort(F, v)]]
    monkeypatch.setattr(pareto, "_MATRIX_ROWS", 10)
    assert [[f.tolist() for f in pareto.nondominated_sort(F)], [f.tolist() for f in pareto.nondominated_sort(F, v)]] == expected


def test_update_front_one_row_at_a_time_is_pareto_mask():
    from nas.pareto import update_front

    rng = np.random.default_rng(4)
    for m in (2, 3):
        for _ in range(50):
            F = rng.integers(0, 5, size=(int(rng.integers(1, 40)), m)).astype(float)
            front = np.empty((0, m))
            rows: list[int] = []
            for i, p in enumerate(F):
                enters, keep = update_front(front, p)
                if enters:
                    front = np.vstack([front[keep], p])
                    rows = [r for r, k in zip(rows, keep) if k] + [i]
                # the scalar test agrees with the vectorised one
                assert enters == (not any(dominates(q, p) for q in F[rows[:-1] if enters else rows]))
            assert sorted(rows) == np.flatnonzero(pareto_mask(F)).tolist()


def test_dominates_nan_is_false():
    assert not dominates([np.nan, 0.0], [1.0, 1.0])
    assert not dominates([0.0, 0.0], [np.nan, 1.0])
