"""The scheduler's pure parts: the ladder, Hyperband's brackets and the promotion rule, the
rule checked against a brute-force reference written from its definition."""

from __future__ import annotations

import math
import random

import pytest

from nas.errors import UsageError
from nas.schedulers import (
    RungResult,
    RungRow,
    RungView,
    beats,
    bracket_of,
    bracket_sizes,
    brackets,
    ladder,
    most_at_rungs,
    never_promotable,
    next_promotion,
    promotable,
    rank_rung,
    standing,
)


# -- a reference written from the definition, loops only -----------------------------------------
def _vec(r: RungResult) -> list[float]:
    return [-r.accuracy, *r.cheap]


def _dominates(a: list[float], b: list[float]) -> bool:
    no_worse = all(x <= y for x, y in zip(a, b))
    better = any(x < y for x, y in zip(a, b))
    return no_worse and better


def _crowding(front: list[RungResult]) -> dict[int, float]:
    dist = {r.cid: 0.0 for r in front}
    if len(front) <= 2:
        return {r.cid: math.inf for r in front}
    m = len(_vec(front[0]))
    for k in range(m):
        order = sorted(front, key=lambda r: (_vec(r)[k], r.cid))
        lo, hi = _vec(order[0])[k], _vec(order[-1])[k]
        if hi - lo <= 0:
            continue
        dist[order[0].cid] = math.inf
        dist[order[-1].cid] = math.inf
        for i in range(1, len(order) - 1):
            dist[order[i].cid] += (_vec(order[i + 1])[k] - _vec(order[i - 1])[k]) / (hi - lo)
    return dist


def _reference_rank(results: list[RungResult]) -> list[int]:
    good = [r for r in results if r.accuracy is not None and r.violation == 0]
    violators = [r for r in results if r.accuracy is not None and r.violation > 0]
    failed = [r for r in results if r.accuracy is None]
    out: list[int] = []
    if good and not good[0].cheap:
        # bubble sort by (accuracy desc, id asc)
        items = list(good)
        for i in range(len(items)):
            for j in range(len(items) - 1 - i):
                a, b = items[j], items[j + 1]
                if (b.accuracy > a.accuracy) or (b.accuracy == a.accuracy and b.cid < a.cid):
                    items[j], items[j + 1] = b, a
        out += [r.cid for r in items]
    else:
        remaining = list(good)
        while remaining:
            front = [r for r in remaining if not any(_dominates(_vec(o), _vec(r)) for o in remaining)]
            crowd = _crowding(front)
            front.sort(key=lambda r: (-crowd[r.cid], -r.accuracy, r.cid))
            out += [r.cid for r in front]
            remaining = [r for r in remaining if r not in front]
    out += [r.cid for r in sorted(violators, key=lambda r: (r.violation, r.cid))]
    out += [r.cid for r in sorted(failed, key=lambda r: r.cid)]
    return out


def _reference_fronts(good: list[RungResult]) -> list[list[RungResult]]:
    remaining, fronts = list(good), []
    while remaining:
        front = [r for r in remaining if not any(_dominates(_vec(o), _vec(r)) for o in remaining)]
        fronts.append(front)
        remaining = [r for r in remaining if r not in front]
    return fronts


def _reference_cut(results: list[RungResult], eta: int) -> list[int]:
    """What may be promoted, from the definition: one objective, the feasible ones among the top
    floor(n / eta) of the ranking; several, whole fronts while they fit in floor(n / eta), and a
    first front wider than that split by the ranking."""
    k = len(results) // eta
    good = [r for r in results if r.accuracy is not None and r.violation == 0]
    order = _reference_rank(results)
    if not good or not good[0].cheap:
        return [c for c in order[:k] if c in {r.cid for r in good}]
    out: list[int] = []
    for i, front in enumerate(_reference_fronts(good)):
        ids = {r.cid for r in front}
        if len(out) + len(front) > k:
            return [c for c in order if c in ids][:k] if i == 0 else out
        out += [c for c in order if c in ids]
    return out


