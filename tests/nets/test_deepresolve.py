"""DeepResolve against the same layout written with torch.nn (Conv3d with bias, ReLU, the
input added back), weights copied: outputs and gradients; the residual identity at zero
weights; remat; a toy training run; shapes; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import nets, train
from tests.nets.torchvision_oracle import (assert_close, copy_conv, from_torch, jitted,
                                           to_torch, torch)

nn = torch.nn


def torch_deepresolve(depth, features, seed=0):
    torch.manual_seed(seed)
    widths = [1] + [features] * (depth - 1) + [1]
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        conv = nn.Conv3d(a, b, 3, padding=1, bias=True)
        with torch.no_grad():
            conv.bias.uniform_(-0.5, 0.5)  # torch's default would be small; make it count
        layers.append(conv)
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def load(ours, theirs):
    convs = [m for m in theirs if isinstance(m, nn.Conv3d)]
    for kernel, bias, conv in zip(ours.kernels, ours.biases, convs, strict=True):
        copy_conv(kernel, conv.weight)
        bias[...] = jnp.asarray(conv.bias.detach().numpy())
    return ours


@pytest.mark.parametrize("shape", [(2, 6, 7, 5), (1, 4, 4, 9)])
def test_matches_torch(shape, rng):
    ours = load(nets.DeepResolve(depth=4, features=5, rngs=nnx.Rngs(0)),
                torch_deepresolve(4, 5))
    theirs = torch_deepresolve(4, 5)
    x = rng.standard_normal((*shape, 1)).astype(np.float32)
    out = np.asarray(jitted(ours)(x))
    ref = from_torch(theirs(to_torch(x)) + to_torch(x))
    assert out.shape == x.shape and out.dtype == np.float32
    assert_close(out, ref)


def test_gradients_match_torch(rng):
    theirs = torch_deepresolve(3, 4, seed=1)
    ours = load(nets.DeepResolve(depth=3, features=4, rngs=nnx.Rngs(0)), theirs)
    x = rng.standard_normal((2, 5, 6, 4, 1)).astype(np.float32)
    graphdef, params, rest = train.split_model(ours)
    grads = jax.grad(lambda p: jnp.sum(train.merge_model(graphdef, p, rest)(x) ** 2))(params)
    xt = to_torch(x)
    (theirs(xt) + xt).pow(2).sum().backward()
    convs = [m for m in theirs if isinstance(m, nn.Conv3d)]
    for g, conv in zip(grads["kernels"].values(), convs, strict=True):
        assert_close(np.asarray(g[...]),
                     np.transpose(conv.weight.grad.numpy(), (2, 3, 4, 1, 0)), rtol=1e-3)
    for g, conv in zip(grads["biases"].values(), convs, strict=True):
        assert_close(np.asarray(g[...]), conv.bias.grad.numpy(), rtol=1e-3)


def test_zero_weights_are_the_identity(rng):
    model = nets.DeepResolve(depth=5, features=6, rngs=nnx.Rngs(3))
    x = rng.standard_normal((1, 6, 6, 6, 1)).astype(np.float32)
    assert np.abs(np.asarray(model(jnp.asarray(x))) - x).max() > 1e-3  # random weights act
    for kernel, bias in zip(model.kernels, model.biases):
        kernel[...] = jnp.zeros_like(kernel[...])
        bias[...] = jnp.zeros_like(bias[...])
    np.testing.assert_array_equal(np.asarray(model(jnp.asarray(x))), x)
    # the last layer alone at zero is enough
    model = nets.DeepResolve(depth=5, features=6, rngs=nnx.Rngs(3))
    model.kernels[-1][...] = jnp.zeros_like(model.kernels[-1][...])
    np.testing.assert_array_equal(np.asarray(model(jnp.asarray(x))), x)


def test_remat_same_values_and_gradients(rng):
    x = jnp.asarray(rng.standard_normal((1, 5, 5, 5, 1)).astype(np.float32))
    results = []
    for remat in (False, True):
        model = nets.DeepResolve(depth=4, features=4, remat=remat, rngs=nnx.Rngs(0))
        graphdef, params, rest = train.split_model(model)
        loss = lambda p: jnp.sum(train.merge_model(graphdef, p, rest)(x) ** 2)  # noqa: E731, B023
        results.append((loss(params), jax.grad(loss)(params)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_toy_training_lowers_the_loss():
    """Learn to sharpen: targets are smooth random volumes plus detail, inputs the volume
    with the detail removed (a 3-tap average along one axis)."""
    key = jax.random.key(0)
    target = jax.random.normal(key, (4, 8, 8, 8, 1))
    blurred = (jnp.roll(target, 1, axis=2) + target + jnp.roll(target, -1, axis=2)) / 3
    model = nets.DeepResolve(depth=3, features=8, rngs=nnx.Rngs(0))
    graphdef, params, rest = train.split_model(model)

    def loss_fn(p, batch, key):
        pred = train.merge_model(graphdef, p, rest)(batch["x"])
        return jnp.mean((pred - batch["y"]) ** 2), {}

    optimizer = optax.adam(3e-3)
    state = train.init_train_state(params, optimizer, key=0)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    batch = {"x": blurred, "y": target}
    first = float(loss_fn(params, batch, None)[0])
    for _ in range(30):
        state, _ = step(state, batch)
    last = float(loss_fn(state.params, batch, None)[0])
    assert last < 0.7 * first


def test_bad_input():
    with pytest.raises(ValueError, match="DeepResolve: depth must be an integer >= 2"):
        nets.DeepResolve(depth=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="features must be an integer >= 1"):
        nets.DeepResolve(features=0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs"):
        nets.DeepResolve(rngs=0)
    with pytest.raises(TypeError, match="remat must be a bool"):
        nets.DeepResolve(remat=1, rngs=nnx.Rngs(0))
    model = nets.DeepResolve(depth=2, features=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"DeepResolve: x must be \(batch, d, h, w, 1\), got "
                                         r"shape \(4, 4, 4\)"):
        model(jnp.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="x must be"):
        model(jnp.zeros((1, 4, 4, 4, 2)))
    with pytest.raises(TypeError, match="floating point"):
        model(jnp.zeros((1, 4, 4, 4, 1), jnp.int32))
