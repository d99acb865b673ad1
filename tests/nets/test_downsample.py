"""Strided convolution and max pooling of the backbones against PyTorch's, values and gradients,
in 1, 2 and 3 spatial axes (the 3D convolution takes the space-to-depth path on CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.nets._downsample import conv_strided, max_pool, out_size

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-5


def assert_close(out, ref, rtol=RTOL):
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = np.abs(out - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max abs diff {err}, max |ref| {np.abs(ref).max()}"


def channels_first(x):
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy()).requires_grad_(True)


def channels_last(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
SPATIAL = {1: (23,), 2: (13, 16), 3: (9, 8, 11)}


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("window,stride,padding", [(7, 2, 3), (3, 2, 1), (1, 2, 0), (3, 3, 0)])
def test_conv_strided_equals_torch_values_and_gradients(ndim, window, stride, padding):
    rng = np.random.default_rng(ndim * 10 + window)
    x = rng.standard_normal((2, *SPATIAL[ndim], 3)).astype(np.float32)
    kernel = rng.standard_normal((window,) * ndim + (3, 5)).astype(np.float32)
    tx = channels_first(x)
    tk = torch.from_numpy(np.transpose(kernel, (ndim + 1, ndim, *range(ndim))).copy())
    tk.requires_grad_(True)
    ref = TORCH_CONV[ndim](tx, tk, stride=stride, padding=padding)
    cotangent = rng.standard_normal(ref.shape).astype(np.float32)
    (ref * torch.from_numpy(cotangent)).sum().backward()

    def loss(x, kernel):
        out = conv_strided(x, kernel, stride=stride, padding=padding)
        return jnp.sum(out * jnp.moveaxis(cotangent, 1, -1)), out

    (_, out), (gx, gk) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        jnp.asarray(x), jnp.asarray(kernel))
    assert out.shape[1:-1] == tuple(out_size(n, window, stride, padding)
                                    for n in SPATIAL[ndim])
    assert_close(out, channels_last(ref))
    assert_close(gx, channels_last(tx.grad))
    assert_close(gk, np.transpose(tk.grad.numpy(), (*range(2, ndim + 2), 1, 0)))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_max_pool_equals_torch_values_and_gradients(ndim):
    rng = np.random.default_rng(ndim)
    x = rng.standard_normal((2, *SPATIAL[ndim], 4)).astype(np.float32)
    tx = channels_first(x)
    ref = TORCH_POOL[ndim](tx, 3, stride=2, padding=1)
    cotangent = rng.standard_normal(ref.shape).astype(np.float32)
    (ref * torch.from_numpy(cotangent)).sum().backward()
    out, vjp = jax.vjp(max_pool, jnp.asarray(x))
    assert_close(out, channels_last(ref), rtol=0)
    # torch's gradient goes to each window's maximum; so does ours (random values: no ties)
    assert_close(vjp(jnp.moveaxis(jnp.asarray(cotangent), 1, -1))[0], channels_last(tx.grad))


def test_max_pool_never_takes_the_padding():
    x = -jnp.ones((1, 5, 5, 1)) * 7.0
    np.testing.assert_array_equal(max_pool(x), -7.0 * np.ones((1, 3, 3, 1)))


def test_conv_strided_rejects_a_window_larger_than_the_input():
    with pytest.raises(ValueError, match="conv_strided: a .* window with stride 2"):
        conv_strided(jnp.ones((1, 2, 2, 1)), jnp.ones((7, 7, 1, 1)), stride=2, padding=0)
