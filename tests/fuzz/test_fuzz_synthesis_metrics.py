"""Fuzzing issue 13's CT numbers, their error metrics, the affine projection of GANCS and the
sharpness measures.

Every call returns finite values (or a result whose ``status`` says why not), or raises a
ValueError/TypeError naming the function. NaN is allowed only where it is documented: a class
without voxels in :func:`mskjax.metrics.hounsfield_mae_per_tissue`, no bone in either map in
:func:`mskjax.metrics.bone_dice`, and, under jit, the sharpness of an image without energy or
gradient (refused eagerly) or of a non-finite one. Answers are checked against numpy oracles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import linop, metrics, sim, solvers

from .conftest import outcome

NUM_LABELS = len(sim.KNEE_LABELS)
HU_OF_CLASS = {0: {-1000.0}}  # air: the background only


def labels_of(kind: str, shape, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_LABELS, shape).astype(np.int32)
    if kind == "zeros":
        labels[...] = 0
    elif kind == "negative" and labels.size:
        labels.flat[seed % labels.size] = -1
    elif kind == "too large" and labels.size:
        labels.flat[seed % labels.size] = NUM_LABELS
    elif kind == "uint8":
        return labels.astype(np.uint8)
    elif kind == "int64":
        return labels.astype(np.int64)
    elif kind == "float":
        return labels.astype(np.float32)
    elif kind == "bool":
        return labels > 3
    elif kind == "list":
        return labels.tolist()
    elif kind in ("none", "str"):
        return None if kind == "none" else "labels"
    return labels


LABEL_KINDS = ["random", "zeros", "negative", "too large", "uint8", "int64", "float", "bool",
               "list", "none", "str"]
LABEL_SHAPES = [(6, 6), (4, 4, 4), (0, 4), (5,)]


@pytest.mark.parametrize("func", [sim.attenuation_map, sim.ct_tissue_classes],
                         ids=lambda f: f.__name__)
@given(kind=st.sampled_from(LABEL_KINDS), shape=st.sampled_from(LABEL_SHAPES),
       seed=st.integers(0, 2**16))
def test_label_maps_answer_or_refuse(func, kind, shape, seed):
    labels = labels_of(kind, shape, seed)
    name = f"mskjax.sim.{func.__name__}"
    out = outcome(name, func, labels)
    if out is None:
        assert kind not in ("random", "zeros", "uint8", "int64") or 0 in shape, (
            f"{name} refused valid labels")
        return
    assert kind in ("random", "zeros", "uint8", "int64") or (
        0 in shape and kind in ("negative", "too large")), f"{name} accepted {kind} labels"
    out = np.asarray(out)
    assert out.shape == np.shape(labels)
    labels = np.asarray(labels)
    if func is sim.attenuation_map:
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
        assert np.all(out >= 0) and np.all((out == 0) == (labels == 0)), "air is not 0 1/cm"
    else:
        assert out.dtype == np.int32 and np.all((out >= 0) & (out < len(sim.CT_TISSUE_CLASSES)))
        assert np.all((out == 0) == (labels == 0)), "the background is not the air class"
        hu = np.asarray(sim.hounsfield_units(sim.attenuation_map(labels)))
        if out.size:
            assert np.all(hu[out == 3] > 200) and np.all(hu[out < 3] < 200), "bone by HU"


JIT_LABELS = {f: jax.jit(f) for f in (sim.attenuation_map, sim.ct_tissue_classes)}


@pytest.mark.parametrize("func", [sim.attenuation_map, sim.ct_tissue_classes],
                         ids=lambda f: f.__name__)
@given(seed=st.integers(0, 2**16))
def test_label_maps_jitted_equal_eager(func, seed):
    labels = labels_of("random", (6, 6), seed)
    np.testing.assert_array_equal(np.asarray(JIT_LABELS[func](labels)), np.asarray(func(labels)))


VALUE_KINDS = ["random", "zeros", "nan", "inf", "huge", "tiny", "int", "bool", "complex",
               "float16", "list", "str", "none", "empty"]


def values_of(kind: str, seed: int, *, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(6)).astype(np.float32)
    if kind == "zeros":
        return x * 0
    if kind == "nan":
        x[seed % 6] = np.nan
    elif kind == "inf":
        x[seed % 6] = np.inf
    elif kind == "huge":
        return x * np.float32(1e30)
    elif kind == "tiny":
        return x * np.float32(1e-30)
    elif kind == "int":
        return (10 * x).astype(np.int32)
    elif kind == "bool":
        return x > 0
    elif kind == "complex":
        return x + 1j * x
    elif kind == "float16":
        return x.astype(np.float16)
    elif kind == "list":
        return x.tolist()
    elif kind == "str":
        return "values"
    elif kind == "none":
        return None
    elif kind == "empty":
        return np.zeros((0, 3), np.float32)
    return x


WATERS = [0.205, 0.19, 1.0, 1e-3, 1e18, 0, -0.2, float("nan"), float("inf"), 1e-30, 1e30, "0.2",
          None, True]


@pytest.mark.parametrize("func", [sim.hounsfield_units, sim.attenuation_from_hounsfield],
                         ids=lambda f: f.__name__)
@given(kind=st.sampled_from(VALUE_KINDS), water=st.sampled_from(WATERS),
       seed=st.integers(0, 2**16))
def test_hounsfield_conversions_answer_or_refuse(func, kind, water, seed):
    values = values_of(kind, seed, scale=0.3 if func is sim.hounsfield_units else 1000)
    name = f"mskjax.sim.{func.__name__}"
    out = outcome(name, func, values, water=water)
    if out is None:
        assert kind in ("bool", "complex", "str", "none") or not (
            isinstance(water, float) and 1e-19 < water < 1e19), f"{name} refused valid input"
        return
    assert kind not in ("bool", "complex", "str", "none"), f"{name} accepted {kind} input"
    out = np.asarray(out)
    ref = np.asarray(values, np.float64)
    expected = (1000 * (ref - water) / water if func is sim.hounsfield_units
                else water * (1 + ref / 1000))
    assert out.shape == ref.shape
    if not np.all(np.isfinite(ref)):
        assert not np.all(np.isfinite(out)), f"{name} hid non-finite input"
        return
    if np.all(np.abs(expected) < 1e37):  # else the answer itself overflows float32
        assert np.all(np.isfinite(out)), f"{name} returned non-finite values for finite input"
        tol = 1e-2 if kind == "float16" else 1e-5
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.abs(expected).max())


@given(kind=st.sampled_from(["random", "zeros", "nan", "too large", "negative", "float",
                             "empty", "none", "str", "bool"]),
       hk=st.sampled_from(["random", "nan", "inf", "int", "complex", "bool", "str", "none",
                           "shape"]),
       num_classes=st.sampled_from([4, 1, 16, 0, -1, 2.0, True, None]),
       seed=st.integers(0, 2**16))
def test_mean_hounsfield_per_class_answers_or_refuses(kind, hk, num_classes, seed):
    rng = np.random.default_rng(seed)
    if kind == "empty":
        classes = np.zeros(0, np.int32)
    else:
        classes = np.arange(24, dtype=np.int32) % 4
        rng.shuffle(classes)
        if kind in ("nan", "zeros", "too large", "negative", "float", "bool", "none", "str"):
            classes = {"nan": classes.astype(np.float32), "zeros": classes * 0,
                       "too large": classes + 1, "negative": classes - 1,
                       "float": classes.astype(np.float32), "bool": classes > 1, "none": None,
                       "str": "classes"}[kind]
    hu = {"random": rng.normal(0, 500, 24), "nan": np.where(np.arange(24) == 3, np.nan, 0.0),
          "inf": np.full(24, -np.inf), "int": np.arange(24), "complex": np.ones(24) * 1j,
          "bool": np.ones(24, bool), "str": "hu", "none": None, "shape": np.zeros(23)}[hk]
    if kind == "empty" and hk not in ("str", "none"):
        hu = np.zeros(0)
    name = "mskjax.sim.mean_hounsfield_per_class"
    out = outcome(name, sim.mean_hounsfield_per_class, hu, classes, num_classes=num_classes)
    if out is None:
        return
    assert hk in ("random", "int") and kind in ("random", "zeros", "too large"), (
        f"{name} accepted {kind} classes and {hk} HU")
    assert num_classes in (1, 4, 16) and not isinstance(num_classes, bool)
    out = np.asarray(out)
    assert out.shape == (num_classes,) and np.all(np.isfinite(out))
    for c in range(num_classes):
        np.testing.assert_allclose(out[c], np.mean(np.asarray(hu, float)[classes == c]))


PCT_JIT = jax.jit(sim.pseudo_ct_from_classes)


@given(kind=st.sampled_from(["random", "too large", "negative", "float", "bool", "empty", "none",
                             "str", "list"]),
       tk=st.sampled_from(["table", "nan", "int", "2d", "empty", "str", "none", "f64 huge"]),
       jit=st.booleans(), seed=st.integers(0, 2**16))
def test_pseudo_ct_from_classes_answers_or_refuses(kind, tk, jit, seed):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 4, (5, 5)).astype(np.int32)
    classes = {"random": classes, "too large": classes + 1, "negative": classes - 1,
               "float": classes.astype(np.float32), "bool": classes > 1,
               "empty": np.zeros((0, 5), np.int32), "none": None, "str": "classes",
               "list": classes.tolist()}[kind]
    table = {"table": np.float32([-1000, -100, 30, 700]),
             "nan": np.float32([-1000, np.nan, 30, 700]), "int": np.arange(4),
             "2d": np.zeros((4, 1), np.float32), "empty": np.zeros(0, np.float32), "str": "tabl",
             "none": None, "f64 huge": np.full(4, 1e300)}[tk]
    name = "mskjax.sim.pseudo_ct_from_classes"
    valid_classes = kind in ("random", "empty", "list")
    if jit and valid_classes and tk in ("table", "nan") and kind != "list":
        out = PCT_JIT(classes, table)
    else:
        out = outcome(name, sim.pseudo_ct_from_classes, classes, table)
    if out is None:
        return
    assert kind in ("random", "empty", "list") and tk in ("table", "nan", "f64 huge"), (
        f"{name} accepted {kind} classes and a {tk} table")
    out = np.asarray(out)
    np.testing.assert_array_equal(out, np.asarray(table, np.float32)[np.asarray(classes)])
    if tk == "table":
        assert np.all(np.isfinite(out))


# ------------------------------------------------------------------ HU error metrics

def ct_pair(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 600, (6, 6)).astype(np.float32)
    pred = true + rng.normal(0, 50, (6, 6)).astype(np.float32)
    if kind == "nan":
        pred[seed % 6, 0] = np.nan
    elif kind == "inf":
        true[0, seed % 6] = -np.inf
    elif kind == "int":
        true, pred = true.astype(np.int32), pred.astype(np.int32)
    elif kind == "complex":
        pred = pred + 0j
    elif kind == "bool":
        pred = pred > 0
    elif kind == "shape":
        pred = pred[:5]
    elif kind == "empty":
        true, pred = true[:0], pred[:0]
    elif kind == "no bone":
        true, pred = np.minimum(true, 100), np.minimum(pred, 100)
    elif kind == "ragged":
        pred = [[1.0], [1.0, 2.0]]
    elif kind == "none":
        pred = None
    elif kind == "float64 huge":
        true, pred = true * 1e300, pred * -1e300
    return true, pred


CT_KINDS = ["random", "nan", "inf", "int", "complex", "bool", "shape", "empty", "no bone",
            "ragged", "none", "float64 huge"]


@given(kind=st.sampled_from(CT_KINDS),
       ck=st.sampled_from(["random", "one class", "too large", "negative", "float", "bool",
                           "shape", "none"]),
       num_classes=st.sampled_from([4, 2, 8, 1, 0, 4.0, True, None]),
       seed=st.integers(0, 2**16))
def test_hounsfield_mae_per_tissue_answers_or_refuses(kind, ck, num_classes, seed):
    true, pred = ct_pair(kind, seed)
    rng = np.random.default_rng(seed + 1)
    classes = rng.integers(0, 2, np.shape(true)).astype(np.int32)
    classes = {"random": classes, "one class": classes * 0 + 1, "too large": classes + 7,
               "negative": classes - 1, "float": classes.astype(np.float32),
               "bool": classes > 0, "shape": classes[:, :3], "none": None}[ck]
    name = "mskjax.metrics.hounsfield_mae_per_tissue"
    out = outcome(name, metrics.hounsfield_mae_per_tissue, true, pred, classes,
                  num_classes=num_classes)
    if out is None:
        return
    assert kind in ("random", "int", "no bone", "float64 huge"), f"{name} accepted {kind} CTs"
    assert ck in ("random", "one class", "too large")
    per_class, body, voxels = out
    assert per_class.shape == voxels.shape == (num_classes,)
    error = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))
    assert np.all(np.isfinite(per_class) == (voxels > 0)), "NaN only for an empty class"
    for c in range(num_classes):
        assert voxels[c] == np.count_nonzero(classes == c)
        if voxels[c]:
            np.testing.assert_allclose(per_class[c], error[classes == c].mean(), rtol=1e-12)
    inside = classes > 0
    if inside.any():
        np.testing.assert_allclose(body, error[inside].mean(), rtol=1e-12)
    else:
        assert np.isnan(body)


@given(kind=st.sampled_from(CT_KINDS),
       threshold=st.sampled_from([200.0, -1000, 0, 1e30, float("nan"), float("inf"), "200",
                                  None, True]),
       seed=st.integers(0, 2**16))
def test_bone_dice_answers_or_refuses(kind, threshold, seed):
    true, pred = ct_pair(kind, seed)
    name = "mskjax.metrics.bone_dice"
    out = outcome(name, metrics.bone_dice, true, pred, threshold=threshold)
    if out is None:
        return
    assert kind in ("random", "int", "no bone", "float64 huge"), f"{name} accepted {kind} CTs"
    a = np.asarray(true, np.float64) >= threshold
    b = np.asarray(pred, np.float64) >= threshold
    if not a.any() and not b.any():
        assert np.isnan(out), "bone_dice: no bone in either map is documented as NaN"
        return
    assert out == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()), rel=1e-12)


# ------------------------------------------------------------------ affine projection

N = 6


def matrix_of(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, N)).astype(np.float32)
    if kind == "zero":
        return a * 0
    if kind == "rank one":
        return np.outer(rng.standard_normal(3), rng.standard_normal(N)).astype(np.float32)
    if kind == "nan":
        a[1, 2] = np.nan
    if kind == "complex":
        return (a + 1j * rng.standard_normal((3, N))).astype(np.complex64)
    return a


def point_of(kind: str, size: int, seed: int):
    v = np.random.default_rng(seed + 3).standard_normal(size).astype(np.float32)
    return jnp.asarray({"random": v, "zeros": v * 0, "huge": v * np.float32(1e30),
                        "tiny": v * np.float32(1e-30),
                        "nan": np.where(np.arange(size) == 1, np.nan, v)}[kind])


PROJECT_JIT = jax.jit(lambda m, x, y: solvers.affine_projection(linop.Matrix(m), x, y))


@given(mk=st.sampled_from(["random", "zero", "rank one", "nan", "complex"]),
       xk=st.sampled_from(["random", "zeros", "huge", "tiny", "nan"]),
       yk=st.sampled_from(["random", "zeros", "huge", "tiny", "nan", "consistent"]),
       seed=st.integers(0, 2**16))
def test_affine_projection_jitted_answers_or_says_why_not(mk, xk, yk, seed):
    check_projection(mk, xk, yk, True, seed)


@pytest.mark.parametrize(("mk", "xk", "yk"), [("random", "random", "consistent"),
                                              ("rank one", "tiny", "random"),
                                              ("zero", "random", "zeros"),
                                              ("complex", "huge", "random")])
def test_affine_projection_eager_answers_or_says_why_not(mk, xk, yk):
    check_projection(mk, xk, yk, False, 0)


def check_projection(mk, xk, yk, jit, seed):
    m = matrix_of(mk, seed)
    x = point_of(xk, N, seed)
    y = (jnp.asarray(m @ np.asarray(point_of("random", N, seed + 1), m.dtype))
         if yk == "consistent" else point_of(yk, 3, seed))
    name = "mskjax.solvers.affine_projection"
    if jit:
        res = PROJECT_JIT(m, x, y)
    else:
        res = outcome(name, solvers.affine_projection, linop.Matrix(m), x, y, max_iter=30)
    assert res is not None, f"{name} refused valid input"
    status, p = int(res.status), np.asarray(res.x)
    assert status in (0, 1, 2, 3), f"{name}: unknown status {status}"
    if not all(np.all(np.isfinite(np.asarray(v))) for v in (m, x, y)):
        assert status == 3 or not np.all(np.isfinite(p)), f"{name} hid non-finite input"
        return
    if status in (0, 1):
        assert np.all(np.isfinite(p)), f"{name} returned NaN with status {status}"
    if status == 0 and mk in ("random", "complex") and "huge" not in (xk, yk):
        # full row rank: A P(x) = y, and the correction lies in the range of A^H
        scale = max(float(np.linalg.norm(np.asarray(y))), float(np.linalg.norm(m @ np.asarray(x))),
                    1e-37)
        np.testing.assert_allclose(m @ p / scale, np.asarray(y) / scale, atol=1e-3)
        d = p - np.asarray(x)
        null = np.linalg.svd(m)[2][3:]  # conj(rows) span the null space of m
        assert np.linalg.norm(null @ d) <= 1e-3 * max(np.linalg.norm(d), 1e-37)
    if mk == "zero" and status in (0, 1):
        np.testing.assert_allclose(p, np.asarray(x), rtol=1e-6), "zero operator moved x"


PROJECTION_BAD = [{"operator": None}, {"operator": "A"}, {"operator": np.eye(N)},
                  {"x": np.ones(N, np.int32)}, {"x": jnp.ones(N + 1)}, {"x": [1.0] * N},
                  {"x": None}, {"y": jnp.ones(4)}, {"y": np.ones(3, bool)}, {"max_iter": 0},
                  {"max_iter": 2.5}, {"tol": -1.0}, {"tol": float("nan")}, {"tol": "0"},
                  {"implicit": 1}, {"implicit": None}]


@pytest.mark.parametrize("kwargs", PROJECTION_BAD, ids=repr)
def test_affine_projection_bad_arguments_give_a_clean_error(kwargs):
    kw = {"operator": linop.Matrix(matrix_of("random", 0)), "x": point_of("random", N, 0),
          "y": point_of("random", 3, 0), **kwargs}
    operator, x, y = kw.pop("operator"), kw.pop("x"), kw.pop("y")
    with pytest.raises((ValueError, TypeError), match="^mskjax.solvers.affine_projection:"):
        solvers.affine_projection(operator, x, y, **kw)


# ------------------------------------------------------------------ sharpness

def image_of(kind: str, shape, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32)
    if kind == "zeros":
        return x * 0
    if kind == "constant":
        return np.full(shape, 3.0, np.float32)
    if kind == "nan" and x.size:
        x.flat[seed % x.size] = np.nan
    elif kind == "inf" and x.size:
        x.flat[seed % x.size] = np.inf
    elif kind == "huge":
        return x * np.float32(1e30)
    elif kind == "tiny":
        return x * np.float32(1e-30)
    elif kind == "int":
        return (10 * x).astype(np.int32)
    elif kind == "complex":
        return x.astype(np.complex64)
    elif kind == "bool":
        return x > 0.5
    return x


IMAGE_KINDS = ["random", "zeros", "constant", "nan", "inf", "huge", "tiny", "int", "complex",
               "bool"]
IMAGE_SHAPES = [(8, 8), (2, 8, 8), (1, 8), (8,), (0, 8, 8), (8, 1)]


def numpy_high_frequency_energy(x, cutoff):
    x = np.asarray(x, np.float64)
    power = np.abs(np.fft.fft2(x)) ** 2
    ky = np.fft.fftfreq(x.shape[-2])[:, None]
    kx = np.fft.fftfreq(x.shape[-1])[None, :]
    return power[..., np.sqrt(ky ** 2 + kx ** 2) > cutoff].sum() / power.sum()


def numpy_gradient_entropy(x):
    x = np.asarray(x, np.float64)
    g = np.hypot(x[..., 1:, :-1] - x[..., :-1, :-1], x[..., :-1, 1:] - x[..., :-1, :-1])
    h = g / g.sum()
    h = h[h > 0]
    return -np.sum(h * np.log(h))


SHARPNESS = ["high_frequency_energy", "gradient_entropy"]


@pytest.mark.parametrize("measure", SHARPNESS)
@given(kind=st.sampled_from(IMAGE_KINDS), shape=st.sampled_from(IMAGE_SHAPES),
       cutoff=st.sampled_from([0.25, 0.1, 0.7, 0, -1.0, 0.8, float("nan"), "0.25", None]),
       seed=st.integers(0, 2**16))
def test_sharpness_answers_or_refuses(measure, kind, shape, cutoff, seed):
    image = image_of(kind, shape, seed)
    name = f"mskjax.metrics.{measure}"
    if measure == "gradient_entropy":
        out = outcome(name, metrics.gradient_entropy, image)
    else:
        out = outcome(name, metrics.high_frequency_energy, image, cutoff=cutoff)
    if out is None:
        return
    allowed = ("random", "huge", "tiny", "nan", "inf") + (
        ("constant",) if measure == "high_frequency_energy" else ())
    assert kind in allowed, f"{name} accepted a {kind} image"
    assert len(shape) >= 2 and min(shape[-2:]) >= 2 and 0 not in shape
    value = float(out)
    if kind in ("nan", "inf"):
        corner = np.zeros(shape, bool)
        corner[..., -1, -1] = True  # the one pixel no forward difference reads
        if measure == "gradient_entropy" and np.all(np.isfinite(image[~corner])):
            assert np.isfinite(value)
        else:
            assert not np.isfinite(value), f"{name} hid a non-finite image"
        return
    assert np.isfinite(value), f"{name} returned {value} for a finite image"
    if measure == "gradient_entropy":
        expected = numpy_gradient_entropy(image)
    else:
        assert 0 < cutoff < 0.5 * np.sqrt(2)
        expected = numpy_high_frequency_energy(image, cutoff)
    assert value == pytest.approx(expected, rel=1e-4, abs=1e-6)


SHARP_JIT = {"high_frequency_energy": jax.jit(metrics.high_frequency_energy),
             "gradient_entropy": jax.jit(metrics.gradient_entropy)}


@pytest.mark.parametrize("measure", SHARPNESS)
@given(kind=st.sampled_from(["random", "zeros", "constant", "nan", "inf", "huge", "tiny"]),
       seed=st.integers(0, 2**16))
def test_sharpness_jitted_is_nan_only_when_undefined(measure, kind, seed):
    image = image_of(kind, (8, 8), seed)
    value = float(SHARP_JIT[measure](image))
    undefined = kind in ("nan", "inf", "zeros") or (kind == "constant"
                                                    and measure == "gradient_entropy")
    if undefined:
        assert np.isnan(value), f"{measure} under jit gave {value} for a {kind} image"
    else:
        assert np.isfinite(value), f"{measure} under jit gave {value} for a {kind} image"


RATIO_JIT = jax.jit(metrics.high_frequency_energy_ratio)


@given(tk=st.sampled_from(["random", "zeros", "constant", "nan", "huge", "tiny", "int",
                           "complex"]),
       ik=st.sampled_from(["random", "zeros", "nan", "inf", "huge", "tiny", "shape", "int"]),
       jit=st.booleans(), seed=st.integers(0, 2**16))
def test_high_frequency_energy_ratio_answers_or_refuses(tk, ik, jit, seed):
    target = image_of(tk, (8, 8), seed)
    image = image_of("random" if ik == "shape" else ik, (8, 6) if ik == "shape" else (8, 8),
                     seed + 1)
    name = "mskjax.metrics.high_frequency_energy_ratio"
    real = tk not in ("int", "complex") and ik not in ("int", "shape")
    if jit and real:
        value = float(RATIO_JIT(target, image))
        if tk in ("zeros", "constant", "nan") or ik in ("zeros", "nan", "inf"):
            assert np.isnan(value), f"{name} under jit gave {value} for {tk} / {ik}"
        else:
            assert np.isfinite(value)
        return
    out = outcome(name, metrics.high_frequency_energy_ratio, target, image)
    if out is None:
        return
    if tk == "nan" or ik in ("nan", "inf"):
        assert real and np.isnan(float(out)), f"{name} hid a non-finite input"
        return
    assert real and tk in ("random", "huge", "tiny") and ik in ("random", "huge", "tiny"), (
        f"{name} accepted a {tk} target and a {ik} image")
    expected = (numpy_high_frequency_energy(image, 0.25)
                / numpy_high_frequency_energy(target, 0.25))
    assert float(out) == pytest.approx(expected, rel=1e-4)
