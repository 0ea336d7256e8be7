"""Localization and counting metrics of the Lite-UNet paper (section 4.2, eqs. 10-14).

* Localization: predicted and true points are matched one-to-one (Hungarian matching); a
  pair can match when its Euclidean distance is **at most** the radius sigma (inclusive; the
  paper uses sigma = 5 and 10 px and writes "less than", which differs only for pairs exactly
  sigma apart, e.g. integer annotations 3-4-5 apart). Matched predictions are true positives, unmatched
  predictions false positives, unmatched true points false negatives; precision, recall and
  F1 follow eqs. 10-12.
* Counting: MAE and RMSE of the per-image counts (eqs. 13-14).

Points follow the package convention: ``(x, y)`` floats in pixels, x = column, y = row,
``(0, 0)`` the centre of the top-left pixel, as ``(N, 2)`` arrays.

Empty-case convention (:func:`precision_recall_f1`): a ratio whose denominator is 0 is 1.0
when there is nothing at all (``tp = fp = fn = 0``: no prediction and no truth) and 0.0
otherwise. So a perfect prediction always scores 1.0, including on an empty image, and
predicting nothing where cells exist scores precision = recall = F1 = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["PointMetrics", "localization_counts", "match_points", "precision_recall_f1"]


def match_points(
    pred_xy: Any, true_xy: Any, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of predicted and true points within a radius.

    Among all one-to-one matchings whose pairs are at most ``radius`` apart (Euclidean,
    inclusive: a pair exactly ``radius`` apart matches), returns one with the **largest number
    of pairs**, and among those the smallest total distance. Candidate pairs come from a
    k-d tree; the bipartite graph is split into connected components, each solved exactly
    with :func:`scipy.optimize.linear_sum_assignment`, so thousands of points are cheap.

    Args:
        pred_xy: predicted points, ``(N, 2)`` array-like of ``(x, y)`` (NumPy, list, tensor).
        true_xy: true points, ``(M, 2)`` array-like of ``(x, y)``.
        radius: matching radius sigma in pixels, ``>= 0``.

    Returns:
        ``(pred_idx, true_idx)``: two int64 arrays of equal length ``K`` (the number of true
        positives), ``pred_xy[pred_idx[i]]`` matched to ``true_xy[true_idx[i]]``, sorted by
        ``pred_idx``. Both empty when either input is empty.

    Shape:
        - pred_xy: ``(N, 2)``; true_xy: ``(M, 2)`` (``(0, 2)`` for none).
        - pred_idx, true_idx: ``(K,)`` with ``K <= min(N, M)``.

    Example:
        >>> pred = [[0.0, 0.0], [4.0, 0.0]]
        >>> true = [[3.0, 0.0], [7.5, 0.0]]
        >>> p, t = match_points(pred, true, radius=4.0)
        >>> p.tolist(), t.tolist()   # greedy nearest would match only (1, 0)
        ([0, 1], [0, 1])
    """
    pred = _as_points("pred_xy", pred_xy)
    true = _as_points("true_xy", true_xy)
    r = _check_radius(radius)
    empty = np.zeros(0, dtype=np.int64)
    if len(pred) == 0 or len(true) == 0:
        return empty, empty.copy()

    # Candidate pairs: the tree query is slightly generous, the exact test is ours (np.hypot)
    # so that "distance <= radius" means one thing everywhere.
    pairs = cKDTree(pred).sparse_distance_matrix(
        cKDTree(true), max_distance=r * (1 + 1e-9) + 1e-12, output_type="ndarray"
    )
    pi, ti = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    d = np.hypot(*(pred[pi] - true[ti]).T)
    ok = d <= r
    pi, ti, d = pi[ok], ti[ok], d[ok]
    if len(pi) == 0:
        return empty, empty.copy()

    n_pred, n_true = len(pred), len(true)
    graph = coo_matrix(
        (np.ones(len(pi)), (pi, ti + n_pred)), shape=(n_pred + n_true, n_pred + n_true)
    )
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[pi]
    edge_count = np.bincount(edge_comp, minlength=comp.max() + 1)

    # A component with a single edge is a lone pair: matched without a solver.
    lone = edge_count[edge_comp] == 1
    out_p, out_t = [pi[lone]], [ti[lone]]

    multi = ~lone
    if multi.any():
        mp, mt, md, mc = pi[multi], ti[multi], d[multi], edge_comp[multi]
        order = np.argsort(mc, kind="stable")
        mp, mt, md, mc = mp[order], mt[order], md[order], mc[order]
        bounds = np.flatnonzero(np.diff(mc)) + 1
        for sp, st, sd in zip(np.split(mp, bounds), np.split(mt, bounds), np.split(md, bounds)):
            rows, r_inv = np.unique(sp, return_inverse=True)
            cols, c_inv = np.unique(st, return_inverse=True)
            # An infeasible pair costs more than any set of feasible distances, so the solver
            # never trades a match away for a shorter total distance.
            big = (min(len(rows), len(cols)) + 1) * (r + 1.0)
            cost = np.full((len(rows), len(cols)), big)
            cost[r_inv, c_inv] = sd
            a, b = linear_sum_assignment(cost)
            good = cost[a, b] < big
            out_p.append(rows[a[good]])
            out_t.append(cols[b[good]])

    p_idx = np.concatenate(out_p).astype(np.int64)
    t_idx = np.concatenate(out_t).astype(np.int64)
    order = np.argsort(p_idx, kind="stable")
    return p_idx[order], t_idx[order]


