"""Clinical statistics of a classifier or a detector: ROC curve and AUC, the Youden operating
point, sensitivity and specificity, Cohen's kappa (unweighted, linear, quadratic), accuracy and
balanced accuracy, RMSE and MAE, FROC for lesion detection, and percentile bootstrap intervals.

Conventions:

- Inputs are plain 1-D arrays (numpy, jax or lists), one entry per example, of one length;
  everything is computed on the host with numpy in float64 and returned as Python floats (or
  float64 numpy arrays for curves). Nothing here is traced by ``jit``.
- Binary targets ``y_true`` hold 0 (negative) and 1 (positive), as bool, integer or float
  values that are exactly 0 or 1; ``score`` is any finite real number, larger meaning more
  likely positive, and ``score >= threshold`` is called positive.
- Class labels and ratings (accuracy, balanced accuracy, kappa) are integer (or bool) arrays;
  floating-point labels are rejected rather than rounded.
- Degenerate input is an error, never a number: NaN or infinite scores, a single class where
  both are needed (an AUC is never reported as 0.5), empty arrays, or arrays of different
  lengths each raise a ValueError (or TypeError for a wrong dtype) naming the function.
- The rank statistics are exact: the AUC is the Mann-Whitney U statistic with mid-ranks for
  ties, which equals the trapezoidal area under the ROC curve with one point per distinct
  score (``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from .._checks import as_array, check_interval, check_positive_int

_PKG = "mskjax.metrics"

#: Mean false positives per subject at which :func:`froc` reports the sensitivity (the
#: LUNA16 and CAMELYON16 convention); their mean sensitivity is the FROC score.
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


# --- validation --------------------------------------------------------------------------------


def _host(x, name, func):
    """``x`` as a concrete numpy array."""
    x = as_array(x, name, func)
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{func}: {name} must be a concrete array; the clinical statistics run "
                        "on the host and cannot be traced by jit or vmap")
    return np.asarray(x)


def _vector(x, name, func, *, allow_empty=False):
    """``x`` as a 1-D numpy array with a numeric (bool, integer or real) dtype."""
    x = _host(x, name, func)
    if x.ndim != 1:
        raise ValueError(f"{func}: {name} must be 1-D (one value per example), got shape "
                         f"{x.shape}")
    if x.size == 0 and not allow_empty:
        raise ValueError(f"{func}: {name} is empty; at least one example is needed")
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)
            or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"{func}: {name} must be a real numeric array, got dtype {x.dtype}")
    return x


def _same_length(func, **arrays):
    lengths = {name: len(x) for name, x in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"{func}: the arrays must have one entry per example, the same "
                         f"length, got {shown}")


def _real(x, name, func):
    """A finite real 1-D array as float64."""
    x = _vector(x, name, func)
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{func}: {name} must be finite, got {int(x.size - finite.sum())} NaN "
                         "or infinite values")
    return x.astype(np.float64)


def _binary(x, name, func):
    """A 1-D array of 0s and 1s as int64."""
    x = _vector(x, name, func)
    bad = ~((x == 0) | (x == 1))
    if bad.any():
        values = np.unique(x[bad])
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise ValueError(f"{func}: {name} must be binary (0 = negative, 1 = positive), got "
                         f"other values: {shown}")
    return x.astype(np.int64)


def _both_classes(y, name, func, what):
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        only = "1s (positives)" if positives else "0s (negatives)"
        raise ValueError(f"{func}: {name} must hold both classes (0 and 1), got only {only} in "
                         f"{y.size} examples; {what} is undefined")
    return positives, y.size - positives


def _labels(x, name, func):
    """A 1-D integer (or bool) label array as int64."""
    x = _vector(x, name, func)
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{func}: {name} must hold integer labels, got dtype {x.dtype}; "
                        "convert explicitly (e.g. np.rint(x).astype(int) or np.argmax over "
                        "the class axis)")
    return x.astype(np.int64)


def _scores_and_targets(y_true, score, func):
    y = _binary(y_true, "y_true", func)
    s = _real(score, "score", func)
    _same_length(func, y_true=y, score=s)
    return y, s


# --- ROC ---------------------------------------------------------------------------------------


def _roc_counts(y, s):
    """False and true positive counts at every distinct score, highest first, and the scores."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return fps, tps, s[last]


