"""The U-Net and its blocks against the fastMRI PyTorch U-Net (the oracle).

Tolerance: float32 round-off, max |jax - torch| <= 1e-4 * max |torch| (measured about 2e-6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets
from mskjax.pipeline import Sample

torch = pytest.importorskip("torch")
fastmri_models = pytest.importorskip("fastmri.models")
F = torch.nn.functional

RTOL = 1e-4


def assert_close(out, ref, rtol=RTOL):
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max abs diff {err}, max |ref| {np.abs(ref).max()}"


def torch_unet(in_chans, out_chans, chans, pools, seed=0):
    torch.manual_seed(seed)
    return fastmri_models.Unet(in_chans, out_chans, chans=chans, num_pool_layers=pools).eval()


def run_torch(model, x):
    """``x`` channels-last numpy -> the torch model's output, channels-last."""
    with torch.no_grad():
        out = model(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    return np.moveaxis(out.numpy(), 1, -1)


def pure(model):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)), state


@pytest.fixture(scope="module")
def small():
    """A random fastMRI U-Net with 3 levels, odd input sizes (reflect padding at each level up:
    37 -> 18 -> 9 -> 4 and 29 -> 14 -> 7 -> 3), and the same net in mskjax."""
    ref = torch_unet(2, 3, chans=4, pools=3)
    x = np.random.default_rng(0).standard_normal((2, 37, 29, 2)).astype(np.float32)
    model = nets.load_fastmri(ref.state_dict())
    fn, state = pure(model)
    return ref, model, fn, state, x


def test_unet_matches_fastmri_on_odd_sizes(small):
    ref, model, fn, state, x = small
    assert (model.in_chans, model.out_chans, model.chans, model.num_pool_layers) == (2, 3, 4, 3)
    assert_close(fn(state, x), run_torch(ref, x))


def test_unet_jit_equals_eager():
    model = nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    x = np.random.default_rng(7).standard_normal((1, 10, 9, 1)).astype(np.float32)
    fn, state = pure(model)
    assert_close(model(x), fn(state, x), rtol=1e-5)


def test_unet_gradients_match_fastmri():
    ref = torch_unet(1, 2, chans=2, pools=2, seed=1)
    model = nets.load_fastmri(ref.state_dict())
    x = np.random.default_rng(1).standard_normal((1, 13, 11, 1)).astype(np.float32)
    weights = np.random.default_rng(2).standard_normal((1, 13, 11, 2)).astype(np.float32)
    graphdef, state = nnx.split(model)
    grads = jax.jit(jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s)(x) * weights)))(state)
    as_torch = nets.to_fastmri_state_dict(nnx.merge(graphdef, grads))
    out = ref(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    (out * torch.from_numpy(np.moveaxis(weights, -1, 1).copy())).sum().backward()
    assert set(as_torch) == {name for name, _ in ref.named_parameters()}
    for name, param in ref.named_parameters():
        assert_close(as_torch[name], param.grad.numpy(), rtol=1e-3)


def test_blocks_match_torch_in_3d():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 6, 5, 3)).astype(np.float32)
    block = nets.ConvBlock(3, 4, drop_prob=0.0, rngs=nnx.Rngs(0), ndim=3)
    up = nets.TransposeConvBlock(4, 2, rngs=nnx.Rngs(1), ndim=3)
    assert block.kernel1.shape == (3, 3, 3, 3, 4) and up.kernel.shape == (2, 2, 2, 4, 2)
    out = up(block(x))

    def torch_oihw(kernel):  # (*window, in, out) -> (out, in, *window)
        return torch.from_numpy(np.transpose(np.asarray(kernel), (4, 3, 0, 1, 2)).copy())

    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    for kernel in (block.kernel1, block.kernel2):
        t = F.leaky_relu(F.instance_norm(F.conv3d(t, torch_oihw(kernel[...]), padding=1)), 0.2)
    t = F.conv_transpose3d(t, torch.from_numpy(np.transpose(np.asarray(up.kernel[...]),
                                                            (3, 4, 0, 1, 2)).copy()), stride=2)
    t = F.leaky_relu(F.instance_norm(t), 0.2)
    assert_close(out, np.moveaxis(t.numpy(), 1, -1))


def test_unet_3d_handles_odd_sizes():
    model = nets.UNet(1, 2, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0), ndim=3)
    x = np.random.default_rng(8).standard_normal((1, 5, 4, 3, 1)).astype(np.float32)
    fn, state = pure(model)
    out = fn(state, x)
    assert out.shape == (1, 5, 4, 3, 2) and bool(jnp.all(jnp.isfinite(out)))


