"""On-device augmentation and undersampling of training examples (mskjax.train._augment)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import birdcage_maps
from mskjax.io._kspace_set import centre_crop_or_pad
from mskjax.sampling import equispaced_mask, random_mask
from mskjax.sim import smooth_phase
from mskjax.train import (
    ReconExample,
    augment_recon_example,
    draw_equispaced_mask,
    draw_random_mask,
    fastmri_eval_example,
)
from mskjax.train._augment import _rotated_birdcage, _smooth_phase
from tests.conftest import random_complex

OFF = dict(flip=None, phase=None, coils=False, noise_snr_db=None, scale=None)
DEFAULT = dict(acceleration=4, center_fraction=0.08)  # every augmentation on, by default
FULL = dict(acceleration=1, center_fraction=0.1)  # every line sampled


def ifft2c_np(k):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                           axes=(-2, -1))


def fft2c_np(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"),
                           axes=(-2, -1))


def rss_np(k):
    return np.sqrt(np.sum(np.abs(ifft2c_np(k)) ** 2, axis=0))


def keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


#: Times each options' batched function was traced (a retrace would be a recompilation).
TRACES: dict = {}


@functools.lru_cache
def _batched(options):
    def one(key, kspace):
        TRACES[options] = TRACES.get(options, 0) + 1  # runs while tracing only
        return augment_recon_example(key, kspace, **dict(options))

    return jax.jit(jax.vmap(one))


def augment_many(kspace, n, seed=0, **options):
    """``augment_recon_example`` for ``n`` keys (one compilation per options), as numpy.

    ``kspace`` is one example (used for every key) or a batch of ``n``.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim == 3:
        kspace = np.broadcast_to(kspace, (n, *kspace.shape))
    f = _batched(tuple(sorted(options.items())))
    return jax.tree.map(np.asarray, f(keys(n, seed), kspace))


@pytest.fixture
def kspace(rng):
    """A small example with odd rows, so flips of odd and even axes are both checked."""
    return random_complex(rng, (3, 15, 12))


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("shape, acceleration, center_fraction", [
    ((4, 9, 372), 4, 0.08), ((4, 9, 372), 8, 0.04), ((2, 16, 33), 3, 0.08), ((320,), 2, 0.04),
    ((2, 16, 33), 5, 0.2)])
