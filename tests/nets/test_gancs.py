"""GANCSGenerator: data consistency after the projection, the residual path, scale
equivariance, vmap, gradients, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.fourier import fft2c, ifft2c
from mskjax.linop import Sense
from mskjax.nets import GANCSGenerator
from mskjax.nets._varnet import from_channels, to_channels
from mskjax.sim import knee_section
from tests.conftest import random_complex

SHAPE = (24, 20)
COILS = 4


@functools.lru_cache
def problem(seed=0):
    rng = np.random.default_rng(seed)
    image = (knee_section(SHAPE) * np.exp(0.4j)).astype(np.complex64)
    image = image + 0.05 * random_complex(rng, SHAPE)
    maps = np.asarray(normalize_maps(birdcage_maps((COILS, *SHAPE)))).astype(np.complex64)
    mask = np.zeros(SHAPE[1], bool)
    mask[::3] = True
    mask[8:12] = True
    kspace = np.asarray(Sense(maps, mask=mask)(image))
    return kspace, mask, maps


def small_net(seed=0, **options):
    options = {"num_blocks": 2, "features": 8, "cg_iterations": 30} | options
    return GANCSGenerator(**options, rngs=nnx.Rngs(seed))


def run(net, kspace, mask, maps):
    """``net(kspace, mask, maps)`` jitted."""
    graphdef, state = nnx.split(net)
    return jax.jit(lambda st, k: nnx.merge(graphdef, st)(k, mask, maps))(state, kspace)


def perturbed(net, seed=1):
    """The net with random (not near-identity) weights, so its residual path matters."""
    graphdef, state = nnx.split(net)
    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype)
              for k, leaf in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree_util.tree_unflatten(tree, leaves))


def test_output_is_consistent_with_the_data():
    kspace, mask, maps = problem()
    net = perturbed(small_net(cg_iterations=100))
    image = run(net, kspace, mask, maps)
    assert image.shape == SHAPE and image.dtype == np.complex64
    operator = Sense(maps, mask=mask)
    # Without the projection the same net is far from consistent.
    free = perturbed(small_net(projection=False))
    before = np.linalg.norm(np.asarray(operator(run(free, kspace, mask, maps))) - kspace)
    assert before / np.linalg.norm(kspace) > 1
    # After it, consistent to float32 round-off of the correction's size.
    after = np.linalg.norm(np.asarray(operator(image)) - kspace)
    assert after / before < 2e-5


def test_residual_path_and_projection_by_hand():
    # projection=False returns s * (x0 + N(x0)) with x0 = A^H y / s; with one coil of unit
    # map the projection is the closed form F^H((1 - M) F z + y).
    rng = np.random.default_rng(3)
    maps = np.ones((1, *SHAPE), np.complex64)
    mask = np.zeros(SHAPE, bool)
    mask[:, ::2] = True
    kspace = np.asarray(Sense(maps, mask=mask)(random_complex(rng, SHAPE)))
    net = perturbed(small_net(projection=False))
    adjoint = np.asarray(ifft2c(mask * kspace[0]))
    scale = np.quantile(np.abs(adjoint), 0.99)
    z = np.asarray(from_channels(net.residual(to_channels(jnp.asarray(adjoint / scale))))) * scale
    out = np.asarray(net(kspace, mask, maps))
    np.testing.assert_allclose(out, z, rtol=1e-4, atol=1e-4 * np.abs(z).max())
    projected = perturbed(small_net(projection=True))
    expected = np.asarray(ifft2c((1 - mask) * fft2c(jnp.asarray(z)) + kspace[0]))
    np.testing.assert_allclose(np.asarray(run(projected, kspace, mask, maps)), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


@pytest.mark.slow
def test_scale_equivariance_and_vmap():
    kspace, mask, maps = problem()
    net = perturbed(small_net(), seed=2)
    graphdef, state = nnx.split(net)

    @jax.jit
    def run(k):
        return nnx.merge(graphdef, state)(k, mask, maps)

    one = np.asarray(run(kspace))
    # Equal up to float32 round-off, amplified by the random ReLU net and the CG stopping test.
    error = np.abs(np.asarray(run(1000.0 * kspace)) - 1000.0 * one).max()
    assert error < 1e-2 * 1000 * np.abs(one).max()
    assert np.abs(one).max() > 0
    batch = jax.vmap(lambda k: nnx.merge(graphdef, state)(k, mask, maps))(
        jnp.stack([kspace, 2 * kspace]))
    np.testing.assert_allclose(np.asarray(batch[0]), one, rtol=0,
                               atol=1e-3 * np.abs(one).max())
    np.testing.assert_allclose(np.asarray(batch[1]), np.asarray(run(2 * kspace)), rtol=0,
                               atol=2e-3 * np.abs(one).max())


def test_gradients_are_finite_and_reach_every_layer():
    kspace, mask, maps = problem()
    net = small_net()
    graphdef, params = nnx.split(net, nnx.Param)
    target = np.abs(np.asarray(knee_section(SHAPE)))

    def loss(p):
        image = nnx.merge(graphdef, p)(kspace, mask, maps)
        return jnp.mean((jnp.abs(image) - target) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) >= len(norms) - 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_blocks": -1}, ValueError, "num_blocks must be an integer >= 0"),
    ({"features": 0}, ValueError, "features must be an integer >= 1"),
    ({"kernel_size": 4}, ValueError, "kernel_size must be odd"),
    ({"cg_iterations": 0}, ValueError, "cg_iterations must be an integer >= 1"),
    ({"projection": "yes"}, TypeError, "projection must be a bool"),
    ({"implicit": 1}, TypeError, "implicit must be a bool"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match="mskjax.nets.GANCSGenerator: " + match):
        small_net(**kwargs)


def test_bad_inputs():
    kspace, mask, maps = problem()
    net = small_net()
    with pytest.raises(ValueError, match="GANCSGenerator: kspace must be \\(coils, rows, cols"):
        net(kspace[0], mask, maps)
    with pytest.raises(ValueError, match="GANCSGenerator: maps must have the k-space shape"):
        net(kspace, mask, maps[:2])
    with pytest.raises(ValueError, match="GANCSGenerator: mask is required"):
        net(kspace, None, maps)
    with pytest.raises(TypeError, match="GANCSGenerator"):
        net(np.abs(kspace), mask, maps)
