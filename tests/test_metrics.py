"""Tests for liteunet.metrics (paper section 4.2, eqs. 10-14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from liteunet.metrics import (
    PointMetrics,
    localization_counts,
    match_points,
    precision_recall_f1,
)

# --------------------------------------------------------------------------- hand-worked cases


def greedy_nearest_count(pred, true, radius):
    """Greedy matching of the globally closest pairs first (what Hungarian improves on)."""
    d = np.hypot(*(np.asarray(pred)[:, None] - np.asarray(true)[None]).transpose(2, 0, 1))
    used_p, used_t, n = set(), set(), 0
    for i, j in zip(*np.unravel_index(np.argsort(d, axis=None), d.shape)):
        if d[i, j] <= radius and i not in used_p and j not in used_t:
            used_p.add(i), used_t.add(j)
            n += 1
    return n


def test_hungarian_beats_greedy_nearest():
    pred = [[0.0, 0.0], [4.0, 0.0]]
    true = [[3.0, 0.0], [7.5, 0.0]]
    assert greedy_nearest_count(pred, true, 4.0) == 1  # takes pred 1 - true 0 (distance 1)
    p, t = match_points(pred, true, 4.0)
    assert p.tolist() == [0, 1] and t.tolist() == [0, 1]
    assert localization_counts(pred, true, 4.0) == (2, 0, 0)


def test_ties_broken_by_smallest_total_distance():
    # Both assignments match 2 pairs; the crossed one is longer in total.
    pred = [[0.0, 0.0], [10.0, 0.0]]
    true = [[1.0, 0.0], [9.0, 0.0]]
    p, t = match_points(pred, true, 10.0)
    assert p.tolist() == [0, 1] and t.tolist() == [0, 1]


def test_radius_boundary_is_inclusive():
    pred = np.array([[0.0, 0.0], [100.0, 100.0]])
    true = np.array([[3.0, 4.0], [105.0, 100.0]])  # both exactly 5 px away
    assert localization_counts(pred, true, 5.0) == (2, 0, 0)
    assert localization_counts(pred, true + [0.0, 1e-6], 5.0) == (0, 2, 2)
    assert localization_counts(pred, true, 5.0 - 1e-6) == (0, 2, 2)
    assert localization_counts([[0.0, 0.0]], [[0.0, 0.0]], 0.0) == (1, 0, 0)


def test_empty_inputs():
    empty = np.zeros((0, 2))
    for pred, true in [(empty, empty), (empty, [[1.0, 2.0]]), ([[1.0, 2.0]], empty), ([], [])]:
        p, t = match_points(pred, true, 5)
        assert p.shape == (0,) and t.shape == (0,) and p.dtype == np.int64
    assert localization_counts(empty, [[1, 1], [2, 2]], 5) == (0, 0, 2)
    assert localization_counts([[1, 1]], empty, 5) == (0, 1, 0)


def test_empty_case_convention():
    # Nothing to find and nothing found: perfect.
    assert precision_recall_f1(0, 0, 0) == (1.0, 1.0, 1.0)
    # Cells missed entirely / cells hallucinated on an empty image: zero.
    assert precision_recall_f1(0, 0, 3) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(0, 2, 0) == (0.0, 0.0, 0.0)
    # Perfect prediction is always 1.
    assert precision_recall_f1(7, 0, 0) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        precision_recall_f1(-1, 0, 0)


def test_eqs_10_to_14_on_a_tiny_dataset():
    # Image a: 3 true cells, 3 predictions. At 5 px: two within 5 (distances 3 and 5),
    # one at 6 -> tp=2, fp=1, fn=1. At 10 px all three match.
    true_a = [[10, 10], [30, 30], [50, 50]]
    pred_a = [[13, 10], [30, 35], [56, 50]]
    # Image b: 2 true cells, 4 predictions: both found (distances 1 and 8), two far extras.
    true_b = [[10, 10], [40, 10]]
    pred_b = [[11, 10], [48, 10], [100, 100], [200, 200]]
    m = PointMetrics(radii=(5, 10))
    row_a = m.update(pred_a, true_a, name="a")
    m.update(pred_b, true_b, name="b")
    assert (row_a["tp@5"], row_a["fp@5"], row_a["fn@5"]) == (2, 1, 1)
    assert (row_a["tp@10"], row_a["fp@10"], row_a["fn@10"]) == (3, 0, 0)
    out = m.compute()
    # r=5: a (2,1,1) + b (1,3,1) = (3,4,2): P = 3/7, R = 3/5, F1 = 2PR/(P+R) = 1/2.
    assert (out["tp@5"], out["fp@5"], out["fn@5"]) == (3, 4, 2)
    assert out["precision@5"] == pytest.approx(3 / 7)
    assert out["recall@5"] == pytest.approx(3 / 5)
    assert out["f1@5"] == pytest.approx(0.5)
    # r=10: a (3,0,0) + b (2,2,0) = (5,2,0): P = 5/7, R = 1, F1 = 10/12.
    assert out["precision@10"] == pytest.approx(5 / 7)
    assert out["recall@10"] == 1.0
    assert out["f1@10"] == pytest.approx(10 / 12)
    # Counts: errors 0 and +2 -> MAE = 1, RMSE = sqrt((0 + 4) / 2) = sqrt(2).
    assert out["mae"] == pytest.approx(1.0)
    assert out["rmse"] == pytest.approx(math.sqrt(2))
    assert out["n_images"] == 2 and out["n_true"] == 5 and out["n_pred"] == 7
    rows = m.per_image()
    assert [r["name"] for r in rows] == ["a", "b"]
    assert rows[1]["f1@10"] == pytest.approx(2 * 2 / (2 * 2 + 2))
    assert {"name", "n_true", "n_pred", "tp@5", "fp@5", "fn@5", "f1@5", "f1@10"} <= set(rows[0])


def test_mae_rmse_by_hand():
    m = PointMetrics(radii=(5,))
    true_counts, pred_counts = [3, 0, 5, 2], [1, 0, 8, 2]  # errors -2, 0, 3, 0
    for nt, npred in zip(true_counts, pred_counts):
        m.update(np.arange(2 * npred).reshape(-1, 2) * 50.0, np.zeros((nt, 2)) + 7.0)
    out = m.compute()
    assert out["mae"] == pytest.approx(5 / 4)
    assert out["rmse"] == pytest.approx(math.sqrt(13 / 4))


def test_per_class_metrics_and_positive_index():
    m = PointMetrics(radii=(5,), positive_label=0)
    # Image 1: true 2 positive + 2 negative (index 50%); predicted 3 positive + 1 negative (75%).
    true = [[10, 10], [30, 10], [50, 10], [70, 10]]
    true_lab = [0, 0, 1, 1]
    pred = [[10, 11], [30, 11], [50, 11], [70, 11]]
    pred_lab = [0, 0, 0, 1]
    m.update(pred, true, pred_lab, true_lab)
    # Image 2: true 1 positive of 1 (100%); nothing predicted (index 0%).
    m.update(np.zeros((0, 2)), [[5, 5]], np.zeros(0, dtype=int), [0])
    # Image 3: no true cells: left out of the index error.
    m.update([[1, 1]], np.zeros((0, 2)), [1], np.zeros(0, dtype=int))
    out = m.compute()
    assert out["positive_index_error"] == pytest.approx((25 + 100) / 2)
    # Class 0: image 1 tp=2, fp=1 (pred at 50 is positive, truth there negative), fn=0;
    #          image 2 fn=1 -> (2, 1, 1).
    assert out["precision@5/class0"] == pytest.approx(2 / 3)
    assert out["recall@5/class0"] == pytest.approx(2 / 3)
    # Class 1: image 1 tp=1, fn=1; image 3 fp=1 -> (1, 1, 1).
    assert out["f1@5/class1"] == pytest.approx(0.5)
    # Class-agnostic matching ignores labels: image 1 is perfect at 5 px.
    assert m.per_image()[0]["f1@5"] == 1.0
    rows = m.per_image()
    assert rows[0]["positive_index_true"] == 50.0 and rows[0]["positive_index_pred"] == 75.0


def test_recall_by_annotated_class_for_a_one_class_model():
    """A one-class model on a set annotated with classes: which kinds of cell it finds."""
    m = PointMetrics(radii=(5, 10))
    true = [[10, 10], [30, 10], [50, 10], [70, 10]]
    # Finds both class-0 cells and one class-1 cell 7 px away (a match at 10 px, not at 5).
    pred = [[10, 11], [30, 11], [50, 17]]
    m.update(pred, true, true_classes=[0, 0, 1, 1])
    m.update([[5, 5]], [[5, 5], [90, 90]], true_classes=[1, 1])
    out = m.compute()
    assert out["recall@5/annotated0"] == 1.0 and out["recall@10/annotated0"] == 1.0
    assert out["recall@5/annotated1"] == pytest.approx(1 / 4)
    assert out["recall@10/annotated1"] == pytest.approx(2 / 4)
    # Matching ignores the classes: the pooled scores are those without them.
    plain = PointMetrics(radii=(5, 10))
    plain.update(pred, true)
    plain.update([[5, 5]], [[5, 5], [90, 90]])
    assert {k: v for k, v in out.items() if "annotated" not in k} == plain.compute()
    with pytest.raises(ValueError, match="some images and not others"):
        m.update([[0, 0]], [[0, 0]])
    with pytest.raises(ValueError, match="match the points"):
        PointMetrics().update([[0, 0]], [[0, 0]], true_classes=[0, 1])


def test_point_metrics_input_checks():
    m = PointMetrics()
    with pytest.raises(RuntimeError, match="before any update"):
        m.compute()
    with pytest.raises(ValueError, match=r"\(N,2\)"):
        m.update(np.zeros((3, 3)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="both"):
        m.update([[0, 0]], [[0, 0]], pred_labels=[0])
    m.update([[0, 0]], [[0, 0]])
    with pytest.raises(ValueError, match="every image"):
        m.update([[0, 0]], [[0, 0]], [0], [0])
    with pytest.raises(ValueError, match="match the points"):
        PointMetrics().update([[0, 0]], [[0, 0]], [0, 1], [0])
    with pytest.raises(ValueError, match="radius"):
        match_points([[0, 0]], [[0, 0]], -1)
    with pytest.raises(ValueError, match="NaN"):
        match_points([[0, float("nan")]], [[0, 0]], 5)


def test_perfect_on_all_empty_dataset():
    m = PointMetrics()
    m.update(np.zeros((0, 2)), np.zeros((0, 2)))
    out = m.compute()
    assert out["f1@5"] == out["precision@10"] == out["recall@10"] == 1.0
    assert out["mae"] == out["rmse"] == 0.0


def test_many_points_fast_and_consistent():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1500, size=(3000, 2))
    noisy = true + rng.normal(0, 3, size=true.shape)
    pred = np.concatenate([noisy, rng.uniform(0, 1500, (300, 2))])
    tp, fp, fn = localization_counts(pred, true, 10)
    assert tp + fp == len(pred) and tp + fn == len(true)
    assert tp >= 2950


# --------------------------------------------------------------------------- property tests

coord = st.floats(0, 30, allow_nan=False, allow_infinity=False, width=32)
point_sets = st.integers(0, 9).flatmap(lambda n: arrays(np.float64, (n, 2), elements=coord))
radii = st.floats(0.0, 12.0, allow_nan=False)


def brute_force(pred, true, radius):
    """Max matching count (graph algorithm) and min total distance (dense Hungarian)."""
    if len(pred) == 0 or len(true) == 0:
        return 0, 0.0
    d = np.hypot(*(pred[:, None] - true[None]).transpose(2, 0, 1))
    feasible = d <= radius
    count = int((maximum_bipartite_matching(csr_matrix(feasible), perm_type="column") >= 0).sum())
    cost = np.where(feasible, d, 1e6)
    a, b = linear_sum_assignment(cost)
    ok = feasible[a, b]
    return count, float(d[a, b][ok].sum())


@settings(max_examples=60, deadline=None)
@given(point_sets, point_sets, radii)
def test_agrees_with_brute_force(pred, true, radius):
    p, t = match_points(pred, true, radius)
    count, total = brute_force(pred, true, radius)
    assert len(p) == count
    dist = np.hypot(*(pred[p] - true[t]).T) if len(p) else np.zeros(0)
    assert np.all(dist <= radius)
    assert dist.sum() == pytest.approx(total, abs=1e-6)
    assert len(set(p.tolist())) == len(p) and len(set(t.tolist())) == len(t)  # one-to-one


@settings(max_examples=50, deadline=None)
@given(point_sets, point_sets, radii, st.randoms(use_true_random=False))
def test_count_invariants(pred, true, radius, rnd):
    tp, fp, fn = localization_counts(pred, true, radius)
    assert tp <= min(len(pred), len(true))
    assert tp + fp == len(pred) and tp + fn == len(true)
    # Permutation invariance of the counts.
    pi, ti = list(range(len(pred))), list(range(len(true)))
    rnd.shuffle(pi), rnd.shuffle(ti)
    assert localization_counts(pred[pi], true, radius) == (tp, fp, fn)
    assert localization_counts(pred, true[ti], radius) == (tp, fp, fn)
    # Swapping roles swaps fp and fn.
    assert localization_counts(true, pred, radius) == (tp, fn, fp)
    # Monotonic in the radius.
    assert localization_counts(pred, true, radius + 1.5)[0] >= tp
    p, r, f1 = precision_recall_f1(tp, fp, fn)
    assert 0.0 <= min(p, r, f1) and max(p, r, f1) <= 1.0


@settings(max_examples=50, deadline=None)
@given(point_sets, st.floats(0.0, 10.0))
def test_perfect_prediction_has_f1_one(true, radius):
    tp, fp, fn = localization_counts(true, true, radius)
    assert (tp, fp, fn) == (len(true), 0, 0)
    assert precision_recall_f1(tp, fp, fn) == (1.0, 1.0, 1.0)
    m = PointMetrics(radii=(radius, radius + 1))
    m.update(true, true)
    out = m.compute()
    assert out["mae"] == 0.0
    assert [v for k, v in out.items() if k.startswith("f1@")] == [1.0, 1.0]