def roc_curve(y_true: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The receiver operating characteristic: one point per distinct score.

    The thresholds are ``+inf`` followed by the distinct values of ``score`` in decreasing
    order; at threshold ``t`` the examples with ``score >= t`` are called positive, so tied
    scores enter together. ``fpr[i]`` and ``tpr[i]`` are the false and true positive rates at
    ``thresholds[i]``; the curve runs from ``(0, 0)`` to ``(1, 1)``. This is
    ``sklearn.metrics.roc_curve(y_true, score, drop_intermediate=False)``.

    Args:
        y_true: ``(n,)`` binary targets (0 or 1), both classes present.
        score: ``(n,)`` finite real scores.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of shape ``(d + 1,)`` for ``d`` distinct
        scores.
    """
    func = f"{_PKG}.roc_curve"
    y, s = _scores_and_targets(y_true, score, func)
    positives, negatives = _both_classes(y, "y_true", func, "the ROC curve")
    fps, tps, thresholds = _roc_counts(y, s)
    return (np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives],
            np.r_[np.inf, thresholds])


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve, exactly: the Mann-Whitney U statistic over ``n1 * n0``.

    ``auc = (R1 - n1 (n1 + 1) / 2) / (n1 n0)`` where ``R1`` is the sum of the ranks of the
    ``n1`` positive scores among all ``n`` scores, tied scores sharing their mean rank. This is
    the probability that a random positive scores above a random negative, ties counting one
    half, and equals the trapezoidal area under :func:`roc_curve`
    (``sklearn.metrics.roc_auc_score``). O(n log n).

    Args:
        y_true: ``(n,)`` binary targets (0 or 1), both classes present.
        score: ``(n,)`` finite real scores.

    Returns:
        The AUC in ``[0, 1]``, a float.
    """
    func = f"{_PKG}.roc_auc"
    y, s = _scores_and_targets(y_true, score, func)
    positives, negatives = _both_classes(y, "y_true", func, "the AUC")
    rank_sum = float(rankdata(s, method="average")[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def youden(y_true: ArrayLike, score: ArrayLike) -> tuple[float, float, float]:
    """The operating point that maximises Youden's index ``J = sensitivity + specificity - 1``.

    The candidate thresholds are the distinct values of ``score``, with ``score >= threshold``
    called positive. ``J`` is compared exactly (as ``tp * n0 - fp * n1`` in integers); among
    thresholds with the same maximal ``J``, the highest threshold (the fewest positive calls)
    is returned.

    Args:
        y_true: ``(n,)`` binary targets (0 or 1), both classes present.
        score: ``(n,)`` finite real scores.

    Returns:
        ``(threshold, sensitivity, specificity)`` as floats.
    """
    func = f"{_PKG}.youden"
    y, s = _scores_and_targets(y_true, score, func)
    positives, negatives = _both_classes(y, "y_true", func, "Youden's index")
    fps, tps, thresholds = _roc_counts(y, s)
    best = int(np.argmax(tps * negatives - fps * positives))  # first maximum: highest threshold
    return (float(thresholds[best]), float(tps[best] / positives),
            float((negatives - fps[best]) / negatives))


def sensitivity_specificity(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, float]:
    """Sensitivity ``TP / (TP + FN)`` and specificity ``TN / (TN + FP)`` of binary predictions.

    Args:
        y_true: ``(n,)`` binary targets (0 or 1), both classes present.
        y_pred: ``(n,)`` binary predictions (0 or 1); threshold scores first, e.g.
            ``score >= threshold``.

    Returns:
        ``(sensitivity, specificity)`` as floats.
    """
    func = f"{_PKG}.sensitivity_specificity"
    y = _binary(y_true, "y_true", func)
    p = _binary(y_pred, "y_pred", func)
    _same_length(func, y_true=y, y_pred=p)
    positives, negatives = _both_classes(y, "y_true", func,
                                         "one of sensitivity and specificity")
    true_positives = int(np.sum((y == 1) & (p == 1)))
    true_negatives = int(np.sum((y == 0) & (p == 0)))
    return true_positives / positives, true_negatives / negatives


# --- agreement and error -----------------------------------------------------------------------


def cohen_kappa(a: ArrayLike, b: ArrayLike, *, weights: str | None = None,
                num_classes: int | None = None) -> float:
    """Cohen's kappa between two raters (optionally weighted), for integer ratings.

    With the confusion matrix ``C[i, j]`` (examples rated category ``i`` by ``a`` and ``j`` by
    ``b``), the chance matrix ``E = outer(C.sum(1), C.sum(0)) / n`` and disagreement weights
    ``W[i, j]`` = ``i != j`` (``weights=None``), ``|i - j|`` (``"linear"``) or ``(i - j)**2``
    (``"quadratic"``): ``kappa = 1 - sum(W * C) / sum(W * E)``.

    The categories: with ``num_classes=K`` they are the grades ``0..K-1`` and ``i`` is the
    grade itself (a rating outside that range is an error). By default they are the distinct
    values present in ``a`` or ``b``, sorted, and ``i`` is the position in that list (as
    ``sklearn.metrics.cohen_kappa_score``), so a grade nobody used does not widen the weighted
    distances; declare ``num_classes`` when it should.

    Args:
        a, b: ``(n,)`` integer (or bool) ratings of the same examples.
        weights: None, ``"linear"`` or ``"quadratic"``.
        num_classes: the number of grades ``K``, or None.

    Returns:
        Kappa, a float in ``[-1, 1]``. Raises ValueError when it is undefined (no
        disagreement is possible by chance: both raters use one and the same category).
    """
    func = f"{_PKG}.cohen_kappa"
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"{func}: weights must be None, 'linear' or 'quadratic', got "
                         f"{weights!r}")
    a = _labels(a, "a", func)
    b = _labels(b, "b", func)
    _same_length(func, a=a, b=b)
    if num_classes is None:
        categories = np.unique(np.concatenate([a, b]))
        k = categories.size
        a, b = np.searchsorted(categories, a), np.searchsorted(categories, b)
    else:
        check_positive_int(num_classes, "num_classes", func)
        k = int(num_classes)
        for name, x in (("a", a), ("b", b)):
            bad = (x < 0) | (x >= k)
            if bad.any():
                values = np.unique(x[bad])
                shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6
                                                                  else "")
                raise ValueError(f"{func}: {name} holds ratings outside 0..{k - 1} "
                                 f"(num_classes={k}): {shown}")
    confusion = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    grade = np.arange(k)
    if weights is None:
        w = (grade[:, None] != grade[None, :]).astype(np.float64)
    elif weights == "linear":
        w = np.abs(grade[:, None] - grade[None, :]).astype(np.float64)
    else:
        w = ((grade[:, None] - grade[None, :]) ** 2).astype(np.float64)
    chance = float(np.sum(w * expected))
    if chance == 0.0:
        raise ValueError(f"{func}: kappa is undefined: both raters gave every example the same "
                         "single category, so no disagreement is expected by chance")
    return 1.0 - float(np.sum(w * confusion)) / chance


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The fraction of examples with ``y_pred == y_true``, for ``(n,)`` integer labels."""
    func = f"{_PKG}.accuracy"
    t, p = _labels(y_true, "y_true", func), _labels(y_pred, "y_pred", func)
    _same_length(func, y_true=t, y_pred=p)
    return float(np.mean(t == p))


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The mean over the classes present in ``y_true`` of the recall
    ``|y_pred == c and y_true == c| / |y_true == c|``, for ``(n,)`` integer labels.

    A predicted label that never occurs in ``y_true`` has no recall of its own; those
    predictions count as misses of the true class. This is
    ``sklearn.metrics.balanced_accuracy_score`` (``adjusted=False``).
    """
    func = f"{_PKG}.balanced_accuracy"
    t, p = _labels(y_true, "y_true", func), _labels(y_pred, "y_pred", func)
    _same_length(func, y_true=t, y_pred=p)
    _, index, counts = np.unique(t, return_inverse=True, return_counts=True)
    hits = np.bincount(index, weights=(t == p).astype(np.float64), minlength=counts.size)
    return float(np.mean(hits / counts))


def _regression(y_true, y_pred, func):
    t, p = _real(y_true, "y_true", func), _real(y_pred, "y_pred", func)
    _same_length(func, y_true=t, y_pred=p)
    return p - t


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((y_pred - y_true)**2))`` of ``(n,)`` real values."""
    error = _regression(y_true, y_pred, f"{_PKG}.rmse")
    return float(np.sqrt(np.mean(error ** 2)))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error ``mean(|y_pred - y_true|)`` of ``(n,)`` real values."""
    return float(np.mean(np.abs(_regression(y_true, y_pred, f"{_PKG}.mae"))))


