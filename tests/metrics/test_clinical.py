"""Clinical statistics against scikit-learn (ROC, AUC, kappa, balanced accuracy, errors),
brute-force recounts (Youden, FROC, local maxima), hand-made cases, and a simulation with a
known AUC for the bootstrap intervals."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
from sklearn import metrics as sk

from mskjax import metrics
from mskjax.metrics import (FROC_FP_RATES, BootstrapResult, accuracy, balanced_accuracy,
                            bootstrap, cohen_kappa, detections_from_maps, froc, mae, rmse,
                            roc_auc, roc_curve, sensitivity_specificity, youden)

SEEDS = range(6)


def binary_case(seed, n=None, levels=None):
    """Random targets with both classes and scores with many ties (``levels`` distinct)."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    levels = levels or int(rng.integers(2, 12))
    score = rng.integers(0, levels, n) / levels + 0.3 * y * rng.random(n)
    return y, np.round(score, 1)


# --- ROC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_equals_sklearn(seed):
    y, score = binary_case(seed)
    fpr, tpr, thresholds = roc_curve(y, score)
    ref = sk.roc_curve(y, score, drop_intermediate=False)
    for got, want in zip((fpr, tpr, thresholds), ref):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    assert thresholds[0] == np.inf and len(thresholds) == len(np.unique(score)) + 1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("levels", [2, 5, 1000])
def test_roc_auc_equals_sklearn_with_ties(seed, levels):
    y, score = binary_case(seed, levels=levels)
    assert abs(roc_auc(y, score) - sk.roc_auc_score(y, score)) < 1e-12


def test_roc_auc_by_hand_and_input_types():
    y, score = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, score) == 0.75
    assert roc_auc(np.array(y, bool), jnp.asarray(score, jnp.float32)) == 0.75
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875  # a tie counts one half
    assert roc_auc([1.0, 0.0], [0, 1]) == 0.0  # integer scores, float targets


def test_roc_auc_is_fast_on_many_examples():
    y, score = binary_case(0, n=200_000, levels=50)
    assert abs(roc_auc(y, score) - sk.roc_auc_score(y, score)) < 1e-12


def brute_youden(y, score):
    """The maximal J over the distinct scores in exact fractions, the highest threshold first."""
    positives, negatives = int(y.sum()), int((1 - y).sum())
    best = None
    for t in sorted(set(score.tolist()), reverse=True):
        call = score >= t
        sens = Fraction(int(np.sum(call & (y == 1))), positives)
        spec = Fraction(int(np.sum(~call & (y == 0))), negatives)
        if best is None or sens + spec - 1 > best[1] + best[2] - 1:
            best = (t, sens, spec)
    return best


@pytest.mark.parametrize("seed", SEEDS)
def test_youden_against_brute_force(seed):
    y, score = binary_case(seed)
    threshold, sens, spec = youden(y, score)
    t, s, p = brute_youden(y, score)
    assert threshold == t and sens == float(s) and spec == float(p)
    ref_sens, ref_spec = sensitivity_specificity(y, (score >= threshold).astype(int))
    assert (sens, spec) == (ref_sens, ref_spec)