def test_equispaced_draws_are_the_host_mask_for_every_offset(shape, acceleration,
                                                             center_fraction):
    options = dict(center_fraction=center_fraction, acceleration=acceleration)
    draw = jax.vmap(lambda k: draw_equispaced_mask(k, shape, **options)[0])
    drawn = np.asarray(draw(keys(96)))
    host = {o: equispaced_mask(shape, offset=o, **options) for o in range(acceleration)}
    seen = []
    for mask in drawn:
        matches = [o for o, (want, _) in host.items() if np.array_equal(mask, want)]
        assert len(matches) == 1, mask
        seen.append(matches[0])
    # every offset in [0, acceleration) is drawn, none more than chance allows
    counts = np.bincount(seen, minlength=acceleration)
    assert counts.min() > 0 and counts.max() < 96 * 2.5 / acceleration
    assert draw_equispaced_mask(keys(1)[0], shape, **options)[1] == host[0][1]
    # the acceleration: one line in `acceleration` outside the centre, and the centre is full
    _, num_low = host[0]
    centre = slice((shape[-1] - num_low + 1) // 2, (shape[-1] - num_low + 1) // 2 + num_low)
    assert drawn[:, centre].all()
    assert num_low == round(shape[-1] * center_fraction)


def test_random_mask_keeps_lines_with_fastmri_probability():
    shape, options = (2, 8, 200), dict(center_fraction=0.08, acceleration=4)
    drawn = np.asarray(jax.jit(jax.vmap(
        lambda k: draw_random_mask(k, shape, **options)[0]))(keys(2000)))
    _, num_low = random_mask(shape, seed=0, **options)
    assert draw_random_mask(keys(1)[0], shape, **options)[1] == num_low == 16
    centre = np.zeros(200, bool)
    centre[(200 - num_low + 1) // 2:][:num_low] = True
    assert drawn[:, centre].all()
    probability = (200 / 4 - num_low) / (200 - num_low)
    outer = drawn[:, ~centre]
    # the mean over 2000 x 184 Bernoulli draws; its standard deviation is about 0.0007
    assert abs(outer.mean() - probability) < 0.003
    # lines are independent of their position: every column near the same frequency
    assert np.abs(outer.mean(axis=0) - probability).max() < 0.05
    assert abs(drawn.sum(axis=1).mean() - 200 / 4) < 0.5
    assert len({m.tobytes() for m in drawn[:20]}) == 20


def test_mask_arguments_are_checked():
    with pytest.raises(ValueError, match="draw_equispaced_mask: acceleration must be an integer"):
        draw_equispaced_mask(keys(1)[0], (8, 32), center_fraction=0.1, acceleration=2.5)
    with pytest.raises(ValueError, match="draw_random_mask: center_fraction"):
        draw_random_mask(keys(1)[0], (8, 32), center_fraction=1.5, acceleration=4)
    with pytest.raises(ValueError, match="draw_random_mask: shape"):
        draw_random_mask(keys(1)[0], (8, 0), center_fraction=0.1, acceleration=4)


# --------------------------------------------------------------------------- the whole example


def test_compiles_once_and_new_keys_draw_new_examples(kspace):
    options = tuple(sorted(DEFAULT.items()))
    out = augment_many(kspace, 8, **DEFAULT)
    again = augment_many(kspace, 8, seed=1, **DEFAULT)
    # Traced once for all keys. (jit's own cache count is not used: in the full suite it read
    # 0 right after two calls; JAX keeps one process-wide LRU cache of jitted functions.)
    assert TRACES[options] == 1
    assert isinstance(out, ReconExample)
    assert out.kspace.shape == (8, *kspace.shape) and out.kspace.dtype == jnp.complex64
    assert out.mask.shape == (8, 12) and out.mask.dtype == jnp.bool_
    assert out.target.shape == (8, 15, 12) and out.target.dtype == jnp.float32
    assert np.all(np.asarray(out.extra["num_low_frequencies"]) == 1)
    assert len({np.asarray(m).tobytes() for m in out.mask}) > 1
    assert not np.allclose(out.target, again.target)
    assert not np.allclose(out.target[0], out.target[1])
    # everything on: unsampled entries exactly zero, sampled ones not
    masked = np.asarray(out.kspace)
    for example, mask in zip(masked, np.asarray(out.mask)):
        assert np.all(example[..., ~mask] == 0) and np.all(example[..., mask] != 0)


def test_all_augmentations_off_is_the_host_mask(kspace):
    out = augment_many(kspace, 12, acceleration=3, center_fraction=0.25, **OFF)
    host = [equispaced_mask(kspace.shape, center_fraction=0.25, acceleration=3, offset=o)[0]
            for o in range(3)]
    for example_kspace, mask in zip(out.kspace, out.mask):
        assert any(np.array_equal(mask, h) for h in host)
        np.testing.assert_array_equal(example_kspace,
                                      np.where(mask, kspace, np.complex64(0)))
    np.testing.assert_allclose(out.target[0], rss_np(kspace), rtol=1e-5, atol=1e-6)
    assert np.all(out.extra["noise_std"] == 0)


def test_switching_one_augmentation_off_leaves_the_other_draws(kspace):
    with_coils = augment_many(kspace, 8, **DEFAULT)
    without = augment_many(kspace, 8, coils=False, **DEFAULT)
    np.testing.assert_array_equal(with_coils.mask, without.mask)
    # the phase, flip, scale and noise are the same draws; only the coil sensitivities differ
    np.testing.assert_allclose(with_coils.target, without.target, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(with_coils.extra["noise_std"], without.extra["noise_std"],
                               rtol=1e-4)
    assert not np.allclose(with_coils.kspace, without.kspace, atol=1e-3)


def test_flip_is_an_exact_image_flip(kspace):
    out = augment_many(kspace, 16, **{**OFF, "flip": "both"}, **FULL)
    assert out.mask.all()
    images, target = ifft2c_np(kspace), rss_np(kspace)
    seen = set()
    for example_kspace, example_target in zip(out.kspace, out.target):
        matches = [(r, c) for r in (False, True) for c in (False, True)
                   if np.allclose(example_kspace, fft2c_np(
                       images[:, ::-1 if r else 1, ::-1 if c else 1]), atol=2e-5)]
        assert len(matches) == 1
        r, c = matches[0]
        seen.add(matches[0])
        np.testing.assert_allclose(example_target, target[::-1 if r else 1, ::-1 if c else 1],
                                   rtol=1e-5, atol=2e-6)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}
    # the same key flips the same axes again: the input comes back
    twice = augment_many(out.kspace, 16, **{**OFF, "flip": "both"}, **FULL).kspace
    np.testing.assert_allclose(twice, np.stack([kspace] * 16), atol=2e-5)


def test_columns_only(kspace):
    out = augment_many(kspace, 8, **{**OFF, "flip": "columns"}, **FULL)
    flipped = fft2c_np(ifft2c_np(kspace)[:, :, ::-1])
    same = [np.allclose(k, kspace, atol=2e-5) for k in out.kspace]
    assert any(same) and not all(same)
    for example_kspace, unchanged in zip(out.kspace, same):
        assert unchanged or np.allclose(example_kspace, flipped, atol=2e-5)


def test_new_coils_keep_the_rss_image(kspace):
    out = augment_many(kspace, 4, **{**OFF, "coils": True}, **FULL)
    target = rss_np(kspace)
    for example_kspace, example_target in zip(out.kspace, out.target):
        np.testing.assert_allclose(example_target, target, rtol=1e-5, atol=1e-5)
        images = ifft2c_np(example_kspace)
        np.testing.assert_allclose(np.sqrt(np.sum(np.abs(images) ** 2, axis=0)), target,
                                   rtol=1e-4, atol=1e-5)
        assert not np.allclose(images, ifft2c_np(kspace), atol=1e-2)
    # each draw is a different ring (rotation and radius), so different coil images
    assert not np.allclose(out.kspace[0], out.kspace[1], atol=1e-3)


def test_rotated_birdcage_is_the_library_model():
    maps = jax.jit(_rotated_birdcage, static_argnums=(0, 1, 2))
    np.testing.assert_allclose(maps(6, 20, 17, 1.5, 0.0),
                               birdcage_maps((6, 20, 17), radius=1.5), atol=2e-6)
    np.testing.assert_allclose(maps(4, 16, 16, 2.0, 0.0),
                               birdcage_maps((4, 16, 16), radius=2.0), atol=2e-6)
    # rotating the ring by one coil spacing relabels the coils (up to a constant phase each)
    rotated = np.asarray(maps(4, 16, 16, 2.0, np.pi / 2))
    base = np.asarray(maps(4, 16, 16, 2.0, 0.0))
    np.testing.assert_allclose(np.abs(rotated[:3]), np.abs(base[1:]), atol=2e-6)
    np.testing.assert_allclose(np.sum(np.abs(rotated) ** 2, axis=0), 1, atol=1e-5)


def test_smooth_phase_is_the_library_model():
    key = jax.random.key(7)
    ours = jax.jit(_smooth_phase, static_argnums=(1, 2))(key, 12, 9)
    np.testing.assert_allclose(ours, jax.jit(smooth_phase, static_argnums=1)(key, (12, 9)),
                               atol=1e-6)


@pytest.mark.parametrize("phase", ["global", "smooth"])
def test_phase_is_common_to_the_coils(kspace, phase):
    out = augment_many(kspace, 3, **{**OFF, "phase": phase}, **FULL)
    images = ifft2c_np(kspace)
    for example_kspace, example_target in zip(out.kspace, out.target):
        ratio = ifft2c_np(example_kspace) / images
        np.testing.assert_allclose(np.abs(ratio), 1, atol=1e-3)
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), atol=1e-3)
        varies = np.ptp(np.angle(ratio[0] / ratio[0, 7, 6]))
        assert (varies > 0.05) == (phase == "smooth")
        np.testing.assert_allclose(example_target, rss_np(kspace), rtol=1e-5, atol=1e-5)