# --- FROC --------------------------------------------------------------------------------------


class FROCResult(NamedTuple):
    """The result of :func:`froc`.

    ``fp_per_subject``, ``sensitivity`` and ``thresholds`` are float64 ``(m + 1,)``: the curve,
    one operating point per distinct score of a counted candidate (highest first, after the
    point ``(0, 0)`` at threshold ``+inf``). ``fp_rates`` and ``sensitivity_at`` are float64
    ``(r,)``; ``score`` is the mean of ``sensitivity_at``.
    """

    fp_per_subject: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    fp_rates: np.ndarray
    sensitivity_at: np.ndarray
    score: float


def _detections(detections, num_lesions, func):
    """Validated ``(hit_scores, fp_scores, total_lesions, num_subjects)``."""
    if isinstance(detections, (str, bytes)) or not isinstance(detections, Sequence):
        raise TypeError(f"{func}: detections must be a sequence over subjects of "
                        f"(scores, lesion_index) pairs, got {type(detections).__name__}")
    counts = _labels(num_lesions, "num_lesions", func)
    if (counts < 0).any():
        raise ValueError(f"{func}: num_lesions must be >= 0, got {counts.min()}")
    if len(detections) != counts.size:
        raise ValueError(f"{func}: detections and num_lesions must have one entry per subject, "
                         f"got {len(detections)} and {counts.size}")
    if counts.sum() == 0:
        raise ValueError(f"{func}: num_lesions sums to 0; the sensitivity is undefined without "
                         "lesions")
    hits, false_positives = [], []
    for subject, pair in enumerate(detections):
        where = f"detections[{subject}]"
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise TypeError(f"{func}: {where} must be a (scores, lesion_index) pair")
        scores = _vector(pair[0], f"{where} scores", func, allow_empty=True)
        lesion = _vector(pair[1], f"{where} lesion_index", func, allow_empty=True)
        if scores.size:
            scores = _real(scores, f"{where} scores", func)
        if lesion.size:
            lesion = _labels(lesion, f"{where} lesion_index", func)
        lesion = lesion.astype(np.int64)
        _same_length(func, **{f"{where} scores": scores, f"{where} lesion_index": lesion})
        n = int(counts[subject])
        if lesion.size and (lesion.min() < -1 or lesion.max() >= n):
            raise ValueError(f"{func}: {where} lesion_index must be -1 (false positive) or a "
                             f"lesion 0..{n - 1} of the subject's {n} lesions, got values "
                             f"{lesion.min()}..{lesion.max()}")
        best = np.full(n, -np.inf)
        np.maximum.at(best, lesion[lesion >= 0], scores[lesion >= 0])
        hits.append(best[np.isfinite(best)])
        false_positives.append(scores[lesion == -1].astype(np.float64))
    return np.concatenate(hits), np.concatenate(false_positives), int(counts.sum()), counts.size