def test_youden_breaks_ties_towards_the_highest_threshold():
    # J = 1/2 at threshold 4 (sens 1/2, spec 1) and at threshold 2 (sens 1, spec 1/2).
    assert youden([0, 1, 0, 1], [1, 2, 3, 4]) == (4.0, 0.5, 1.0)
    assert youden([1, 0, 1, 0], [4, 3, 2, 1]) == (4.0, 0.5, 1.0)
    # Perfect separation: J = 1 only at the lowest positive score.
    assert youden([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == (0.7, 1.0, 1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_sensitivity_specificity_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    y[:2] = (0, 1)
    sens, spec = sensitivity_specificity(y, pred)
    assert sens == sk.recall_score(y, pred, pos_label=1)
    assert spec == sk.recall_score(y, pred, pos_label=0)


# --- agreement and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_equals_sklearn(seed, weights):
    rng = np.random.default_rng(seed)
    grades = np.array([0, 1, 2, 4, 7])  # a gap: sklearn uses the positions of present labels
    a = rng.choice(grades, 80)
    b = np.where(rng.random(80) < 0.6, a, rng.choice(grades, 80))
    want = sk.cohen_kappa_score(a, b, weights=weights)
    assert abs(cohen_kappa(a, b, weights=weights) - want) < 1e-12
    # num_classes declares the grades 0..K-1, as sklearn's labels=range(K).
    want = sk.cohen_kappa_score(a, b, weights=weights, labels=np.arange(9))
    assert abs(cohen_kappa(a, b, weights=weights, num_classes=9) - want) < 1e-12


def test_cohen_kappa_by_hand():
    assert cohen_kappa([0, 1, 2], [0, 1, 2], weights="quadratic") == 1.0
    # C = [[1, 1], [0, 2]]: observed agreement 3/4, chance (2*1 + 2*3) / 16 = 1/2.
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5, abs=1e-15)
    # Declared empty grade 1 widens the linear distance between grades 0 and 2.
    a, b = [0, 0, 2, 2], [0, 2, 2, 2]
    assert cohen_kappa(a, b, weights="linear") == cohen_kappa(a, b)
    assert cohen_kappa(a, b, weights="linear", num_classes=3) == cohen_kappa(a, b)
    assert cohen_kappa(a, b, weights="quadratic", num_classes=3) == cohen_kappa(a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_balanced_accuracy_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 1, 1, 2, 4], 60)
    pred = np.where(rng.random(60) < 0.5, y, rng.integers(0, 6, 60))  # 3 and 5 never true
    assert accuracy(y, pred) == sk.accuracy_score(y, pred)
    with np.errstate(all="ignore"), pytest.warns(UserWarning):
        want = sk.balanced_accuracy_score(y, pred)
    assert abs(balanced_accuracy(y, pred) - want) < 1e-12
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5
    assert accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.75


@pytest.mark.parametrize("seed", SEEDS)
def test_rmse_and_mae_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.normal(10, 3, 40), rng.normal(10, 3, 40)
    assert abs(rmse(y, pred) - np.sqrt(sk.mean_squared_error(y, pred))) < 1e-12
    assert abs(mae(y, pred) - sk.mean_absolute_error(y, pred)) < 1e-12
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5)) and mae([0, 0], [3, -4]) == 3.5


# --- FROC --------------------------------------------------------------------------------------


def hand_case():
    # Subject 0: 2 lesions; 0.8 hits lesion 0 again (ignored). Subject 1: 1 lesion.
    detections = [(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 0, -1, 1])),
                  (np.array([0.95, 0.5]), np.array([-1, 0]))]
    return detections, [2, 1]


