"""Sliding-window inference: tiles, Gaussian weights, and the blend against a numpy loop."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import nets
from mskjax.nets import _sliding_window as sw


def ramp_predict(tiles):
    """Not translation-equivariant: each tile's value times a ramp over the tile plus the
    tile's mean, two classes. A blend of the wrong tiles or weights shows."""
    spatial = tiles.shape[1:-1]
    ramp = sum(jnp.arange(n, dtype=jnp.float32).reshape([-1 if i == a else 1
                                                          for i in range(len(spatial))])
               for a, n in enumerate(spatial))
    x = tiles[..., 0]
    mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
    return jnp.stack([x * (1 + ramp), x + mean], axis=-1)


def brute_force(predict, volume, window, overlap, sigma_scale):
    """The blend written as a plain loop over every tile position (MONAI's placement: steps
    of int(w * (1 - overlap)), the last tile flush with the end) with the Gaussian written
    out; volumes at least as large as the window."""
    spatial = volume.shape[:-1]
    starts = []
    for n, w in zip(spatial, window):
        step = max(1, int(w * (1 - overlap)))
        axis = list(range(0, n - w + 1, step))
        if axis[-1] != n - w:
            axis.append(n - w)
        starts.append(axis)
    gauss = 1.0
    for w in window:
        i = np.arange(w) - (w - 1) / 2
        gauss = np.multiply.outer(gauss, np.exp(-i ** 2 / (2 * (sigma_scale * w) ** 2)))
    num, den = 0.0, np.zeros(spatial)
    for start in itertools.product(*starts):
        region = tuple(slice(s, s + w) for s, w in zip(start, window))
        out = np.asarray(predict(jnp.asarray(volume[region][None])))[0].astype(np.float64)
        full = np.zeros((*spatial, out.shape[-1]))
        full[region] = out * gauss[..., None]
        num = num + full
        den[region] += gauss
    return num / den[..., None]


def test_tile_starts_cover_with_the_overlap_and_end_flush():
    assert sw.tile_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert sw.tile_starts(11, 4, 0.5) == [0, 2, 4, 6, 7]
    assert sw.tile_starts(11, 4, 0.0) == [0, 4, 7]
    assert sw.tile_starts(4, 4, 0.9) == [0]
    assert sw.tile_starts(7, 5, 0.99) == [0, 1, 2]  # step at least 1
    for n, w, overlap in [(37, 8, 0.25), (50, 16, 0.5), (9, 2, 0.0)]:
        starts = sw.tile_starts(n, w, overlap)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s:s + w] = True
        assert covered.all() and starts[-1] == n - w
        assert all(b - a <= max(1, int(w * (1 - overlap))) for a, b in zip(starts, starts[1:]))


def test_gaussian_weights():
    w = sw.gaussian_weights((9, 16), 0.125)
    assert w.dtype == np.float32 and w.max() == 1
    sigma = 0.125 * 16
    # separable, centred between the two middle entries of an even axis
    assert w[4, 7] == w[4, 8] == 1
    np.testing.assert_allclose(w[4, 5], np.exp(-0.5 * (2.5 ** 2 - 0.5 ** 2) / sigma ** 2),
                               rtol=1e-6)
    np.testing.assert_allclose(w[0, 7] / w[4, 7], np.exp(-0.5 * (4 / (0.125 * 9)) ** 2),
                               rtol=1e-5)
    tiny = sw.gaussian_weights((64,), 0.01)  # would underflow to 0 at the border
    assert tiny.min() > 0
    assert (sw.gaussian_weights((3, 4), None) == 1).all()


@pytest.mark.parametrize("shape,window,overlap,batch_size",
                         [((23, 17, 1), (8, 6), 0.5, 1), ((11, 13, 10, 1), (5, 6, 4), 0.25, 3)])