def _random_rung(rng: random.Random, n_cheap: int, with_bad: bool) -> list[RungResult]:
    n = rng.randint(1, 14)
    ids = rng.sample(range(1000), n)
    acc_levels = [rng.choice([0.1, 0.5, 0.5, 0.7, 0.9, 0.91]) for _ in range(n)]  # ties on purpose
    out = []
    for cid, acc in zip(ids, acc_levels):
        cheap = tuple(float(rng.choice([1, 2, 2, 3, 5, 8])) for _ in range(n_cheap))
        violation, accuracy = 0.0, acc
        if with_bad:
            roll = rng.random()
            if roll < 0.15:
                violation = rng.choice([0.1, 0.5, 0.5, 2.0])
            elif roll < 0.25:
                accuracy = None
        out.append(RungResult(cid, accuracy, cheap, violation))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("n_cheap", [0, 1, 2])
def test_rank_matches_the_reference_on_thousands_of_random_rungs(n_cheap):
    rng = random.Random(n_cheap)
    for trial in range(1500):
        results = _random_rung(rng, n_cheap, with_bad=trial % 2 == 1)
        eta = rng.choice([2, 3, 4])
        want = _reference_rank(results)
        assert rank_rung(results) == want, results
        promoted = {r.cid for r in results if rng.random() < 0.2}
        assert promotable(results, eta, promoted) == [c for c in _reference_cut(results, eta) if c not in promoted]


def test_with_several_objectives_the_cut_takes_whole_fronts():
    # front 1: 1 (best accuracy) and 2 (smallest); front 2: 3 and 4; front 3: 5
    results = [RungResult(1, 0.9, (50.0,)), RungResult(2, 0.6, (10.0,)), RungResult(3, 0.8, (60.0,)), RungResult(4, 0.5, (20.0,)),
               RungResult(5, 0.4, (70.0,))]
    assert rank_rung(results)[:2] == [1, 2]
    assert promotable(results, 2) == [1, 2]  # floor(5 / 2) = 2: the first front, exactly
    grown = results + [RungResult(6, 0.3, (80.0,))]  # 6 results, a cut of 3: front 2 would be split, so it waits
    assert rank_rung(grown)[:3] == [1, 2, 3] and promotable(grown, 2) == [1, 2]
    grown += [RungResult(7, 0.2, (90.0,)), RungResult(8, 0.1, (99.0,))]  # 8 results, a cut of 4: front 2 fits
    assert promotable(grown, 2) == [1, 2, 3, 4]
    wide = [RungResult(i, 0.5 + i / 100, (float(i),)) for i in range(1, 7)]  # one front of 6, a cut of 3: split by crowding
    assert promotable(wide, 2) == rank_rung(wide)[:3] and {1, 6} <= set(promotable(wide, 2))  # its two ends among them


def test_the_cut_is_the_top_of_every_ordering_of_the_fronts():
    """With several objectives a result after the first front is inside the cut exactly when it
    is in the top floor(n / eta) however each front's members are ordered (every permutation of
    small rungs' fronts)."""
    import itertools

    rng = random.Random(5)
    checked = 0
    for trial in range(400):
        results = [r for r in _random_rung(rng, 1 + trial % 2, with_bad=False)][:7]
        eta = rng.choice([2, 3])
        k = len(results) // eta
        fronts = _reference_fronts(results)
        if k == 0 or len(fronts[0]) > k:
            continue
        always = None
        for perm in itertools.product(*(itertools.permutations(f) for f in fronts)):
            top = {r.cid for r in [x for front in perm for x in front][:k]}
            always = top if always is None else always & top
        assert set(promotable(results, eta)) == always, results
        checked += 1
    assert checked > 100


def test_rank_is_independent_of_the_order_given():
    rng = random.Random(7)
    for _ in range(200):
        results = _random_rung(rng, 2, with_bad=True)
        shuffled = list(results)
        rng.shuffle(shuffled)
        assert rank_rung(results) == rank_rung(shuffled)


