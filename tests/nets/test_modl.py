"""MoDL: exact data consistency by CG, shared denoiser, implicit and unrolled gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.linop import Identity, Sense
from mskjax.nets import MoDL
from mskjax.pipeline import Sample
from mskjax.recon import cg_sense
from mskjax.sim import knee_section
from mskjax.solvers import cg
from tests.conftest import random_complex

SHAPE = (24, 20)
COILS = 4
EPS32 = float(np.finfo(np.float32).eps)


@functools.lru_cache
def problem(seed=0, offset=0, dtype=np.complex64):
    rng = np.random.default_rng(seed)
    image = (knee_section(SHAPE) * np.exp(0.4j)).astype(dtype)
    image = image + 0.05 * random_complex(rng, SHAPE, dtype)
    maps = np.asarray(normalize_maps(birdcage_maps((COILS, *SHAPE)))).astype(dtype)
    mask = np.zeros(SHAPE[1], bool)
    mask[offset::3] = True
    mask[8:12] = True
    kspace = np.asarray(Sense(maps, mask=mask)(image))
    return kspace, mask, maps


def small_net(seed=0, **options):
    options = {"num_iterations": 2, "cg_iterations": 6, "num_layers": 3, "features": 8} | options
    return MoDL(**options, rngs=nnx.Rngs(seed))


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, state, kspace, mask, maps):
    return nnx.merge(graphdef, state)(kspace, mask, maps)


def reconstruct(net, kspace, mask, maps):
    """``net(kspace, mask, maps)`` jitted, compiled once per net configuration."""
    return _reconstruct(*nnx.split(net), kspace, mask, maps)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def scaled_adjoint(operator, kspace):
    adjoint = np.asarray(operator.H(kspace))
    scale = np.quantile(np.abs(adjoint), 0.99)
    return adjoint / scale, scale


def denoise(net, x):
    out = net.denoiser(jnp.stack([x.real, x.imag], -1)[None])[0]
    return out[..., 0] + 1j * out[..., 1]


class Zero(nnx.Module):
    def __call__(self, x):
        return jnp.zeros_like(x)


def test_zero_denoiser_gives_tikhonov_cg_sense():
    kspace, mask, maps = problem()
    net = small_net(num_iterations=1, cg_iterations=7, lamda=0.3)
    net.denoiser = Zero()
    expected = cg_sense(kspace, maps, mask=mask, lamda=0.3, max_iter=7, tol=EPS32).image
    out = reconstruct(net, kspace, mask, maps)
    assert out.dtype == jnp.complex64 and out.shape == SHAPE
    assert rel(out, expected) < 1e-5


def test_iterations_alternate_the_shared_denoiser_and_cg():
    kspace, mask, maps = problem()
    net = small_net(num_iterations=3, lamda=0.2)
    operator = Sense(maps, mask=mask)
    b, scale = scaled_adjoint(operator, kspace)
    normal = operator.N + float(net.lamda) * Identity(SHAPE)
    x = b
    for _ in range(3):
        z = denoise(net, x)
        assert rel(z, x) > 0.05  # the denoiser is not the identity
        x = cg(normal, b + net.lamda * z, max_iter=6, tol=EPS32).x
    assert rel(reconstruct(net, kspace, mask, maps), scale * x) < 1e-5
    # One set of weights for every iteration.
    count = sum(p.size for p in jax.tree.leaves(nnx.state(net, nnx.Param)))
    deeper = sum(p.size for p in jax.tree.leaves(nnx.state(small_net(num_iterations=7),
                                                            nnx.Param)))
    assert count == deeper


def test_data_consistency_solves_the_normal_equation():
    kspace, mask, maps = problem()
    net = small_net(num_iterations=1, cg_iterations=60, lamda=0.05)
    operator = Sense(maps, mask=mask)
    b, scale = scaled_adjoint(operator, kspace)
    rhs = b + net.lamda * denoise(net, b)
    x = reconstruct(net, kspace, mask, maps) / scale

    def relative_residual(x):
        return float(jnp.linalg.norm(operator.N(x) + net.lamda * x - rhs) / jnp.linalg.norm(rhs))

    assert relative_residual(x) < 1e-5
    # Few iterations do not solve it: the check above can fail.
    few = small_net(num_iterations=1, cg_iterations=2, lamda=0.05)
    x_few = reconstruct(few, kspace, mask, maps) / scale
    assert relative_residual(x_few) > 1e-2


@pytest.mark.parametrize("implicit, cg_iterations", [(True, 60), (False, 4)])
def test_gradients_agree_with_central_differences_in_float64(implicit, cg_iterations):
    with jax.enable_x64(True):
        kspace, mask, maps = problem(dtype=np.complex128)
        net = small_net(cg_iterations=cg_iterations, implicit=implicit, lamda=0.1,
                        param_dtype=jnp.float64)
        is_lamda = nnx.PathContains("log_lamda")
        graphdef, lamda_state, rest = nnx.split(net, is_lamda, ...)
        target = jnp.asarray(random_complex(np.random.default_rng(5), SHAPE, np.complex128))
        direction = jnp.asarray(random_complex(np.random.default_rng(6), kspace.shape,
                                               np.complex128)) * mask

        def loss(log_lamda, t):
            lamda = jax.tree.map(lambda _: log_lamda, lamda_state)
            out = nnx.merge(graphdef, lamda, rest)(kspace + t * direction, mask, maps)
            return jnp.sum(jnp.abs(out - target) ** 2)

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

        def value(*args):
            return float(value_and_grad(*args)[0])

        # The input scale (a quantile) and the ReLUs are piecewise smooth in the k-space:
        # a small step keeps the differences on one piece.
        v, h, t = float(np.log(0.1)), 1e-5, 1e-6
        analytic = value_and_grad(v, 0.0)[1]
        numeric = ((value(v + h, 0.0) - value(v - h, 0.0)) / (2 * h),
                   (value(v, t) - value(v, -t)) / (2 * t))
        for a, n in zip(analytic, numeric):
            assert abs(float(a) - float(n)) <= 1e-6 * abs(float(n)), (a, n)


def compiled_gradient(implicit, cg_iterations):
    kspace, mask, maps = problem()
    net = small_net(num_iterations=1, num_layers=2, cg_iterations=cg_iterations,
                    implicit=implicit)
    graphdef, state = nnx.split(net)

    def loss(state, kspace):
        return jnp.sum(jnp.abs(nnx.merge(graphdef, state)(kspace, mask, maps)) ** 2)

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(state, kspace).compile()
    return compiled, (state, kspace)


@pytest.mark.slow
def test_gradient_memory_grows_with_cg_iterations_only_when_unrolled():
    memory = {}
    for implicit in (True, False):
        for cg_iterations in (5, 50):
            compiled, args = compiled_gradient(implicit, cg_iterations)
            memory[implicit, cg_iterations] = compiled.memory_analysis().temp_size_in_bytes
    image_bytes = np.prod(SHAPE) * 8
    assert memory[True, 50] <= memory[True, 5] + image_bytes
    # At least one saved image per extra unrolled iteration.
    assert memory[False, 50] - memory[False, 5] >= 45 * image_bytes
    # 50 unrolled iterations run past convergence in float32: the gradients stay finite.
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(compiled(*args)))


def test_scale_free_jit_and_vmap():
    examples = [problem(seed=s, offset=s) for s in (0, 1)]
    net = small_net()
    graphdef, state = nnx.split(net)
    eager = net(*examples[0])
    assert rel(reconstruct(net, *examples[0]), eager) < 1e-5
    scaled = reconstruct(net, 1000.0 * examples[0][0], *examples[0][1:])
    assert rel(scaled, 1000.0 * eager) < 1e-5
    batched = jax.jit(jax.vmap(lambda k, m, s: nnx.merge(graphdef, state)(k, m, s)))(
        *(np.stack(a) for a in zip(*examples)))
    for i, example in enumerate(examples):
        assert rel(batched[i], reconstruct(net, *example)) < 1e-5


def test_apply_sample_writes_the_complex_image():
    kspace, mask, maps = problem()
    net = small_net()
    graphdef, state = nnx.split(net)
    sample = jax.jit(lambda s, sample: nnx.merge(graphdef, s).apply_sample(sample))(
        state, Sample(kspace=kspace, mask=mask, maps=maps))
    assert jnp.iscomplexobj(sample.image) and sample.image.shape == SHAPE
    assert rel(sample.image, reconstruct(net, kspace, mask, maps)) < 1e-6


@pytest.mark.parametrize("change, words", [
    (lambda k, m, s: (k, m, s[:2]), ["maps", "(4, 24, 20)", "(2, 24, 20)"]),
    (lambda k, m, s: (k, np.ones((24, 19), bool), s), ["mask", "(4, 24, 20)", "(24, 19)"]),
    (lambda k, m, s: (k[None], m, s[None]), ["kspace", "(1, 4, 24, 20)"]),
])
def test_bad_input_names_the_net_and_the_shapes(change, words):
    with pytest.raises(ValueError) as info:
        small_net()(*change(*problem()))
    message = str(info.value)
    assert message.startswith("mskjax.nets.MoDL:")
    assert all(w in message for w in words), message


@pytest.mark.parametrize("options", [{"lamda": 0.0}, {"num_layers": 1}, {"cg_iterations": 0}])
def test_bad_options(options):
    with pytest.raises(ValueError, match="mskjax.nets.MoDL"):
        small_net(**options)