def test_noise_at_the_stated_snr(rng):
    kspace = random_complex(rng, (4, 128, 128)) / 100 + fft2c_np(
        np.broadcast_to(np.pad(np.ones((64, 64)), 32), (4, 128, 128))).astype(np.complex64)
    options = dict(**{**OFF}, **FULL)
    noisy = augment_many(kspace, 2, **{**options, "noise_snr_db": (30.0, 30.0)})
    target = rss_np(kspace)  # without added noise the example is the input (tested above)
    signal = target[target > 0.1 * target.max()].mean()
    noise = noisy.kspace - kspace
    for i in range(2):
        expected = signal / 10 ** 1.5
        np.testing.assert_allclose(noisy.extra["noise_std"][i], expected, rtol=1e-4)
        measured = np.sqrt(np.mean(np.abs(noise[i]) ** 2))
        assert abs(measured / expected - 1) < 0.02
        # circular: real and imaginary parts each carry half the power, uncorrelated
        assert abs(np.var(noise[i].real) / np.var(noise[i].imag) - 1) < 0.03
        assert abs(np.corrcoef(noise[i].real.ravel(), noise[i].imag.ravel())[0, 1]) < 0.02
    np.testing.assert_allclose(noisy.target[0], target, rtol=1e-4, atol=1e-4)  # noise-free
    assert not np.allclose(noise[0], noise[1])
    # a range: every draw inside it
    ranged = augment_many(kspace[:, :16, :16], 64, **{**options, "noise_snr_db": (20.0, 40.0)})
    snr = 20 * np.log10(
        (lambda t: t[t > 0.1 * t.max()].mean())(ranged.target[0]) / ranged.extra["noise_std"])
    assert snr.min() >= 20 - 1e-3 and snr.max() <= 40 + 1e-3 and np.ptp(snr) > 10