def localization_counts(pred_xy: Any, true_xy: Any, radius: float) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one image.

    Uses :func:`match_points` (one-to-one, distance ``<= radius`` inclusive).

    Args:
        pred_xy: predicted points, ``(N, 2)`` array-like of ``(x, y)``.
        true_xy: true points, ``(M, 2)`` array-like of ``(x, y)``.
        radius: matching radius sigma in pixels.

    Returns:
        ``(tp, fp, fn)`` as ints, with ``tp + fp = N`` and ``tp + fn = M``.

    Example:
        >>> localization_counts([[0, 0], [20, 20]], [[1, 1]], radius=5)
        (1, 1, 0)
    """
    pred = _as_points("pred_xy", pred_xy)
    true = _as_points("true_xy", true_xy)
    p_idx, _ = match_points(pred, true, radius)
    tp = len(p_idx)
    return tp, len(pred) - tp, len(true) - tp


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 (eqs. 10-12, beta = 1) from counts.

    Empty cases: a zero denominator gives 1.0 when ``tp = fp = fn = 0`` (nothing to find and
    nothing found: a perfect empty prediction) and 0.0 otherwise. Thus no prediction on an
    image with cells gives ``p = r = f1 = 0``, predictions on an empty image give
    ``p = r = f1 = 0``, and a perfect prediction always gives ``f1 = 1``.
    F1 is computed as ``2 tp / (2 tp + fp + fn)``, equal to eq. 12 whenever P and R exist.

    Args:
        tp: true positives (``>= 0``).
        fp: false positives (``>= 0``).
        fn: false negatives (``>= 0``).

    Returns:
        ``(precision, recall, f1)`` as floats in ``[0, 1]``.

    Example:
        >>> precision_recall_f1(3, 1, 2)
        (0.75, 0.6, 0.6666666666666666)
        >>> precision_recall_f1(0, 0, 0)
        (1.0, 1.0, 1.0)
    """
    for name, v in (("tp", tp), ("fp", fp), ("fn", fn)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    tp, fp, fn = int(tp), int(fp), int(fn)
    void = 1.0 if tp + fp + fn == 0 else 0.0
    p = tp / (tp + fp) if tp + fp else void
    r = tp / (tp + fn) if tp + fn else void
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else void
    return p, r, f1


class PointMetrics:
    """Accumulates localization, counting and class metrics over a dataset, image by image.

    Dataset scores are **pooled (micro)**: TP, FP and FN are summed over all images, then
    precision, recall and F1 are computed once from the sums, as the paper and BCData do
    (not the mean of per-image F1). Counting MAE / RMSE (eqs. 13-14) are over per-image
    counts of all cells. With labels, per-class scores match points within each class
    separately, and the Ki-67-style positive index error is the mean absolute difference of
    per-image ``positive / all`` ratios (predicted vs true) in percentage points, over the
    images with at least one true cell (an image with no predicted cell has index 0).

    Args:
        radii: matching radii in pixels (default the paper's 5 and 10).
        positive_label: label of the positive class for the positive index (default 0).

    Example:
        >>> m = PointMetrics(radii=(5,))
        >>> m.update([[10, 10], [50, 50]], [[12, 10]], name="a")["tp@5"]
        1
        >>> out = m.compute()
        >>> out["precision@5"], out["recall@5"], out["mae"]
        (0.5, 1.0, 1.0)
    """

    def __init__(self, radii: Sequence[float] = (5.0, 10.0), positive_label: int = 0) -> None:
        if isinstance(radii, (int, float)):
            radii = (radii,)
        self.radii = tuple(_check_radius(r) for r in radii)
        if not self.radii:
            raise ValueError("radii must hold at least one radius")
        if len(set(self.radii)) != len(self.radii):
            raise ValueError(f"radii must be distinct, got {self.radii}")
        self.positive_label = int(positive_label)
        self.reset()

    def reset(self) -> None:
        """Forget all images."""
        self._rows: list[dict[str, Any]] = []
        self._labelled: bool | None = None
        # (class, radius) -> [tp, fp, fn]
        self._class_counts: dict[tuple[int, float], list[int]] = {}
        # (annotated class, radius) -> [found, annotated], for class-agnostic predictions
        self._found_by_class: dict[tuple[int, float], list[int]] = {}
        self._classes_given = False

    def __len__(self) -> int:
        return len(self._rows)

    def update(
        self,
        pred_xy: Any,
        true_xy: Any,
        pred_labels: Any | None = None,
        true_labels: Any | None = None,
        name: str | None = None,
        true_classes: Any | None = None,
    ) -> dict[str, Any]:
        """Add one image.

        Args:
            pred_xy: predicted points, ``(N, 2)`` array-like of ``(x, y)``.
            true_xy: true points, ``(M, 2)`` array-like of ``(x, y)``.
            pred_labels: ``(N,)`` integer class per prediction, or None.
            true_labels: ``(M,)`` integer class per true point, or None. Give both label
                arrays or neither, and do the same for every image.
            name: image name for :meth:`per_image` (default: the image's index as a string).
            true_classes: ``(M,)`` annotated class per true point, for predictions without
                classes: matching ignores it, and :meth:`compute` adds the share of each
                annotated class that was found (which kinds of cell a one-class model finds,
                e.g. Ki-67 positive and negative).

        Returns:
            This image's row (see :meth:`per_image`).
        """
        pred = _as_points("pred_xy", pred_xy)
        true = _as_points("true_xy", true_xy)
        labelled = pred_labels is not None or true_labels is not None
        if labelled and (pred_labels is None or true_labels is None):
            raise ValueError("give both pred_labels and true_labels, or neither")
        if self._labelled is not None and labelled != self._labelled:
            raise ValueError(
                "labels were given for some images and not others; give pred_labels and "
                "true_labels for every image or for none (call reset() to start over)"
            )
        self._labelled = labelled
        if self._rows and (true_classes is not None) != self._classes_given:
            raise ValueError("true_classes was given for some images and not others; give it for every image or for none")
        self._classes_given = true_classes is not None

        row: dict[str, Any] = {
            "name": str(len(self._rows)) if name is None else str(name),
            "n_true": len(true),
            "n_pred": len(pred),
        }
        classes = None if true_classes is None else _as_labels("true_classes", true_classes, len(true))
        for r in self.radii:
            p_idx, t_idx = match_points(pred, true, r)
            tp, fp, fn = len(p_idx), len(pred) - len(p_idx), len(true) - len(p_idx)
            key = _fmt(r)
            row[f"tp@{key}"], row[f"fp@{key}"], row[f"fn@{key}"] = tp, fp, fn
            row[f"f1@{key}"] = precision_recall_f1(tp, fp, fn)[2]
            if classes is not None:
                for c in np.unique(classes).tolist():
                    acc = self._found_by_class.setdefault((c, r), [0, 0])
                    acc[0] += int(np.sum(classes[t_idx] == c))
                    acc[1] += int(np.sum(classes == c))

        if labelled:
            pl = _as_labels("pred_labels", pred_labels, len(pred))
            tl = _as_labels("true_labels", true_labels, len(true))
            for c in np.union1d(pl, tl).tolist():
                for r in self.radii:
                    counts = localization_counts(pred[pl == c], true[tl == c], r)
                    acc = self._class_counts.setdefault((c, r), [0, 0, 0])
                    for j in range(3):
                        acc[j] += counts[j]
            n_pos_pred = int(np.sum(pl == self.positive_label))
            n_pos_true = int(np.sum(tl == self.positive_label))
            row["positive_index_true"] = 100.0 * n_pos_true / len(true) if len(true) else math.nan
            row["positive_index_pred"] = 100.0 * n_pos_pred / len(pred) if len(pred) else 0.0
        self._rows.append(row)
        return dict(row)

    def per_image(self) -> list[dict[str, Any]]:
        """One row per image, in update order, ready for :class:`csv.DictWriter`.

        Returns:
            List of dicts with keys ``name``, ``n_true``, ``n_pred`` and, for each radius ``R``
            (formatted like ``5`` or ``7.5``), ``tp@R``, ``fp@R``, ``fn@R``, ``f1@R``; with
            labels also ``positive_index_true`` / ``positive_index_pred`` (percent; the true
            one is NaN on an image without true cells).
        """
        return [dict(row) for row in self._rows]

    def compute(self) -> dict[str, float]:
        """Dataset metrics.

        Returns:
            Dict with ``n_images``, ``n_true``, ``n_pred`` (totals), ``mae``, ``rmse`` (cell
            counts, eqs. 13-14) and, for each radius ``R``, pooled ``tp@R``, ``fp@R``, ``fn@R``,
            ``precision@R``, ``recall@R``, ``f1@R``. With labels also ``precision@R/class{c}``,
            ``recall@R/class{c}``, ``f1@R/class{c}`` for each class ``c`` seen, and
            ``positive_index_error`` (percentage points; NaN when no image has true cells).
            With ``true_classes``, ``recall@R/annotated{c}``: the share of the true points of
            annotated class ``c`` that were matched.

        Raises:
            RuntimeError: when no image was added.
        """
        if not self._rows:
            raise RuntimeError("PointMetrics.compute() called before any update()")
        n_true = np.array([row["n_true"] for row in self._rows], dtype=np.float64)
        n_pred = np.array([row["n_pred"] for row in self._rows], dtype=np.float64)
        err = n_pred - n_true
        out: dict[str, float] = {
            "n_images": len(self._rows),
            "n_true": int(n_true.sum()),
            "n_pred": int(n_pred.sum()),
            "mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err**2))),
        }
        for r in self.radii:
            key = _fmt(r)
            tp, fp, fn = (sum(row[f"{k}@{key}"] for row in self._rows) for k in ("tp", "fp", "fn"))
            p, rec, f1 = precision_recall_f1(tp, fp, fn)
            out.update({f"tp@{key}": tp, f"fp@{key}": fp, f"fn@{key}": fn})
            out.update({f"precision@{key}": p, f"recall@{key}": rec, f"f1@{key}": f1})
        for (c, r), (found, annotated) in sorted(self._found_by_class.items()):
            out[f"recall@{_fmt(r)}/annotated{c}"] = found / annotated if annotated else math.nan
        if self._labelled:
            for c, r in sorted(self._class_counts):
                p, rec, f1 = precision_recall_f1(*self._class_counts[(c, r)])
                key = _fmt(r)
                out[f"precision@{key}/class{c}"] = p
                out[f"recall@{key}/class{c}"] = rec
                out[f"f1@{key}/class{c}"] = f1
            diffs = [
                abs(row["positive_index_pred"] - row["positive_index_true"])
                for row in self._rows
                if row["n_true"] > 0
            ]
            out["positive_index_error"] = float(np.mean(diffs)) if diffs else math.nan
        return out


def _fmt(radius: float) -> str:
    """Radius as used in keys: 5.0 -> '5', 7.5 -> '7.5' (unique per radius)."""
    return str(int(radius)) if float(radius).is_integer() else repr(float(radius))


def _as_points(name: str, xy: Any) -> np.ndarray:
    """Array-like (NumPy, list, torch tensor on any device) -> float64 ``(N, 2)`` array."""
    if hasattr(xy, "detach"):  # torch tensor, without importing torch here
        xy = xy.detach().cpu().numpy()
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be (N,2) points (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return arr


def _as_labels(name: str, labels: Any, n: int) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels).reshape(-1) if np.size(labels) else np.zeros(0, dtype=np.int64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be ({n},) to match the points, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or np.all(arr == np.round(arr))):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_radius(radius: Any) -> float:
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a number >= 0, got {radius!r}") from None
    if not (r >= 0 and math.isfinite(r)):
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    return r
