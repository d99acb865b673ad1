"""RED-CNN against the same layout written with torch.nn (Conv2d and ConvTranspose2d with
bias, the reference implementation's shortcut order), weights copied: outputs and input
gradients; the shortcuts at zero weights; a toy training run; shapes; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import nets, train

torch = pytest.importorskip("torch")
nn = torch.nn


class TorchREDCNN(nn.Module):
    """The layout of Chen et al. 2017 as in the widely used PyTorch implementation."""

    def __init__(self, features, k=5, output_relu=True):
        super().__init__()
        self.conv = nn.ModuleList([nn.Conv2d(1 if i == 0 else features, features, k)
                                   for i in range(5)])
        self.tconv = nn.ModuleList([nn.ConvTranspose2d(features, 1 if i == 4 else features, k)
                                    for i in range(5)])
        self.output_relu = output_relu
        with torch.no_grad():
            for m in list(self.conv) + list(self.tconv):
                m.bias.uniform_(-0.1, 0.1)  # make the biases count

    def forward(self, x):
        relu = torch.relu
        residual_1 = x
        out = relu(self.conv[0](x))
        out = relu(self.conv[1](out))
        residual_2 = out
        out = relu(self.conv[2](out))
        out = relu(self.conv[3](out))
        residual_3 = out
        out = relu(self.conv[4](out))
        out = self.tconv[0](out) + residual_3
        out = self.tconv[1](relu(out))
        out = self.tconv[2](relu(out)) + residual_2
        out = self.tconv[3](relu(out))
        out = self.tconv[4](relu(out)) + residual_1
        return relu(out) if self.output_relu else out


def copy_weights(ours, theirs):
    for param, bias, m in zip(ours.encoder_kernels, ours.encoder_biases, theirs.conv):
        param[...] = jnp.asarray(m.weight.detach().numpy().transpose(2, 3, 1, 0))
        bias[...] = jnp.asarray(m.bias.detach().numpy())
    for param, bias, m in zip(ours.decoder_kernels, ours.decoder_biases, theirs.tconv):
        # ConvTranspose2d (in, out, k, k) -> the equivalent convolution (k, k, in, out).
        w = m.weight.detach().numpy()[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        param[...] = jnp.asarray(np.ascontiguousarray(w))
        bias[...] = jnp.asarray(m.bias.detach().numpy())


@pytest.mark.parametrize("output_relu", [True, False])
def test_matches_torch_layout(output_relu):
    torch.manual_seed(0)
    theirs = TorchREDCNN(6, output_relu=output_relu)
    ours = nets.REDCNN(features=6, output_relu=output_relu, rngs=nnx.Rngs(0))
    copy_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((2, 27, 24, 1)).astype(np.float32)
    xt = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).requires_grad_(True)
    ref = theirs(xt)
    (ref ** 2).sum().backward()
    ref = np.moveaxis(ref.detach().numpy(), 1, -1)
    out = ours(jnp.asarray(x))
    assert out.shape == x.shape
    assert np.max(np.abs(np.asarray(out) - ref)) <= 1e-4 * np.max(np.abs(ref))
    grad = jax.grad(lambda v: jnp.sum(ours(v) ** 2))(jnp.asarray(x))
    ref_grad = np.moveaxis(xt.grad.numpy(), 1, -1)
    assert np.max(np.abs(np.asarray(grad) - ref_grad)) <= 1e-4 * np.max(np.abs(ref_grad))


def _zero(model):
    for group in (model.encoder_kernels, model.encoder_biases, model.decoder_kernels,
                  model.decoder_biases):
        for p in group:
            p[...] = jnp.zeros_like(p[...])


def test_shortcuts_at_zero_weights():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 21, 23, 1)), jnp.float32)
    model = nets.REDCNN(features=4, rngs=nnx.Rngs(1))
    _zero(model)
    # All zero: only the input shortcut is left.
    np.testing.assert_array_equal(model(x), jax.nn.relu(x))
    signed = nets.REDCNN(features=4, output_relu=False, rngs=nnx.Rngs(1))
    _zero(signed)
    np.testing.assert_array_equal(signed(x), x)
    # The shortcut from conv4 to deconv1: with conv1..4 carrying a constant (bias 1 on
    # channel 0, conv1's kernel zero) and conv5 zero, deconv1 sees only c4; deconv2 reads
    # channel 0 of d1 with a centre tap: the output changes by a known constant.
    k = 5
    model.encoder_biases[0][...] = jnp.zeros(4).at[0].set(1.0)
    for i in (1, 2, 3):
        kernel = jnp.zeros((k, k, 4, 4)).at[k // 2, k // 2, 0, 0].set(1.0)
        model.encoder_kernels[i][...] = kernel
    # c4 = 1 on channel 0 (inside its valid region); deconv2 = centre tap of channel 0 -> 1
    # channel; deconv3..5 pass channel 0 with centre taps, the conv2 shortcut adds c2 = 1 on
    # channel 0 where deconv3's output overlaps it, the input shortcut adds x.
    for i in (1, 2, 3):
        model.decoder_kernels[i][...] = jnp.zeros((k, k, 4, 4)).at[k // 2, k // 2, 0, 0].set(1.0)
    model.decoder_kernels[4][...] = jnp.zeros((k, k, 4, 1)).at[k // 2, k // 2, 0, 0].set(1.0)
    out = np.asarray(model(x))[0, ..., 0]
    # The centre of the image: c4 (1) passes deconv2..deconv5, plus c2 (1) from deconv3 on:
    # 2 + x.
    np.testing.assert_allclose(out[10, 11], max(0.0, 2.0 + float(x[0, 10, 11, 0])), atol=1e-6)
    # With conv2 zero, c2, c3 and c4 vanish (no biases) and only the input shortcut is left.
    model.encoder_kernels[1][...] = jnp.zeros((k, k, 4, 4))
    out2 = np.asarray(model(x))[0, ..., 0]
    assert abs(out2[10, 11] - max(0.0, float(x[0, 10, 11, 0]))) <= 1e-6


@pytest.mark.slow
def test_toy_training_lowers_the_loss():
    # Denoise: targets are smooth random images, inputs the targets plus noise.
    key = jax.random.key(0)
    clean = jax.nn.relu(jax.random.normal(key, (2, 22, 22, 1)))
    clean = (clean + jnp.roll(clean, 1, 1) + jnp.roll(clean, 1, 2)) / 3
    noisy = clean + 0.3 * jax.random.normal(jax.random.key(1), clean.shape)
    model = nets.REDCNN(features=6, rngs=nnx.Rngs(0))
    graphdef, params, rest = train.split_model(model)

    def loss_fn(p, batch, key):
        pred = train.merge_model(graphdef, p, rest)(batch["x"])
        return jnp.mean((pred - batch["y"]) ** 2), {}

    optimizer = optax.adam(1e-3)
    state = train.init_train_state(params, optimizer, key=0)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    batch = {"x": noisy, "y": clean}
    first = float(loss_fn(params, batch, None)[0])
    for _ in range(20):
        state, _ = step(state, batch)
    last = float(loss_fn(state.params, batch, None)[0])
    assert last < 0.7 * first
    assert int(state.skipped) == 0  # no step had a non-finite loss or gradient


def test_sizes_and_parameter_count():
    model = nets.REDCNN(rngs=nnx.Rngs(0))
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model)))
    # 32 filters of 5 x 5: (25 + 1) 32 + 4 (25 * 32 + 1) 32 + 4 (25 * 32 + 1) 32 + 25 * 32 + 1.
    assert count == 26 * 32 + 8 * (801 * 32) + 801
    assert model.min_size == 21
    out = model(jnp.zeros((3, 21, 40, 1)))
    assert out.shape == (3, 21, 40, 1)


def test_bad_input():
    model = nets.REDCNN(features=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"REDCNN: x must be \(batch, rows, cols, 1\)"):
        model(jnp.zeros((21, 21, 1)))
    with pytest.raises(ValueError, match="rows and cols must be at least 21"):
        model(jnp.zeros((1, 20, 30, 1)))
    with pytest.raises(TypeError, match="x must be floating point"):
        model(jnp.zeros((1, 21, 21, 1), jnp.int32))
    with pytest.raises(ValueError, match="features must be an integer >= 1"):
        nets.REDCNN(features=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 2"):
        nets.REDCNN(kernel_size=1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="output_relu must be a bool"):
        nets.REDCNN(output_relu=1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs"):
        nets.REDCNN(rngs=0)