def test_instance_norm_and_pooling_match_torch():
    x = np.random.default_rng(3).standard_normal((2, 7, 5, 3)).astype(np.float32) * 3 + 1
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    assert_close(nets.instance_norm(x), np.moveaxis(F.instance_norm(t).numpy(), 1, -1))
    pooled = nets.avg_pool(x)
    assert pooled.shape == (2, 3, 2, 3)  # odd trailing rows and columns dropped
    assert_close(pooled, np.moveaxis(F.avg_pool2d(t, 2).numpy(), 1, -1))


def test_dropout_is_channel_dropout_in_training_and_off_in_eval():
    block = nets.ConvBlock(1, 8, drop_prob=0.5, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 6, 5, 1)), jnp.float32)
    graphdef, state = nnx.split(block)

    @jax.jit
    def step(state, x):  # the pure-function form: state in, updated random state out
        m = nnx.merge(graphdef, state)
        return m(x), nnx.state(m)

    first, state1 = step(state, x)
    again, _ = step(state, x)
    second, _ = step(state1, x)
    np.testing.assert_array_equal(first, again)  # a pure function of the state
    assert not np.array_equal(first, second)  # the random stream advanced
    # Each dropped (example, channel) is zero over the whole image; the others nowhere.
    zero = np.all(np.asarray(first) == 0, axis=(1, 2))
    nonzero = np.all(np.asarray(first) != 0, axis=(1, 2))
    assert np.all(zero | nonzero) and 0 < zero.sum() < zero.size

    # In eval mode a U-Net with dropout is the same U-Net without it.
    model = nets.UNet(1, 1, chans=2, num_pool_layers=1, drop_prob=0.5, rngs=nnx.Rngs(0))
    image = np.random.default_rng(7).standard_normal((1, 10, 9, 1)).astype(np.float32)
    assert not np.array_equal(model(image), model(image))
    model.eval()
    plain = nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    nnx.update(plain, nnx.state(model, nnx.Param))
    np.testing.assert_array_equal(model(image), plain(image))


def test_apply_sample_forms():
    rng = np.random.default_rng(5)
    mono = nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    image = rng.standard_normal((10, 9)).astype(np.float32)
    out = mono.apply_sample(Sample(image=image)).image
    np.testing.assert_allclose(out, mono(image[None, :, :, None])[0, :, :, 0], rtol=1e-6)

    multi = nets.UNet(3, 2, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    channels = rng.standard_normal((10, 9, 3)).astype(np.float32)
    assert multi.apply_sample(Sample(image=channels)).image.shape == (10, 9, 2)

    complex_net = nets.UNet(2, 2, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    z = (rng.standard_normal((10, 9)) + 1j * rng.standard_normal((10, 9))).astype(np.complex64)
    out = complex_net.apply_sample(Sample(image=z)).image
    expect = complex_net(np.stack([z.real, z.imag], -1)[None])[0]
    assert out.dtype == jnp.complex64
    np.testing.assert_allclose(out, expect[..., 0] + 1j * expect[..., 1], rtol=1e-6)

    with pytest.raises(ValueError, match=r"mskjax.nets.UNet.apply_sample: the net takes 1"):
        mono.apply_sample(Sample(image=channels))
    with pytest.raises(ValueError, match="has no image"):
        mono.apply_sample(Sample())


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"mskjax.nets.UNet: x must be \(batch, \*spatial, 1\)"):
        nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))(jnp.ones((8, 8, 1)))
    with pytest.raises(TypeError, match="mskjax.nets.UNet: x must be real"):
        nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))(jnp.ones((1, 8, 8, 1),
                                                                               jnp.complex64))
    with pytest.raises(ValueError, match="mskjax.nets.UNet: chans must be an integer >= 1"):
        nets.UNet(1, 1, chans=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"mskjax.nets.UNet: drop_prob must be in \[0.0, 1.0\)"):
        nets.UNet(1, 1, drop_prob=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs"):
        nets.UNet(1, 1, rngs=0)
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        nets.ConvBlock(1, 1, drop_prob=0.0, rngs=nnx.Rngs(0), ndim=4)


@pytest.mark.slow
def test_published_unet_matches_fastmri():
    """fastMRI's U-Net defaults (chans 32, 4 levels, 1 channel in and out). The published
    single-coil knee weights use chans 256 (496 M weights): too big to build in a test."""
    ref = torch_unet(1, 1, chans=32, pools=4)
    model = nets.load_fastmri(ref.state_dict())
    assert (model.chans, model.num_pool_layers) == (32, 4)
    x = np.random.default_rng(6).standard_normal((1, 37, 41, 1)).astype(np.float32)
    fn, state = pure(model)
    assert_close(fn(state, x), run_torch(ref, x))