def froc(detections: Sequence[tuple[ArrayLike, ArrayLike]], num_lesions: ArrayLike, *,
         fp_rates: Sequence[float] = FROC_FP_RATES) -> FROCResult:
    """Free-response ROC: lesion sensitivity against mean false positives per subject.

    Input: for every subject ``s``, a pair ``(scores, lesion_index)`` of ``(k_s,)`` arrays (``k_s``
    may be 0), one entry per candidate detection: its finite score and the index
    ``0..num_lesions[s] - 1`` of the true lesion it hits, or ``-1`` if it hits none.

    Counting at a threshold ``t`` (candidates with ``score >= t`` kept), per subject, in order
    of decreasing score: a candidate with ``lesion_index == -1`` is a false positive; a candidate
    on lesion ``j`` is a true positive if no higher-scoring kept candidate already hit ``j``;
    further candidates on an already hit lesion are neither true nor false positives (ignored,
    as in the LUNA16 and CAMELYON16 evaluations). So lesion ``j`` is detected at ``t`` iff the
    best score on it is ``>= t``. ``sensitivity(t)`` = detected lesions / ``sum(num_lesions)``,
    ``fp_per_subject(t)`` = false positives / number of subjects (all subjects, including those
    without lesions or candidates).

    The curve has one point per distinct score of a counted candidate (the best score on each
    hit lesion, every false positive). ``sensitivity_at[i]`` is the largest sensitivity of an
    operating point with ``fp_per_subject <= fp_rates[i]`` (a step function, no interpolation
    between operating points; beyond the last point it stays at the final sensitivity).

    Args:
        detections: sequence over subjects of ``(scores, lesion_index)`` pairs.
        num_lesions: ``(subjects,)`` integer numbers of true lesions, summing to at least 1.
        fp_rates: mean false positives per subject at which to report the sensitivity.

    Returns:
        A :class:`FROCResult`; ``score`` is the mean of ``sensitivity_at`` (the FROC score).
    """
    func = f"{_PKG}.froc"
    rates = _real(fp_rates, "fp_rates", func)
    if (rates <= 0).any():
        raise ValueError(f"{func}: fp_rates must be positive, got {rates.tolist()}")
    hits, false_positives, total, subjects = _detections(detections, num_lesions, func)
    values = np.r_[hits, false_positives]
    is_hit = np.r_[np.ones(hits.size, np.int64), np.zeros(false_positives.size, np.int64)]
    if values.size:
        fps, tps, thresholds = _roc_counts(is_hit, values)
    else:
        fps = tps = np.zeros(0, np.int64)
        thresholds = np.zeros(0)
    fp_curve = np.r_[0.0, fps / subjects]
    sensitivity = np.r_[0.0, tps / total]
    last = np.searchsorted(fp_curve, rates, side="right") - 1
    sensitivity_at = sensitivity[last]
    return FROCResult(fp_curve, sensitivity, np.r_[np.inf, thresholds], rates, sensitivity_at,
                      float(np.mean(sensitivity_at)))