def test_froc_hand_made_case():
    result = froc(*hand_case())
    np.testing.assert_array_equal(result.thresholds, [np.inf, 0.95, 0.9, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(result.fp_per_subject, [0, 0.5, 0.5, 1, 1, 1])
    np.testing.assert_allclose(result.sensitivity, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1], rtol=1e-15)
    np.testing.assert_array_equal(result.fp_rates, FROC_FP_RATES)
    np.testing.assert_allclose(result.sensitivity_at, [0, 0, 1 / 3, 1, 1, 1, 1], rtol=1e-15)
    # Were the second hit on lesion 0 a false positive, 1 FP/subject would give 1/3, not 1.
    assert result.score == pytest.approx(13 / 21, abs=1e-15)
    # Subjects with neither lesions nor candidates still count in the mean false positives.
    padded = froc(hand_case()[0] + [([], [])], [2, 1, 0], fp_rates=[0.5, 2 / 3])
    np.testing.assert_allclose(padded.fp_per_subject, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(padded.sensitivity_at, [1 / 3, 1])


def brute_froc_counts(detections, num_lesions, t):
    """(false positives, detected lesions) among the candidates with score >= t, one subject
    and one candidate at a time, in order of decreasing score."""
    false_positives = detected = 0
    for (scores, lesion), n in zip(detections, num_lesions):
        hit = [False] * n
        for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
            if scores[i] < t:
                break
            if lesion[i] < 0:
                false_positives += 1
            elif not hit[lesion[i]]:
                hit[lesion[i]] = True
                detected += 1
    return false_positives, detected


def random_detections(rng, subjects):
    num_lesions = rng.integers(0, 4, subjects)
    num_lesions[0] = max(num_lesions[0], 1)
    detections = []
    for n in num_lesions:
        k = int(rng.integers(0, 8))
        scores = np.round(rng.random(k), 1)  # ties within and across subjects
        lesion = rng.integers(-1, n, k) if n else np.full(k, -1)
        detections.append((scores, lesion))
    return detections, num_lesions


@pytest.mark.parametrize("seed", SEEDS)
def test_froc_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    subjects = int(rng.integers(1, 9))
    detections, num_lesions = random_detections(rng, subjects)
    rates = (0.125, 0.25, 0.5, 1, 2, 4, 8, 0.3)
    result = froc(detections, num_lesions, fp_rates=rates)
    total = num_lesions.sum()
    for t, fp, sens in zip(result.thresholds, result.fp_per_subject, result.sensitivity):
        false_positives, detected = brute_froc_counts(detections, num_lesions, t)
        assert fp == false_positives / subjects and sens == detected / total
    # Every operating point, duplicates-only thresholds included, lies on the curve.
    every = [np.inf] + sorted({float(s) for scores, _ in detections for s in scores})
    points = [brute_froc_counts(detections, num_lesions, t) for t in every]
    for rate, got in zip(rates, result.sensitivity_at):
        assert got == max(d / total for f, d in points if f / subjects <= rate)
    assert result.score == pytest.approx(np.mean(result.sensitivity_at), abs=1e-15)


def brute_local_maxima(score, threshold, m):
    """Voxels at least ``threshold`` that are the maximum of their clipped (2m+1) box."""
    found = []
    for index in np.ndindex(score.shape):
        box = tuple(slice(max(i - m, 0), i + m + 1) for i in index)
        if score[index] >= threshold and score[index] == score[box].max():
            found.append(index)
    return found


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("min_distance", [1, 2])
def test_detections_from_maps_against_brute_force(seed, min_distance):
    rng = np.random.default_rng(seed)
    shape = (9, 11) if seed < 2 else (5, 6, 7)
    score = rng.random(shape)  # no ties
    labels = rng.integers(0, 4, shape)
    scores, lesion = detections_from_maps(score, labels, threshold=0.3, min_distance=min_distance)
    peaks = brute_local_maxima(score, 0.3, min_distance)
    want = sorted(((score[p], labels[p] - 1) for p in peaks), reverse=True)
    assert [(float(s), int(i)) for s, i in zip(scores, lesion)] == want
    assert scores.dtype == np.float64 and lesion.dtype == np.int64


def test_detections_from_maps_plateaus_and_froc():
    score = np.zeros((12, 12))
    score[2:5, 2:5] = 0.9          # a plateau on lesion 1: one candidate
    score[8, 8] = 0.7              # a peak on lesion 2
    score[8, 2] = 0.6              # a peak on background
    labels = np.zeros((12, 12), int)
    labels[1:6, 1:6] = 1
    labels[7:10, 7:10] = 2
    scores, lesion = detections_from_maps(score, labels, threshold=0.5, min_distance=2)
    np.testing.assert_array_equal(scores, [0.9, 0.7, 0.6])
    np.testing.assert_array_equal(lesion, [0, 1, -1])
    result = froc([(scores, lesion)], [labels.max()], fp_rates=[0.5, 1])
    np.testing.assert_array_equal(result.sensitivity_at, [1, 1])
    assert detections_from_maps(score, labels, threshold=0.95)[0].size == 0


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_estimate_interval_and_reproducibility():
    y, score = binary_case(1, n=60)
    result = bootstrap(roc_auc, y, score, num_samples=300, seed=3)
    assert isinstance(result, BootstrapResult) and result.samples.shape == (300,)
    assert result.estimate == roc_auc(y, score)
    assert (result.low, result.high) == tuple(np.percentile(result.samples, [2.5, 97.5]))
    again = bootstrap(roc_auc, y, score, num_samples=300, seed=3)
    np.testing.assert_array_equal(again.samples, result.samples)
    other = bootstrap(roc_auc, y, score, num_samples=300, seed=4)
    assert not np.array_equal(other.samples, result.samples)
    narrow = bootstrap(roc_auc, y, score, num_samples=300, seed=3, level=0.5)
    assert result.low < narrow.low < narrow.high < result.high
    assert len(np.unique(result.samples)) > 50


def test_bootstrap_stratification_and_shared_indices():
    y = np.r_[np.zeros(17, int), np.ones(5, int)]
    x = np.arange(22) * 2.0
    count = lambda y, x: float(y.sum())  # noqa: E731
    assert set(bootstrap(count, y, x, num_samples=200).samples) == {5.0}
    free = bootstrap(count, y, x, num_samples=200, stratify=False).samples
    assert len(set(free)) > 3
    # The same indices go to every array: x[i] == 2 i survives every resample.
    paired = lambda y, x, i: float(np.all(x == 2 * i) and np.all(y == (i >= 17)))  # noqa: E731
    assert set(bootstrap(paired, y, x, np.arange(22), num_samples=100).samples) == {1.0}
    # A vector metric gets an interval per entry; lists are resampled by element.
    pair = bootstrap(sensitivity_specificity, y, (x > 20).astype(int), num_samples=50)
    assert pair.samples.shape == (50, 2) and pair.low.shape == (2,)
    detections, num_lesions = random_detections(np.random.default_rng(0), 6)
    num_lesions[:] = np.maximum(num_lesions, 1)
    ragged = bootstrap(lambda d, n: froc(d, n).score, list(detections), num_lesions,
                       num_samples=20, stratify=False)
    assert ragged.estimate == froc(detections, num_lesions).score


def test_bootstrap_interval_of_a_mean_matches_the_normal_theory():
    x = np.random.default_rng(0).normal(5.0, 2.0, 400)
    result = bootstrap(np.mean, x, num_samples=2000, stratify=False)
    half_width = 1.959964 * x.std() / np.sqrt(x.size)
    assert result.low == pytest.approx(x.mean() - half_width, abs=0.1 * half_width)
    assert result.high == pytest.approx(x.mean() + half_width, abs=0.1 * half_width)


def test_bootstrap_auc_interval_covers_the_true_auc():
    # Binormal scores: positives N(1, 1), negatives N(0, 1), AUC = Phi(1 / sqrt(2)).
    true_auc = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    estimates, spreads, covered = [], [], 0
    for repeat in range(150):
        score = rng.normal(size=60) + y
        result = bootstrap(roc_auc, y, score, num_samples=150, seed=repeat)
        estimates.append(result.estimate)
        spreads.append(result.samples.std())
        covered += result.low <= true_auc <= result.high
    assert 0.88 <= covered / 150 <= 0.99
    # The bootstrap spread matches the spread of the AUC over simulated data sets.
    assert np.mean(spreads) == pytest.approx(np.std(estimates), rel=0.2)
    # ... and the closed-form standard error of Hanley and McNeil (1982).
    q1, q2 = true_auc / (2 - true_auc), 2 * true_auc ** 2 / (1 + true_auc)
    variance = (true_auc * (1 - true_auc) + 29 * (q1 - true_auc ** 2)
                + 29 * (q2 - true_auc ** 2)) / (30 * 30)
    assert np.mean(spreads) == pytest.approx(np.sqrt(variance), rel=0.15)
    assert np.mean(estimates) == pytest.approx(true_auc, abs=0.02)


def test_bootstrap_reports_undefined_resamples():
    y = np.r_[np.zeros(19, int), 1]
    score = np.arange(20.0)
    with pytest.raises(ValueError, match=r"bootstrap: the metric is undefined on resample \d+ "
                                         r"of 100 \(stratify=True keeps.*roc_auc"):
        bootstrap(roc_auc, y, score, num_samples=100, stratify=False)
    assert bootstrap(roc_auc, y, score, num_samples=100).high == 1.0
    with pytest.raises(ValueError, match="undefined on resample 0 .*returned nan"):
        bootstrap(lambda y, s: float("nan") if len(set(s)) < 20 else 1.0, y, score,
                  num_samples=5, stratify=False)
    with pytest.raises(TypeError, match="bootstrap: the first array .*integer labels"):
        bootstrap(mae, score, score, num_samples=5)
    with pytest.raises(ValueError, match="bootstrap: the arrays must have .* lengths"):
        bootstrap(roc_auc, y, score[:5])
    with pytest.raises(ValueError, match="bootstrap: level"):
        bootstrap(roc_auc, y, score, level=95)


# --- bad input ---------------------------------------------------------------------------------

BINARY_SCORED = [roc_curve, roc_auc, youden]
M = "mskjax.metrics."


@pytest.mark.parametrize("fn", BINARY_SCORED)
def test_scored_metrics_reject_bad_input(fn):
    name = M + fn.__name__
    with pytest.raises(ValueError, match=f"{name}: score must be finite, got 1 NaN"):
        fn([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match=f"{name}: score must be finite"):
        fn([0, 1, 1], [0.1, np.inf, 0.3])
    with pytest.raises(ValueError, match=f"{name}: y_true must hold both classes.*only 1s"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=f"{name}: y_true must hold both classes.*only 0s"):
        fn([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match=f"{name}: the arrays must .* y_true has 3, score has 2"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=f"{name}: y_true must be binary .*: 2"):
        fn([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=f"{name}: y_true is empty"):
        fn([], [])
    with pytest.raises(ValueError, match=f"{name}: score must be 1-D"):
        fn([0, 1], [[0.1, 0.2]])
    with pytest.raises(TypeError, match=f"{name}: score must be a real numeric array"):
        fn([0, 1], np.array([1j, 2j]))
    with pytest.raises(TypeError, match=f"{name}: y_true must be a concrete array"):
        jax.jit(fn)(jnp.array([0, 1]), jnp.array([0.1, 0.2]))


def test_label_metrics_reject_bad_input():
    with pytest.raises(ValueError, match=f"{M}sensitivity_specificity: y_pred must be binary"):
        sensitivity_specificity([0, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match=f"{M}sensitivity_specificity: y_true must hold both"):
        sensitivity_specificity([1, 1], [0, 1])
    with pytest.raises(TypeError, match=f"{M}cohen_kappa: a must hold integer labels, got "
                                        "dtype float64"):
        cohen_kappa([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: b holds ratings outside 0..2 "
                                         r"\(num_classes=3\): -1, 3"):
        cohen_kappa([0, 1, 2, 2], [0, 3, -1, 2], num_classes=3)
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: kappa is undefined"):
        cohen_kappa([2, 2], [2, 2])
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: weights must be"):
        cohen_kappa([0, 1], [0, 1], weights="squared")
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: num_classes must be"):
        cohen_kappa([0, 1], [0, 1], num_classes=0)
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: the arrays must"):
        cohen_kappa([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=f"{M}cohen_kappa: a is empty"):
        cohen_kappa([], [])
    with pytest.raises(TypeError, match=f"{M}accuracy: y_pred must hold integer labels"):
        accuracy([0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match=f"{M}balanced_accuracy: the arrays must"):
        balanced_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match=f"{M}rmse: y_pred must be finite"):
        rmse([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match=f"{M}mae: y_true is empty"):
        mae([], [])


def test_froc_and_maps_reject_bad_input():
    detections, num_lesions = hand_case()
    with pytest.raises(ValueError, match=f"{M}froc: detections\\[0\\] lesion_index must be -1 "
                                         ".* 0..1 .* got values -1..2"):
        froc([(detections[0][0], np.array([0, 0, -1, 2])), detections[1]], num_lesions)
    with pytest.raises(ValueError, match=f"{M}froc: detections\\[1\\] scores must be finite"):
        froc([detections[0], (np.array([np.nan, 0.5]), np.array([-1, 0]))], num_lesions)
    with pytest.raises(ValueError, match=f"{M}froc: the arrays must .*detections\\[1\\]"):
        froc([detections[0], (np.array([0.1, 0.5]), np.array([0]))], num_lesions)
    with pytest.raises(ValueError, match=f"{M}froc: detections and num_lesions .* 2 and 3"):
        froc(detections, [2, 1, 0])
    with pytest.raises(ValueError, match=f"{M}froc: num_lesions sums to 0"):
        froc(detections[1:], [0])
    with pytest.raises(ValueError, match=f"{M}froc: fp_rates must be positive"):
        froc(detections, num_lesions, fp_rates=[0, 1])
    with pytest.raises(TypeError, match=f"{M}froc: detections must be a sequence"):
        froc(np.zeros((2, 2)), num_lesions)
    with pytest.raises(TypeError, match=f"{M}froc: detections\\[0\\] lesion_index must hold "
                                        "integer"):
        froc([(np.array([0.5]), np.array([0.0])), detections[1]], num_lesions)
    score, labels = np.zeros((4, 4)), np.zeros((4, 4), int)
    with pytest.raises(ValueError, match=f"{M}detections_from_maps: score_map and lesion_labels"):
        detections_from_maps(score, labels[:2], threshold=0.5)
    with pytest.raises(TypeError, match=f"{M}detections_from_maps: lesion_labels must be an "
                                        "integer"):
        detections_from_maps(score, labels * 1.0, threshold=0.5)
    with pytest.raises(ValueError, match=f"{M}detections_from_maps: min_distance"):
        detections_from_maps(score, labels, threshold=0.5, min_distance=0)
    with pytest.raises(ValueError, match=f"{M}detections_from_maps: score_map must be finite"):
        detections_from_maps(score + np.nan, labels, threshold=0.5)


def test_public_names():
    for name in ("roc_curve", "roc_auc", "youden", "sensitivity_specificity", "cohen_kappa",
                 "accuracy", "balanced_accuracy", "rmse", "mae", "froc", "FROCResult",
                 "detections_from_maps", "bootstrap", "BootstrapResult", "FROC_FP_RATES"):
        assert name in metrics.__all__ and hasattr(metrics, name)