def test_constraint_violators_and_failures_rank_last_and_are_never_promoted():
    results = [RungResult(1, 0.99, (10.0,), 0.5), RungResult(2, None, (1.0,)), RungResult(3, 0.2, (50.0,)),
               RungResult(4, 0.3, (60.0,)), RungResult(5, 0.98, (1.0,), 0.1)]
    assert rank_rung(results) == [4, 3, 5, 1, 2]  # 4 and 3: one front of two, then by accuracy
    assert promotable(results, 2) == [4, 3]
    assert promotable([RungResult(1, 0.9, (), 1.0), RungResult(2, 0.5, (), 1.0)], 2) == []


def test_one_objective_ranks_by_accuracy_then_earlier_id():
    results = [RungResult(5, 0.8), RungResult(2, 0.9), RungResult(9, 0.9), RungResult(1, 0.1)]
    assert rank_rung(results) == [2, 9, 5, 1]
    assert promotable(results, 3) == [2]
    assert promotable(results, 2) == [2, 9]
    assert promotable(results, 2, promoted={2}) == [9]


def test_several_objectives_keep_the_cheap_end_of_the_front():
    # 7 is slightly less accurate but ten times smaller: on the first front with 8, and a boundary
    results = [RungResult(8, 0.95, (100.0,)), RungResult(7, 0.93, (10.0,)), RungResult(6, 0.94, (90.0,)),
               RungResult(5, 0.90, (120.0,))]
    order = rank_rung(results)
    assert order[:2] == [8, 7] and order[-1] == 5
    assert set(promotable(results, 2)) == {8, 7}
    # one objective would have promoted the two most accurate
    assert promotable([RungResult(r.cid, r.accuracy) for r in results], 2) == [8, 6]


def test_standing_says_why():
    results = [RungResult(1, 0.5, (3.0,)), RungResult(2, 0.6, (2.0,)), RungResult(3, 0.7, (1.0,)), RungResult(4, 0.4, (9.0,))]
    s = standing(4, results, 3)
    assert s["rank"] == 4 and s["of"] == 4 and s["cutoff"] == 1
    assert s["above"] == [3, 2, 1] and sorted(s["beaten_by"]) == [1, 2, 3]
    with pytest.raises(ValueError):
        standing(99, results, 3)


def test_never_promotable_is_sound_under_every_way_the_rung_can_fill():
    """A candidate declared unpromotable never reaches the top 1/eta, whatever results arrive
    later (random extensions up to the rung's most), and `beats` is a lasting order."""
    rng = random.Random(3)
    declared = 0
    for trial in range(300):
        n_cheap = trial % 3
        results = _random_rung(rng, n_cheap, with_bad=True)
        eta = rng.choice([2, 3])
        most = len(results) + rng.randint(0, 6)
        for r in results:
            if not never_promotable(r.cid, results, eta, most):
                continue
            declared += 1
            for _ in range(3):
                extra = [x for x in _random_rung(rng, n_cheap, with_bad=True) if x.cid not in {y.cid for y in results}]
                grown = results + extra[: most - len(results)]
                order = rank_rung(grown)
                assert r.cid not in promotable(grown, eta), (r, results, grown)
                assert all(order.index(o.cid) < order.index(r.cid) for o in grown if beats(o, r))
        assert not any(never_promotable(r.cid, results, eta, math.inf) for r in results if r.ok)
    assert declared > 50


def test_rung_view_answers_as_the_pairwise_functions_do():
    """RungView (one vectorised pass per candidate, the rung ranked once: what explaining and
    pruning a large rung use) gives exactly `standing`, `beats` and `never_promotable`, on random
    rungs with ties, violators, failed results and one to three objectives."""
    rng = random.Random(11)
    checked = 0
    for trial in range(1500):
        n_cheap = trial % 3
        results = _random_rung(rng, n_cheap, with_bad=True)
        eta = rng.choice([2, 3, 4])
        view = RungView(results, eta)
        for r in results:
            assert view.standing(r.cid) == standing(r.cid, results, eta)
            assert view.beaten_by(r.cid) == [o.cid for o in results if beats(o, r)]
            for most in (len(results), len(results) + 3, math.inf):
                assert view.never_promotable(r.cid, most) == never_promotable(r.cid, results, eta, most)
            checked += 1
    assert checked > 8000
    with pytest.raises(ValueError, match="no result"):
        RungView([RungResult(1, 0.5)], 3).standing(2)


