"""The end-to-end VarNet against the fastMRI PyTorch VarNet (the oracle).

Tolerance: float32 round-off, max |jax - torch| <= 1e-4 * max |torch| (measured about 1e-6
for the small net; for the published size with 12 random cascades 3e-5 from PyTorch in float64,
as far as PyTorch's own float32 output is).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, sampling
from tests.conftest import random_complex

torch = pytest.importorskip("torch")
fastmri_models = pytest.importorskip("fastmri.models")

RTOL = 1e-4
SHAPE = (4, 32, 24)  # coils, rows, cols
SMALL = dict(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)


def assert_close(out, ref, rtol=RTOL):
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max abs diff {err}, max |ref| {np.abs(ref).max()}"


def example(seed, shape=SHAPE):
    """Masked k-space and its fastMRI equispaced mask (cols,) and centre width."""
    mask, num_low = sampling.equispaced_mask(shape, center_fraction=0.25, acceleration=2,
                                             seed=seed)
    kspace = random_complex(np.random.default_rng(seed), shape) * mask
    return kspace, mask, num_low


def torch_varnet(config, seed=0):
    torch.manual_seed(seed)
    model = fastmri_models.VarNet(**config).eval()
    with torch.no_grad():  # learned data-consistency weights away from their initial 1
        for i, cascade in enumerate(model.cascades):
            cascade.dc_weight.fill_(0.3 + 0.5 * i)
    return model


def run_torch(model, kspace, mask, num_low=None, maps=False):
    kspace = torch.view_as_real(torch.from_numpy(np.asarray(kspace)))[None]
    mask = torch.from_numpy(np.asarray(mask, bool)).reshape(1, 1, 1, -1, 1)
    with torch.no_grad():
        if maps:
            out = model.sens_net(kspace, mask, num_low)[0].numpy()
            return out[..., 0] + 1j * out[..., 1]
        return model(kspace, mask, num_low)[0].numpy()


@pytest.fixture(scope="module")
def small():
    """The fastMRI VarNet, the same net loaded in mskjax, and one compiled pure function of
    (state, kspace, mask, num_low_frequencies), all traced (0: the width read from the mask)."""
    ref = torch_varnet(SMALL)
    model = nets.load_fastmri(ref.state_dict())
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, k, m, n: nnx.merge(graphdef, s)(k, m, num_low_frequencies=n))
    return ref, model, state, fn


def test_matches_fastmri_with_the_centre_read_from_the_mask(small):
    ref, model, state, fn = small
    kspace, mask, _ = example(0)
    out = fn(state, kspace, mask, 0)
    assert out.shape == (32, 24) and out.dtype == jnp.float32
    assert_close(out, run_torch(ref, kspace, mask))


def test_matches_fastmri_with_a_given_centre_width(small):
    ref, model, state, fn = small
    kspace, mask, num_low = example(0)
    assert num_low == 6
    for n in (4, num_low):
        assert_close(fn(state, kspace, mask, n), run_torch(ref, kspace, mask, n))
    # The width matters (so the test above could fail): 4 lines differ from the mask's 6.
    assert not np.allclose(fn(state, kspace, mask, 4), fn(state, kspace, mask, 0), rtol=1e-3)


def test_sensitivity_maps_match_fastmri(small):
    ref, model, state, _ = small
    kspace, mask, _ = example(1)
    maps = jax.jit(lambda k, m: model.sensitivity_maps(k, m))(kspace, mask)
    assert maps.shape == SHAPE and maps.dtype == jnp.complex64
    assert_close(maps, run_torch(ref, kspace, mask, maps=True))
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, rtol=1e-5)


def test_vmap_equals_a_loop_over_examples(small):
    """Per-example masks as traced (rows, cols) arrays, the centre width read from each, under
    vmap, against single examples with (cols,) masks."""
    _, model, state, fn = small
    examples = [example(seed) for seed in (2, 3)]
    kspace = np.stack([k for k, _, _ in examples])
    masks = np.stack([np.broadcast_to(m, SHAPE[1:]) for _, m, _ in examples])
    graphdef = nnx.graphdef(model)
    batched = jax.jit(jax.vmap(lambda k, m: nnx.merge(graphdef, state)(k, m)))
    out = batched(kspace, masks)
    assert out.shape == (2, 32, 24)
    for i, (k, m, _) in enumerate(examples):
        assert_close(out[i], fn(state, k, m, 0), rtol=1e-5)


def test_degenerate_input_gives_finite_output(small):
    _, _, state, fn = small
    kspace, mask, _ = example(0)
    zero = fn(state, np.zeros_like(kspace), mask, 0)
    np.testing.assert_array_equal(zero, 0.0)  # zero k-space, zero image (not NaN)
    no_centre = mask.copy()
    no_centre[12] = False  # traced masks are not checked; the result is still finite
    assert np.all(np.isfinite(fn(state, kspace * no_centre, no_centre, 0)))


def test_bad_input():
    model = nets.E2EVarNet(**SMALL, rngs=nnx.Rngs(0))
    kspace, mask, _ = example(0)
    with pytest.raises(TypeError, match=r"mskjax.nets.E2EVarNet: kspace must be complex"):
        model(np.abs(kspace), mask)
    with pytest.raises(ValueError, match=r"mskjax.nets.E2EVarNet: kspace must be \(coils, rows, "
                                         r"cols\) for one example \(batch with jax.vmap\), got "
                                         r"shape \(1, 4, 32, 24\)"):
        model(kspace[None], mask)
    with pytest.raises(ValueError, match=r"mskjax.nets.E2EVarNet: mask must broadcast to the "
                                         r"k-space shape \(4, 32, 24\), got shape \(23,\)"):
        model(kspace, mask[:23])
    no_centre = mask.copy()
    no_centre[12] = False
    with pytest.raises(ValueError, match="mskjax.nets.E2EVarNet: the mask samples no centre"):
        model(kspace, no_centre)
    with pytest.raises(ValueError, match="no centre"):
        model.sensitivity_maps(kspace, np.zeros(24, bool))
    with pytest.raises(ValueError, match="no centre"):  # a known mask, also under jit
        jax.jit(lambda k: model(k, no_centre))(kspace)
    with pytest.raises(ValueError, match=r"num_low_frequencies must be in \[0, 24\]"):
        model(kspace, mask, num_low_frequencies=25)
    with pytest.raises(TypeError, match="num_low_frequencies must be an integer"):
        model(kspace, mask, num_low_frequencies=True)
    with pytest.raises(ValueError, match="mskjax.nets.E2EVarNet: num_cascades must be an "
                                         "integer >= 1, got 0"):
        nets.E2EVarNet(num_cascades=0, rngs=nnx.Rngs(0))


def test_cascade_weights_are_stacked():
    model = nets.E2EVarNet(**SMALL, rngs=nnx.Rngs(0))
    assert model.cascades.dc_weight.shape == (2,)
    np.testing.assert_array_equal(model.cascades.dc_weight[...], 1.0)
    kernels = model.cascades.regularizer.unet.down[0].kernel1[...]
    assert kernels.shape == (2, 3, 3, 2, 4) and not np.allclose(kernels[0], kernels[1])


@pytest.mark.slow
def test_eager_equals_jit(small):
    """The eager call (the mask is concrete: checked and reduced on the host) equals the
    jitted one (the mask traced)."""
    _, model, state, fn = small
    kspace, mask, _ = example(4)
    assert_close(model(kspace, mask), fn(state, kspace, mask, 0), rtol=1e-5)


@pytest.mark.slow
def test_gradients_with_remat_match_fastmri():
    """With rematerialised cascades, the gradients of a weighted sum of the image with respect
    to every weight match PyTorch's."""
    ref = torch_varnet(dict(num_cascades=2, sens_chans=2, sens_pools=1, chans=2, pools=1))
    model = nets.load_fastmri(ref.state_dict())
    model.remat = True
    kspace, mask, _ = example(4)
    weights = np.random.default_rng(5).standard_normal(SHAPE[1:]).astype(np.float32)
    graphdef, state = nnx.split(model)
    grads = jax.jit(jax.grad(
        lambda s: jnp.sum(nnx.merge(graphdef, s)(kspace, mask) * weights)))(state)
    as_torch = nets.to_fastmri_state_dict(nnx.merge(graphdef, grads))
    out = ref(torch.view_as_real(torch.from_numpy(kspace))[None],
              torch.from_numpy(mask).reshape(1, 1, 1, -1, 1))
    (out[0] * torch.from_numpy(weights)).sum().backward()
    for name, param in ref.named_parameters():
        assert_close(as_torch[name], param.grad.numpy(), rtol=1e-3)


@pytest.mark.slow
def test_published_varnet_matches_fastmri():
    """The published fastMRI VarNet size (12 cascades, chans 18, 4 levels; sensitivity net chans
    8, 4 levels), fastMRI's initialisation. Twelve random cascades amplify float32 round-off:
    PyTorch's own float32 output is 3e-5 to 4e-5 (relative to the image's maximum) from its
    float64 output, so the oracle here is PyTorch in float64."""
    config = dict(num_cascades=12, sens_chans=8, sens_pools=4, chans=18, pools=4)
    torch.manual_seed(0)
    ref = fastmri_models.VarNet(**config).eval()
    model = nets.load_fastmri(ref.state_dict())
    assert {k: getattr(model, k) for k in config} == config
    kspace, mask, _ = example(0)
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, k, m: nnx.merge(graphdef, s)(k, m))(state, kspace, mask)
    ref.double()
    with torch.no_grad():
        exact = ref(torch.view_as_real(torch.from_numpy(kspace.astype(np.complex128)))[None],
                    torch.from_numpy(mask).reshape(1, 1, 1, -1, 1))[0].numpy()
    assert_close(out, exact)