def test_scale_is_log_uniform(kspace):
    out = augment_many(kspace, 64, **{**OFF, "scale": (0.5, 2.0)}, **FULL)
    factors = out.kspace[:, 0, 7, 6] / kspace[0, 7, 6]
    np.testing.assert_allclose(factors.imag, 0, atol=1e-4)
    factors = factors.real
    assert factors.min() >= 0.5 - 1e-5 and factors.max() <= 2 + 1e-5
    assert abs(np.mean(np.log2(factors))) < 0.2 and np.ptp(np.log2(factors)) > 1.5
    for example_kspace, example_target, s in zip(out.kspace, out.target, factors):
        np.testing.assert_allclose(example_kspace, s * kspace, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(example_target, s * rss_np(kspace), rtol=1e-4, atol=1e-5)


def test_target_crop_is_fastmri_centre_crop_and_pads_like_make_kspace_set(kspace):
    transforms = pytest.importorskip("fastmri.data.transforms")
    import torch

    target = rss_np(kspace).astype(np.float32)
    cropped = augment_many(kspace, 1, crop=(8, 7), **OFF, **FULL).target[0]
    want = transforms.center_crop(torch.from_numpy(target), (8, 7)).numpy()
    np.testing.assert_allclose(cropped, want, rtol=1e-5, atol=1e-6)
    padded = augment_many(kspace, 1, crop=(20, 9), **OFF, **FULL).target[0]
    np.testing.assert_allclose(padded, centre_crop_or_pad(target, (20, 9)), rtol=1e-5,
                               atol=1e-6)


def test_options_are_checked(kspace):
    run = functools.partial(augment_recon_example, jax.random.key(0), kspace, **FULL)
    for bad, match in [(dict(flip="diagonal"), "flip must be"),
                       (dict(phase=True), "phase must be"),
                       (dict(mask="poisson"), "mask must be"),
                       (dict(scale=(2.0, 0.5)), "scale must be"),
                       (dict(scale=(0.0, 1.0)), "scale must be"),
                       (dict(noise_snr_db=30), "noise_snr_db must be"),
                       (dict(coil_radius=(1.5,)), "coil_radius must be"),
                       (dict(coils="yes"), "coils must be"),
                       (dict(crop=(0, 4)), "crop must be")]:
        with pytest.raises(ValueError, match=f"mskjax.train.augment_recon_example: {match}"):
            run(**bad)
    with pytest.raises(ValueError, match="augment_recon_example: kspace must be"):
        augment_recon_example(jax.random.key(0), kspace[0], **FULL)
    with pytest.raises(TypeError, match="augment_recon_example: kspace must be complex"):
        augment_recon_example(jax.random.key(0), np.abs(kspace), **FULL)


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("mask, family", [("equispaced", "EquiSpacedMaskFunc"),
                                          ("random", "RandomMaskFunc")])
def test_eval_example_uses_fastmri_mask_for_the_file(rng, mask, family):
    subsample = pytest.importorskip("fastmri.data.subsample")
    kspace = random_complex(rng, (2, 10, 64))
    fname = "file1000001.h5"
    out = fastmri_eval_example(kspace, fname=fname, acceleration=4, center_fraction=0.08,
                               mask=mask, crop=(8, 8))
    want, num_low = getattr(subsample, family)([0.08], [4])(
        (*kspace.shape, 2), seed=tuple(map(ord, fname)))
    want = want.numpy().reshape(-1).astype(bool)
    np.testing.assert_array_equal(out.mask, want)
    assert int(out.extra["num_low_frequencies"]) == num_low
    np.testing.assert_array_equal(out.kspace, np.where(want, kspace, 0))
    np.testing.assert_allclose(out.target, centre_crop_or_pad(rss_np(kspace), (8, 8)),
                               rtol=1e-5, atol=1e-6)
    other = fastmri_eval_example(kspace, fname="file1000002.h5", acceleration=4,
                                 center_fraction=0.08, mask=mask)
    assert not np.array_equal(other.mask, out.mask)
    # the same pytree structure as a training example, so one jitted step takes both
    train = jax.eval_shape(functools.partial(augment_recon_example, acceleration=4,
                                             center_fraction=0.08, crop=(8, 8)),
                           jax.random.key(0), kspace)
    assert jax.tree.structure(train) == jax.tree.structure(out)
    with pytest.raises(ValueError, match="fastmri_eval_example: fname"):
        fastmri_eval_example(kspace, fname="", acceleration=4, center_fraction=0.08)