def detections_from_maps(score_map: ArrayLike, lesion_labels: ArrayLike, *, threshold: float,
                         min_distance: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Candidate detections of one subject from a score map, for :func:`froc`.

    Candidates are the local maxima of ``score_map`` with ``score >= threshold``: voxels equal
    to the maximum of the map over the ``(2 min_distance + 1)``-wide box around them (the box
    clipped at the border). Maxima closer than ``min_distance`` voxels along every axis (ties,
    plateaus) are thinned greedily: in order of decreasing score (then of flat index), a
    maximum is kept unless a kept one lies within that box. A candidate hits lesion
    ``lesion_labels[peak] - 1``, or none (``-1``) when the peak is on background (label 0).

    Args:
        score_map: real finite map of any dimension (e.g. ``(H, W)`` or ``(D, H, W)``).
        lesion_labels: integer map of the same shape, 0 background and ``1..L`` the lesions
            (e.g. from ``scipy.ndimage.label`` of a lesion mask); the subject's
            ``num_lesions`` for :func:`froc` is ``L = lesion_labels.max()``.
        threshold: the lowest score a candidate may have.
        min_distance: the suppression radius in voxels, at least 1.

    Returns:
        ``(scores, lesion_index)``: float64 and int64 ``(k,)`` arrays, by decreasing score.
    """
    func = f"{_PKG}.detections_from_maps"
    scores = _host(score_map, "score_map", func)
    labels = _host(lesion_labels, "lesion_labels", func)
    if scores.ndim == 0 or scores.size == 0:
        raise ValueError(f"{func}: score_map must be a non-empty map, got shape {scores.shape}")
    if scores.shape != labels.shape:
        raise ValueError(f"{func}: score_map and lesion_labels must have the same shape, got "
                         f"{scores.shape} and {labels.shape}")
    if not (np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)):
        raise TypeError(f"{func}: score_map must be real, got dtype {scores.dtype}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{func}: score_map must be finite, got "
                         f"{int(scores.size - np.isfinite(scores).sum())} NaN or infinite values")
    if not (labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.integer)):
        raise TypeError(f"{func}: lesion_labels must be an integer label map, got dtype "
                        f"{labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"{func}: lesion_labels must be >= 0 (0 = background), got "
                         f"{labels.min()}")
    check_interval(threshold, "threshold", func)
    check_positive_int(min_distance, "min_distance", func)
    scores = scores.astype(np.float64)
    peak = ndimage.maximum_filter(scores, size=2 * min_distance + 1, mode="constant",
                                  cval=-np.inf)
    flat = np.flatnonzero((scores == peak) & (scores >= threshold))
    order = np.argsort(-scores.reshape(-1)[flat], kind="stable")
    flat = flat[order]
    points = np.stack(np.unravel_index(flat, scores.shape), axis=1)
    keep = np.ones(flat.size, bool)
    if flat.size > 1:
        tree = cKDTree(points)
        for i, neighbours in enumerate(tree.query_ball_point(points, r=min_distance, p=np.inf)):
            if keep[i]:
                keep[[j for j in neighbours if j > i]] = False
    flat = flat[keep]
    return (scores.reshape(-1)[flat],
            labels.reshape(-1)[flat].astype(np.int64) - 1)


# --- bootstrap ---------------------------------------------------------------------------------


class BootstrapResult(NamedTuple):
    """The result of :func:`bootstrap`: the metric on the full data (``estimate``), the
    percentile interval ``[low, high]`` and the metric on every resample (``samples``,
    float64 ``(num_samples, *shape)``). ``estimate``, ``low`` and ``high`` are floats for a
    scalar metric, float64 arrays of the metric's shape otherwise."""

    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    samples: np.ndarray


def _example_arrays(arrays, func):
    """Arrays indexed along axis 0; lists and tuples (ragged per-example data) by element."""
    out = []
    for i, x in enumerate(arrays):
        if isinstance(x, (list, tuple)):
            out.append(list(x))
        else:
            out.append(_host(x, f"arrays[{i}]", func))
            if out[-1].ndim == 0:
                raise ValueError(f"{func}: arrays[{i}] must have one entry per example along "
                                 "axis 0, got a scalar")
    lengths = [len(x) for x in out]
    if not lengths:
        raise ValueError(f"{func}: at least one array is needed")
    if len(set(lengths)) > 1:
        raise ValueError(f"{func}: the arrays must have one entry per example, the same length, "
                         f"got lengths {lengths}")
    if lengths[0] == 0:
        raise ValueError(f"{func}: the arrays are empty; at least one example is needed")
    return out


def _take(x, index):
    return [x[i] for i in index] if isinstance(x, list) else x[index]


def _evaluate(metric, arrays, func, what, hint=""):
    """``metric(*arrays)`` as float64; a ValueError from it, NaN or infinity name ``what``."""
    try:
        value = np.asarray(metric(*arrays), dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{func}: the metric is undefined on {what}{hint}: {err}") from err
    if not np.isfinite(value).all():
        raise ValueError(f"{func}: the metric is undefined on {what}{hint}: it returned "
                         f"{value.tolist()}")
    return value


def bootstrap(metric: Callable[..., ArrayLike], *arrays: ArrayLike, num_samples: int = 1000,
              seed: int = 0, stratify: bool = True, level: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap interval of ``metric(*arrays)``.

    ``estimate = metric(*arrays)`` on the full data. Each of ``num_samples`` resamples draws
    ``n`` example indices with replacement (``numpy.random.default_rng(seed)``, reproducible)
    and applies the same indices to every array. With ``stratify=True`` the examples of each
    class of the first array (integer or bool labels, e.g. ``y_true``) are resampled
    separately, so every resample has the class counts of the data (both classes of a binary
    target, always). ``low`` and ``high`` are the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled metric (``numpy.percentile``, linear interpolation).

    A resample on which the metric is undefined (it raises ValueError or returns NaN or
    infinity, e.g. an AUC on a resample with one class when ``stratify=False``) is an error,
    never dropped: the ValueError names the resample.

    Args:
        metric: ``metric(*arrays) -> scalar or array`` (e.g. :func:`roc_auc`).
        *arrays: per-example data of one length ``n``: numpy or jax arrays are indexed along
            axis 0; lists and tuples are indexed by element (ragged data, e.g. the per-subject
            detections of :func:`froc`) and passed on as lists.
        num_samples: number of resamples, at least 1.
        seed: seed of the numpy Generator.
        stratify: resample within the classes of the first array.
        level: coverage of the interval, in (0, 1).

    Returns:
        A :class:`BootstrapResult`.
    """
    func = f"{_PKG}.bootstrap"
    if not callable(metric):
        raise TypeError(f"{func}: metric must be callable, got {type(metric).__name__}")
    check_positive_int(num_samples, "num_samples", func)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{func}: seed must be an integer, got {seed!r}")
    check_interval(level, "level", func, low=0.0, high=1.0)
    data = _example_arrays(arrays, func)
    n = len(data[0])
    if stratify:
        classes = _labels(np.asarray(data[0]), "the first array (stratify=True)", func)
        groups = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    else:
        groups = [np.arange(n)]
    estimate = _evaluate(metric, data, func, "the full data")
    hint = "" if stratify else " (stratify=True keeps every class in every resample)"
    rng = np.random.default_rng(seed)
    samples = np.empty((num_samples, *estimate.shape))
    for i in range(num_samples):
        index = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        what = f"resample {i} of {num_samples}"
        value = _evaluate(metric, [_take(x, index) for x in data], func, what, hint)
        if value.shape != estimate.shape:
            raise ValueError(f"{func}: the metric returned shape {value.shape} on {what}, "
                             f"{estimate.shape} on the full data")
        samples[i] = value
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    if estimate.ndim == 0:
        return BootstrapResult(float(estimate), float(low), float(high), samples)
    return BootstrapResult(estimate, low, high, samples)
