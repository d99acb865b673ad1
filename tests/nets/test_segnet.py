"""SegNet and its pooling with indices, against PyTorch (``max_pool2d(return_indices=True)``,
``max_unpool2d``, and a SegNet written with ``torch.nn`` carrying the same weights) and numpy."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, pipeline

torch = pytest.importorskip("torch")
F = torch.nn.functional


def to_torch(x):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 1)))


def from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def torch_flat_indices(indices, spatial):
    """Our window offsets -> torch's flat indices into the (pre-pooling) spatial plane."""
    indices = np.asarray(indices).astype(np.int64)
    ndim = len(spatial)
    coarse = np.meshgrid(*[np.arange(n) for n in indices.shape[1:-1]], indexing="ij")
    flat = 0
    for a in range(ndim):
        within = (indices >> (ndim - 1 - a)) & 1
        position = 2 * coarse[a][None, ..., None] + within
        flat = flat * spatial[a] + position
    return flat


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 5, 6, 7, 2), (2, 9, 2)])
def test_pool_and_unpool_match_torch(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    spatial = shape[1:-1]
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(spatial)]
    unpool = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[len(spatial)]
    tp, ti = pool(to_torch(x), 2, return_indices=True)
    pooled, indices = nets.max_pool_with_indices(jnp.asarray(x))
    assert indices.dtype == jnp.int8
    np.testing.assert_array_equal(pooled, from_torch(tp))
    np.testing.assert_array_equal(torch_flat_indices(indices, spatial), from_torch(ti))
    out = nets.max_unpool(pooled, indices, spatial=spatial)
    np.testing.assert_array_equal(out, from_torch(unpool(tp, ti, 2, output_size=spatial)))


def test_unpool_of_pool_against_a_numpy_loop():
    x = np.random.default_rng(1).standard_normal((2, 5, 7, 3)).astype(np.float32)
    expected = np.zeros_like(x)
    for b, i, j, c in itertools.product(range(2), range(2), range(3), range(3)):
        window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
        di, dj = np.unravel_index(np.argmax(window), (2, 2))
        expected[b, 2 * i + di, 2 * j + dj, c] = window.max()
    pooled, indices = jax.jit(nets.max_pool_with_indices)(jnp.asarray(x))
    unpooled = jax.jit(nets.max_unpool, static_argnames="spatial")(pooled, indices,
                                                                   spatial=(5, 7))
    np.testing.assert_array_equal(unpooled, expected)
    assert not np.asarray(unpooled)[:, 4].any() and not np.asarray(unpooled)[:, :, 6].any()