def test_blend_equals_the_brute_force_loop_on_host_and_device(shape, window, overlap,
                                                               batch_size):
    volume = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    expected = brute_force(ramp_predict, volume, window, overlap, 0.125)
    predict = jax.jit(ramp_predict)
    host = sw.sliding_window_inference(predict, volume, window=window, overlap=overlap,
                                       batch_size=batch_size)
    assert isinstance(host, np.ndarray) and host.shape == (*shape[:-1], 2)
    np.testing.assert_allclose(host, expected, rtol=2e-5, atol=2e-5)
    device = jax.jit(lambda v: nets.sliding_window_inference(
        ramp_predict, v, window=window, overlap=overlap, batch_size=batch_size))(
        jnp.asarray(volume))
    np.testing.assert_allclose(device, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape,window", [((19, 14, 2), (8, 8)), ((9, 10, 7, 2), (4, 5, 3))])
def test_an_identity_net_reproduces_the_volume(shape, window):
    volume = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for v in (volume, jnp.asarray(volume)):
        out = nets.sliding_window_inference(lambda t: 2 * t, v, window=window, batch_size=2)
        np.testing.assert_allclose(out, 2 * volume, rtol=1e-6, atol=1e-6)


def test_one_window_over_the_whole_volume_is_a_direct_call_and_small_volumes_are_padded():
    volume = np.random.default_rng(1).standard_normal((12, 10, 1)).astype(np.float32)
    direct = np.asarray(ramp_predict(jnp.asarray(volume[None])))[0]
    out = nets.sliding_window_inference(ramp_predict, volume, window=(12, 10))
    np.testing.assert_allclose(out, direct, rtol=1e-6, atol=1e-6)
    # a window larger than the volume along axis 1: padded by 1 and 2 columns of pad_value
    out = nets.sliding_window_inference(ramp_predict, jnp.asarray(volume), window=(6, 13),
                                        overlap=0.0, pad_value=-1.0)
    padded = np.pad(volume, [(0, 0), (1, 2), (0, 0)], constant_values=-1.0)
    expected = np.concatenate([np.asarray(ramp_predict(jnp.asarray(padded[None, :6])))[0],
                               np.asarray(ramp_predict(jnp.asarray(padded[None, 6:])))[0]])
    np.testing.assert_allclose(out, expected[:, 1:11], rtol=1e-6, atol=1e-6)


def test_the_host_path_compiles_once_and_moves_only_tiles():
    shapes = []

    @jax.jit
    def predict(tiles):
        shapes.append(tiles.shape)  # runs once per trace
        return tiles * 3.0

    volume = np.random.default_rng(2).standard_normal((30, 21, 1)).astype(np.float32)
    out = nets.sliding_window_inference(predict, volume, window=(8, 8), batch_size=4)
    # 7 x 5 = 35 tiles in 9 batches (the last padded): one trace, of one batch of tiles
    assert shapes == [(4, 8, 8, 1)]
    np.testing.assert_allclose(out, 3 * volume, rtol=1e-6)


def test_bad_arguments():
    volume = np.zeros((8, 8, 1), np.float32)
    func = "mskjax.nets.sliding_window_inference"
    with pytest.raises(ValueError, match=f"{func}: volume must be \\(\\*spatial, channels\\)"):
        nets.sliding_window_inference(lambda t: t, volume, window=(4, 4, 4))
    with pytest.raises(ValueError, match="overlap must be in"):
        nets.sliding_window_inference(lambda t: t, volume, window=4, overlap=1.0)
    with pytest.raises(ValueError, match="window"):
        nets.sliding_window_inference(lambda t: t, volume, window=(0, 4))
    with pytest.raises(ValueError, match=r"predict must map \(batch, \*window, channels\) to"):
        nets.sliding_window_inference(lambda t: t[:, :2], volume, window=4)
    with pytest.raises(ValueError, match=r"to \(1, 4, 4, 3\)"):
        nets.sliding_window_inference(lambda t: t, jnp.asarray(volume), window=4, num_classes=3)
    with pytest.raises(TypeError, match="predict must be callable"):
        nets.sliding_window_inference(None, volume, window=4)
    with pytest.raises(TypeError, match="volume must be real"):
        nets.sliding_window_inference(lambda t: t, volume.astype(np.complex64), window=4)