def test_ladder_and_brackets():
    assert ladder(1, 3, 9) == (1, 3, 9)
    assert ladder(1, 3, 20) == (1, 3, 9, 20)
    assert ladder(2, 2, 2) == (2,)
    assert ladder(1, 3, 200, fidelities=(12, 200)) == (12, 200)
    assert ladder(12, 3, 12, fidelities=(12, 200)) == (12,)
    assert brackets((1, 3, 9), "asha") == [(1, 3, 9)]
    assert brackets((1, 3, 9), "hyperband") == [(1, 3, 9), (3, 9), (9,)]
    assert bracket_sizes(3, 3) == [9, 5, 3]  # Hyperband with s_max = 2, eta = 3
    assert [bracket_of(i, 3, 3) for i in range(19)] == [0] * 9 + [1] * 5 + [2] * 3 + [0, 0]
    assert [bracket_of(i, 1, 3) for i in range(4)] == [0, 0, 0, 0]
    assert most_at_rungs(27, 3, 3) == [27, 9, 3]
    assert most_at_rungs(math.inf, 2, 3) == [math.inf, math.inf]


@pytest.mark.parametrize("args, message", [((0, 3, 9), "min_epochs must be a positive integer"),
                                           ((1, 1, 9), "eta must be an integer >= 2"),
                                           ((10, 3, 9), "min_epochs 10 is more than the maximum epochs 9"),
                                           ((1, 3, 0), "max_epochs must be a positive integer")])
def test_bad_settings_say_what_is_wrong(args, message):
    with pytest.raises(UsageError, match=message):
        ladder(*args)
    with pytest.raises(UsageError, match="none lies in"):
        ladder(300, 3, 400, fidelities=(12, 200))


def _asha_reference(rows: list[RungRow], ladders, eta):
    """Scan absolute rungs from the top; within one, brackets from the last; first promotable."""
    best = None
    for level in range(max(len(l) for l in ladders) - 1, -1, -1):
        for b in range(len(ladders) - 1, -1, -1):
            k = level - b
            if k < 0 or k + 1 >= len(ladders[b]):
                continue
            here = [r for r in rows if r.bracket == b and r.rung == k and r.state != "running"]
            results = [r.result for r in here]
            if not results:
                continue
            above = {r.cid for r in rows if r.bracket == b and r.rung == k + 1} | {r.cid for r in here if r.final}
            for cid in _reference_cut(results, eta):
                if cid not in above:
                    best = (cid, b, k + 1)
                    break
            if best:
                return best
    return None


def test_next_promotion_matches_the_reference():
    rng = random.Random(11)
    for trial in range(400):
        ladders = brackets((1, 3, 9), rng.choice(["asha", "hyperband"]))
        eta = 3
        rows: list[RungRow] = []
        for cid in range(rng.randint(1, 25)):
            b = rng.randrange(len(ladders))
            top = rng.randrange(len(ladders[b]))
            for k in range(top + 1):
                running = k == top and rng.random() < 0.2
                acc = round(0.3 + 0.1 * k + rng.choice([0, 0.05, 0.1, 0.2]), 2)
                res = None if running else RungResult(cid, acc if rng.random() > 0.1 else None, (float(rng.randint(1, 4)),) if trial % 2 else ())
                rows.append(RungRow(cid, b, k, "running" if running else "complete", res, final=not running and rng.random() < 0.05))
        assert next_promotion(rows, ladders, eta) == _asha_reference(rows, ladders, eta)