def test_gradients_flow_to_the_maxima_as_in_torch():
    x = np.random.default_rng(2).standard_normal((1, 6, 5, 2)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((1, 6, 5, 2)).astype(np.float32)

    def f(x):
        pooled, indices = nets.max_pool_with_indices(x)
        return jnp.sum(jnp.asarray(w) * nets.max_unpool(pooled * pooled, indices,
                                                        spatial=(6, 5)))

    grad = jax.grad(f)(jnp.asarray(x))
    xt = to_torch(x).requires_grad_()
    tp, ti = F.max_pool2d(xt, 2, return_indices=True)
    (to_torch(w) * F.max_unpool2d(tp * tp, ti, 2, output_size=(6, 5))).sum().backward()
    np.testing.assert_allclose(grad, from_torch(xt.grad), rtol=1e-6, atol=1e-7)


class TorchSegNet(torch.nn.Module):
    """The same architecture in torch.nn: blocks of (conv 3x3 no bias, InstanceNorm,
    LeakyReLU 0.2) x 2, MaxPool2d(2, return_indices=True), MaxUnpool2d(2), a 1x1 conv."""

    def __init__(self, in_chans, num_classes, chans, pools):
        super().__init__()
        widths = [chans * 2 ** i for i in range(pools)]

        def block(i, o):
            return torch.nn.Sequential(
                torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.InstanceNorm2d(o),
                torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(o, o, 3, padding=1, bias=False),
                torch.nn.InstanceNorm2d(o), torch.nn.LeakyReLU(0.2))

        self.encoder = torch.nn.ModuleList(
            [block(i, o) for i, o in zip([in_chans] + widths[:-1], widths)])
        self.decoder = torch.nn.ModuleList(
            [block(widths[i], widths[max(i - 1, 0)]) for i in reversed(range(pools))])
        self.head = torch.nn.Conv2d(chans, num_classes, 1)

    def load_from(self, model):
        def kernel(p):
            return torch.from_numpy(np.asarray(p[...]).transpose(3, 2, 0, 1).copy())

        for ours, theirs in zip(list(model.encoder) + list(model.decoder),
                                list(self.encoder) + list(self.decoder)):
            theirs[0].weight.data = kernel(ours.kernel1)
            theirs[3].weight.data = kernel(ours.kernel2)
        self.head.weight.data = kernel(model.head_kernel)
        self.head.bias.data = torch.from_numpy(np.asarray(model.head_bias[...]).copy())

    def forward(self, x):
        trail = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[2:]
            x, indices = F.max_pool2d(x, 2, return_indices=True)
            trail.append((indices, size))
        for block in self.decoder:
            indices, size = trail.pop()
            x = block(F.max_unpool2d(x, indices, 2, output_size=size))
        return self.head(x)


def test_segnet_matches_a_torch_segnet_with_the_same_weights_on_odd_sizes():
    model = nets.SegNet(2, 4, chans=4, num_pool_layers=3, rngs=nnx.Rngs(0))
    ref = TorchSegNet(2, 4, 4, 3)
    ref.load_from(model)
    x = np.random.default_rng(4).standard_normal((2, 21, 17, 2)).astype(np.float32)
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.asarray(x))
    with torch.no_grad():
        expected = from_torch(ref(to_torch(x)))
    assert out.shape == (2, 21, 17, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_segnet_3d_odd_sizes_and_gradients():
    model = nets.SegNet(1, 3, chans=2, num_pool_layers=1, ndim=3, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(5).standard_normal((1, 5, 4, 3, 1)), jnp.float32)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        logits = nnx.merge(graphdef, params)(x)
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert len(leaves) == 2 * 2 + 2 and all(float(jnp.abs(g).max()) > 0 for g in leaves)
    assert model(x).shape == (1, 5, 4, 3, 3)


def test_segnet_stage_in_a_jitted_chain():
    image = np.random.default_rng(6).standard_normal((20, 18)).astype(np.float32)
    pipe = pipeline.chain(pipeline.map_field(lambda x: 2 * x, source="image"),
                          nets.stage(lambda rngs: nets.SegNet(1, 3, chans=2,
                                                              num_pool_layers=2, rngs=rngs)))
    sample = pipeline.Sample(image=image)
    params = jax.jit(pipe.init)(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
    model = nnx.merge(nnx.graphdef(nets.SegNet(1, 3, chans=2, num_pool_layers=2,
                                               rngs=nnx.Rngs(0))), params[1])
    assert out.segmentation.shape == (20, 18, 3)
    np.testing.assert_allclose(out.segmentation, model(2 * image[None, ..., None])[0],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.image, 2 * image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mskjax.nets.SegNet: num_classes must be an integer"):
        nets.SegNet(1, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        nets.SegNet(1, 2, ndim=4, rngs=nnx.Rngs(0))
    model = nets.SegNet(1, 2, chans=2, num_pool_layers=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"at least 2 \*\* num_pool_layers = 8, got \(7, 9\)"):
        model(jnp.zeros((1, 7, 9, 1)))
    with pytest.raises(ValueError, match=r"x must be \(batch, \*spatial, 1\)"):
        model(jnp.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="every spatial size must be at least 2"):
        nets.max_pool_with_indices(jnp.zeros((1, 1, 4, 1)))
    pooled, indices = nets.max_pool_with_indices(jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"mskjax.nets.max_unpool: x must be"):
        nets.max_unpool(pooled, indices, spatial=(6, 4))
