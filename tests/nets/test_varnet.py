"""VarNet: the adjoint filters, the physics of the data term, the step rule, batching, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.linop import Sense
from mskjax.nets import VarNet
from mskjax.nets._varnet import (analysis, data_gradient, project_filters, rbf_activation,
                                 synthesis)
from mskjax.pipeline import Sample
from mskjax.sim import knee_section
from tests.conftest import random_complex

SHAPE = (24, 20)
COILS = 4


@functools.lru_cache
def problem(seed=0, offset=0):
    rng = np.random.default_rng(seed)
    image = (knee_section(SHAPE) * np.exp(0.4j)).astype(np.complex64)
    image = image + 0.05 * random_complex(rng, SHAPE)
    maps = np.asarray(normalize_maps(birdcage_maps((COILS, *SHAPE))))
    mask = np.zeros(SHAPE[1], bool)
    mask[offset::3] = True
    mask[8:12] = True
    kspace = np.asarray(Sense(maps, mask=mask)(image))
    return kspace, mask, maps


def small_net(seed=0, **options):
    options = {"num_steps": 3, "num_filters": 6, "kernel_size": 5, "num_rbf": 9} | options
    return VarNet(**options, rngs=nnx.Rngs(seed))


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, state, kspace, mask, maps):
    return nnx.merge(graphdef, state)(kspace, mask, maps)


def reconstruct(net, kspace, mask, maps):
    """``net(kspace, mask, maps)`` jitted, compiled once per net configuration."""
    return _reconstruct(*nnx.split(net), kspace, mask, maps)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize("kernel_size", [5, 11])
def test_synthesis_is_the_adjoint_of_analysis_including_the_border(rng, kernel_size):
    kernel = project_filters(jnp.asarray(rng.standard_normal((kernel_size, kernel_size, 2, 7)),
                                         jnp.float32))
    x = jnp.asarray(rng.standard_normal((1, *SHAPE, 2)), jnp.float32)
    z = jnp.asarray(rng.standard_normal((1, *SHAPE, 7)), jnp.float32)
    kx, ktz = analysis(x, kernel), synthesis(z, kernel)
    assert kx.shape == z.shape and ktz.shape == x.shape
    lhs = np.vdot(np.float64(kx), np.float64(z))
    rhs = np.vdot(np.float64(x), np.float64(ktz))
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(kx) * np.linalg.norm(z)
    # The same filters without the flip are not the adjoint: the test can tell.
    unflipped = np.vdot(np.float64(x), np.float64(analysis(z, kernel.transpose(0, 1, 3, 2))))
    assert abs(lhs - unflipped) > 1e-2 * np.linalg.norm(kx) * np.linalg.norm(z)


def test_filters_have_zero_mean_and_unit_norm(rng):
    kernel = np.asarray(project_filters(jnp.asarray(rng.standard_normal((5, 5, 2, 3)) + 2.0,
                                                    jnp.float32)))
    np.testing.assert_allclose(kernel.mean(axis=(0, 1)), 0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt((kernel ** 2).sum(axis=(0, 1, 2))), 1, rtol=1e-5)


def test_activation_gradients_match_autodiff_of_the_formula(rng):
    z = jnp.asarray(rng.standard_normal((1, 5, 4, 3)), jnp.float32)
    weights = jnp.asarray(rng.standard_normal((3, 7)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal(z.shape), jnp.float32)
    centres, width = jnp.linspace(-1.5, 1.5, 7), jnp.float32(0.5)

    def formula(z, weights):
        gauss = jnp.exp(-(z[..., None] - centres) ** 2 / (2 * width ** 2))
        return jnp.sum(weights * gauss, axis=-1)

    expected, expected_vjp = jax.vjp(formula, z, weights)
    got, got_vjp = jax.vjp(lambda z, w: rbf_activation(z, w, centres, width), z, weights)
    assert rel(got, expected) < 1e-6
    for g, e in zip(got_vjp(cotangent), expected_vjp(cotangent)):
        assert rel(g, e) < 1e-5


def test_data_gradient_is_the_gradient_of_the_least_squares_term(rng):
    kspace, mask, maps = problem()
    operator = Sense(maps, mask=mask)
    x = jnp.asarray(random_complex(rng, SHAPE))
    y = jnp.asarray(random_complex(rng, kspace.shape))  # unmasked: A.H masks it

    def energy(x):
        return 0.5 * jnp.sum(jnp.abs(operator(x) - y) ** 2)

    expected = jnp.conj(jax.jit(jax.grad(energy))(x))  # jax.grad conjugates complex inputs
    got = jax.jit(lambda x, y: data_gradient(operator, x, operator.H(y)))(x, y)
    assert rel(got, expected) < 1e-5


def test_zero_regulariser_is_gradient_descent_on_the_data_term():
    kspace, mask, maps = problem()
    net = small_net()
    net.activation_weights[...] = jnp.zeros_like(net.activation_weights[...])
    steps = np.array([0.5, 0.8, 1.2], np.float32)
    net.log_step_size[...] = jnp.log(steps)
    operator = Sense(maps, mask=mask)

    def energy(x):
        return 0.5 * jnp.sum(jnp.abs(operator(x) - kspace) ** 2)

    x = operator.H(kspace)
    for step in steps:
        x = x - step * jnp.conj(jax.grad(energy)(x))
    out = reconstruct(net, kspace, mask, maps)
    assert out.dtype == jnp.complex64 and out.shape == SHAPE
    assert rel(out, x) < 1e-5


def test_one_step_matches_a_hand_written_step():
    """The regulariser through an independent adjoint (jax.vjp) and numpy activations."""
    kspace, mask, maps = problem()
    net = small_net(num_steps=1)
    net.activation_weights[...] = jax.random.normal(jax.random.key(3),
                                                    net.activation_weights[...].shape)
    net.log_step_size[...] = jnp.log(jnp.array([0.7]))
    operator = Sense(maps, mask=mask)
    x0 = np.asarray(operator.H(kspace))
    scale = np.quantile(np.abs(x0), 0.99)
    x0 = x0 / scale
    kernel = project_filters(net.filters[...][0])
    channels = jnp.stack([x0.real, x0.imag], -1)[None]
    response, vjp = jax.vjp(lambda c: jax.lax.conv_general_dilated(
        c, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")), channels)
    z = np.asarray(response, np.float64)[..., None]
    gauss = np.exp(-(z - net.centres) ** 2 / (2 * net.width ** 2))
    phi = np.sum(np.asarray(net.activation_weights[...][0]) * gauss, axis=-1)
    (reg,) = vjp(jnp.asarray(phi, jnp.float32))
    reg = np.asarray(reg[0, ..., 0] + 1j * reg[0, ..., 1])
    grad = np.asarray(operator.N(x0)) - x0
    expected = scale * (x0 - reg - 0.7 * grad)
    assert np.linalg.norm(reg) > 0.05 * np.linalg.norm(x0)  # the regulariser does something
    assert rel(reconstruct(net, kspace, mask, maps), expected) < 1e-5


def test_scale_free():
    kspace, mask, maps = problem()
    net = small_net()
    out = reconstruct(net, kspace, mask, maps)
    assert rel(reconstruct(net, 1000.0 * kspace, mask, maps), 1000.0 * out) < 1e-5


def test_jit_equals_eager_and_remat_keeps_values_and_gradients():
    kspace, mask, maps = problem()
    net = small_net()
    graphdef, state = nnx.split(net)

    def loss(state, kspace):
        return jnp.sum(jnp.abs(nnx.merge(graphdef, state)(kspace, mask, maps)) ** 2)

    eager = net(kspace, mask, maps)
    assert rel(reconstruct(net, kspace, mask, maps), eager) < 1e-5
    grads = jax.jit(jax.grad(loss))(state, kspace)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0 for g in leaves)

    remat = small_net(remat=True)
    graphdef_r, state_r = nnx.split(remat)
    grads_r = jax.jit(jax.grad(lambda s, k: jnp.sum(jnp.abs(
        nnx.merge(graphdef_r, s)(k, mask, maps)) ** 2)))(state_r, kspace)
    for g, g_r in zip(leaves, jax.tree.leaves(grads_r)):
        assert rel(g_r, g) < 1e-4


def test_vmap_equals_loop():
    examples = [problem(seed=s, offset=s) for s in (0, 1)]
    kspace, mask, maps = (np.stack(a) for a in zip(*examples))
    net = small_net()
    graphdef, state = nnx.split(net)
    batched = jax.vmap(lambda k, m, s: nnx.merge(graphdef, state)(k, m, s))(kspace, mask, maps)
    for i, example in enumerate(examples):
        assert rel(batched[i], reconstruct(net, *example)) < 1e-5


def test_apply_sample_writes_the_complex_image():
    kspace, mask, maps = problem()
    net = small_net()
    graphdef, state = nnx.split(net)
    sample = jax.jit(lambda s, sample: nnx.merge(graphdef, s).apply_sample(sample))(
        state, Sample(kspace=kspace, mask=mask, maps=maps, target=np.ones(SHAPE)))
    assert jnp.iscomplexobj(sample.image) and sample.image.shape == SHAPE
    assert rel(sample.image, reconstruct(net, kspace, mask, maps)) < 1e-6
    assert np.all(np.asarray(sample.target) == 1) and sample.kspace.shape == kspace.shape


def test_zero_kspace_gives_a_finite_image():
    _, mask, maps = problem()
    net = small_net()
    zeros = np.zeros((COILS, *SHAPE), np.complex64)
    out = reconstruct(net, zeros, mask, maps)
    assert bool(jnp.all(jnp.isfinite(out)))  # the input scale of zero data is 1, not 0
    net.activation_weights[...] = jnp.zeros_like(net.activation_weights[...])
    assert np.all(np.asarray(reconstruct(net, zeros, mask, maps)) == 0)


@pytest.mark.parametrize("change, expected_error, words", [
    (lambda k, m, s: (k, m, s[:, :, :-1]), ValueError, ["maps", "(4, 24, 20)", "(4, 24, 19)"]),
    (lambda k, m, s: (k, m[:-1], s), ValueError, ["mask", "(4, 24, 20)", "(19,)"]),
    (lambda k, m, s: (k[0], m, s[0]), ValueError, ["kspace", "(24, 20)"]),
    (lambda k, m, s: (k.real, m, s), TypeError, ["kspace", "complex"]),
    (lambda k, m, s: (k, None, s), ValueError, ["mask"]),
])
def test_bad_input_names_the_net_and_the_shapes(change, expected_error, words):
    net = small_net()
    with pytest.raises(expected_error) as info:
        net(*change(*problem()))
    message = str(info.value)
    assert message.startswith("mskjax.nets.VarNet:")
    assert all(w in message for w in words), message


@pytest.mark.parametrize("options", [{"kernel_size": 4}, {"num_rbf": 1}, {"num_steps": 0},
                                     {"rbf_range": 0.0}])
def test_bad_options(options):
    with pytest.raises(ValueError, match="mskjax.nets.VarNet"):
        small_net(**options)
