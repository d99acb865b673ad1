"""Class activation maps and Grad-CAM: the exact identities of a GAP + linear head, a hand-made
case with the evidence in one corner, nets that bring their own head (max pooling, several
planes), jit, batches, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax.nets import (Classifier, ClassifierHead, class_activation_map, features_and_head,
                         grad_cam)


class TinyBackbone(nnx.Module):
    """A strided convolution, BatchNorm and ReLU: ``(b, *spatial, in_chans)`` ->
    ``(b, *spatial / 2, out_features)``; follows the backbone contract."""

    def __init__(self, in_chans=1, out_features=4, *, ndim=2, rngs):
        self.ndim, self.in_chans, self.out_features = ndim, in_chans, out_features
        self.conv = nnx.Conv(in_chans, out_features, (3,) * ndim, strides=2, rngs=rngs)
        self.norm = nnx.BatchNorm(out_features, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.norm(self.conv(x)))


def make_classifier(task="multiclass", num_classes=3, *, ndim=2, in_chans=1, seed=0):
    rngs = nnx.Rngs(seed)
    backbone = TinyBackbone(in_chans, 4, ndim=ndim, rngs=rngs)
    head = ClassifierHead(4, task=task, num_classes=num_classes, rngs=rngs)
    net = Classifier(backbone, head)
    # running statistics away from the initial 0 / 1, so that evaluation mode matters
    net.backbone.norm.mean[...] = jnp.array([0.1, -0.2, 0.0, 0.3])
    net.backbone.norm.var[...] = jnp.array([0.5, 2.0, 1.0, 1.5])
    return net


@pytest.fixture
def images(rng):
    return jnp.asarray(rng.standard_normal((3, 8, 8, 1)), jnp.float32)


@pytest.mark.parametrize("task,num_classes", [("multiclass", 3), ("binary", None),
                                              ("ordinal", 4), ("regression", None)])
def test_cam_mean_plus_bias_is_the_output(images, task, num_classes):
    net = make_classifier(task, num_classes)
    net.eval()
    outputs = net(images)
    for t in range(net.num_outputs):
        cam = class_activation_map(net, images, target=t, resize=False)
        assert cam.shape == (3, 4, 4)
        np.testing.assert_allclose(cam.mean(axis=(1, 2)) + net.head.bias[...][t],
                                   outputs[:, t], rtol=1e-5, atol=1e-6)


def test_grad_cam_is_relu_cam_over_positions(images):
    for task, num_classes in (("multiclass", 3), ("binary", None), ("ordinal", 4)):
        net = make_classifier(task, num_classes, seed=1)
        n = 4 * 4
        for t in range(net.num_outputs):
            for resize in (False, True):
                gc = grad_cam(net, images, target=t, resize=resize)
                cam = class_activation_map(net, images, target=t, relu=True, resize=resize)
                np.testing.assert_allclose(gc, cam / n, rtol=1e-5, atol=1e-7)
        # the raw CAM has negative evidence too, Grad-CAM does not
        raw = class_activation_map(net, images, target=0, resize=False)
        assert float(raw.min()) < 0 <= float(grad_cam(net, images, target=0).min())


def test_resized_shapes_and_default_target(images, rng):
    net = make_classifier()
    cam = class_activation_map(net, images)
    assert cam.shape == (3, 8, 8) and cam.dtype == jnp.float32
    # default target: the predicted class of each example
    net.eval()
    predicted = np.asarray(jnp.argmax(net(images), axis=-1))
    np.testing.assert_array_equal(class_activation_map(net, images),
                                  class_activation_map(net, images, target=predicted))
    np.testing.assert_array_equal(grad_cam(net, images),
                                  grad_cam(net, images, target=predicted))
    # resized linearly from the (4, 4) map, with half-pixel centres
    small = class_activation_map(net, images, resize=False)
    np.testing.assert_allclose(cam, jax.image.resize(small, (3, 8, 8), "linear"), rtol=1e-6)
    # 3-D, odd sizes
    net3 = make_classifier(ndim=3, in_chans=2)
    x3 = jnp.asarray(rng.standard_normal((2, 7, 6, 9, 2)), jnp.float32)
    assert class_activation_map(net3, x3).shape == (2, 7, 6, 9)
    assert grad_cam(net3, x3, normalize=True).shape == (2, 7, 6, 9)
    norm = class_activation_map(net3, x3, normalize=True)
    np.testing.assert_allclose(norm.min(axis=(1, 2, 3)), 0, atol=1e-7)
    np.testing.assert_allclose(norm.max(axis=(1, 2, 3)), 1, rtol=1e-6)


@pytest.mark.parametrize("corner", [(0, 0), (12, 12), (0, 12)])
def test_the_map_peaks_where_the_evidence_is(corner):
    """Feature channel 0 copies the image; class 1 reads channel 0, class 0 reads its opposite.
    A bright patch in one corner makes class 1 the prediction, and both maps peak there."""
    net = make_classifier("multiclass", 2)
    kernel = np.zeros((3, 3, 1, 4), np.float32)
    kernel[1, 1, 0, 0] = 1.0
    net.backbone.conv.kernel[...] = jnp.asarray(kernel)
    net.backbone.conv.bias[...] = jnp.zeros(4)
    net.backbone.norm.mean[...] = jnp.zeros(4)
    net.backbone.norm.var[...] = jnp.ones(4) - net.backbone.norm.epsilon
    head = np.zeros((4, 2), np.float32)
    head[0] = [-1.0, 1.0]
    net.head.kernel[...] = jnp.asarray(head)
    net.head.bias[...] = jnp.zeros(2)
    image = np.zeros((1, 16, 16, 1), np.float32)
    r, c = corner
    image[0, r:r + 4, c:c + 4, 0] = 1.0
    image = jnp.asarray(image)
    net.eval()
    assert int(jnp.argmax(net(image)[0])) == 1
    for maps in (class_activation_map(net, image), grad_cam(net, image)):
        peak = np.unravel_index(int(jnp.argmax(maps[0])), (16, 16))
        assert r <= peak[0] < r + 4 and c <= peak[1] < c + 4, (corner, peak)
        inside = np.asarray(maps[0, r:r + 4, c:c + 4])
        assert inside.min() > 0.5 * float(maps.max())
        outside = np.asarray(maps[0]).copy()
        outside[max(r - 2, 0):r + 6, max(c - 2, 0):c + 6] = 0
        assert np.all(outside == 0)


def test_jit_equals_eager_and_batch_equals_examples(images):
    net = make_classifier()  # in training mode: the maps use an evaluation view anyway
    cam_jit = nnx.jit(lambda m, x: class_activation_map(m, x, normalize=True))
    gc_jit = nnx.jit(lambda m, x, t: grad_cam(m, x, target=t))
    np.testing.assert_allclose(cam_jit(net, images),
                               class_activation_map(net, images, normalize=True),
                               rtol=1e-5, atol=1e-6)
    target = jnp.array([0, 2, 1])
    batch = grad_cam(net, images, target=target)
    np.testing.assert_allclose(gc_jit(net, images, target), batch, rtol=1e-5, atol=1e-7)
    one_by_one = [grad_cam(net, images[i:i + 1], target=int(target[i]))[0] for i in range(3)]
    np.testing.assert_allclose(batch, np.stack(one_by_one), rtol=1e-5, atol=1e-7)
    assert net.backbone.norm.use_running_average is False  # the net was not switched
    # a traced target out of range gives NaN maps for that example only, never a clipped one
    bad = gc_jit(net, images, jnp.array([0, 3, 1]))
    bad = np.asarray(bad)
    assert np.all(np.isnan(bad[1])) and np.all(np.isfinite(bad[[0, 2]]))


class MaxPoolNet(nnx.Module):
    """A net whose head is global max pooling and a linear layer, through head_from_features."""

    def __init__(self, rngs):
        self.backbone = TinyBackbone(1, 4, rngs=rngs)
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def features(self, x):
        return self.backbone(x)

    def head_from_features(self, maps):
        return self.linear(jnp.max(maps, axis=(1, 2)))

    def __call__(self, x):
        return self.head_from_features(self.features(x))


class MultiViewToy(nnx.Module):
    """MRNet layout: per plane a stack of slices ``(b, slices, H, W, 1)``, a shared 2-D backbone
    per slice, max over slices and positions per plane, the planes concatenated, one linear."""

    def __init__(self, rngs):
        self.backbone = TinyBackbone(1, 4, rngs=rngs)
        self.linear = nnx.Linear(12, 1, rngs=rngs)

    def features(self, views):
        out = []
        for v in views:
            b, s = v.shape[:2]
            f = self.backbone(v.reshape((b * s,) + v.shape[2:]))
            out.append(f.reshape((b, s) + f.shape[1:]))
        return tuple(out)

    def head_from_features(self, maps):
        pooled = [jnp.max(m, axis=(1, 2, 3)) for m in maps]
        return self.linear(jnp.concatenate(pooled, axis=-1))


def test_a_net_with_its_own_head(images):
    net = MaxPoolNet(nnx.Rngs(3))
    net.eval()
    features_fn, head_fn = features_and_head(net)
    np.testing.assert_allclose(head_fn(features_fn(images)), net(images), rtol=1e-6)
    # max pooling: the gradient is W[c, t] at each channel's maximum, so w_c = W[c, t] / n
    maps = net.features(images)
    for t in range(3):
        weights = net.linear.kernel[...][:, t] / 16
        expected = jnp.maximum(jnp.einsum("bhwc,c->bhw", maps, weights), 0)
        np.testing.assert_allclose(grad_cam(net, images, target=t, resize=False), expected,
                                   rtol=1e-5, atol=1e-7)
    # another split of the same net (looking at the features before the ReLU)
    pre = (lambda x: net.backbone.norm(net.backbone.conv(x)),
           lambda a: net.head_from_features(jax.nn.relu(a)))
    assert grad_cam(net, images, target=1, features=pre).shape == (3, 8, 8)


def test_multi_view_gives_one_map_per_plane_and_slice(rng):
    net = MultiViewToy(nnx.Rngs(4))
    views = tuple(jnp.asarray(rng.standard_normal((2, s, 8, 8, 1)), jnp.float32)
                  for s in (3, 5, 2))
    maps = grad_cam(net, views)
    assert [m.shape for m in maps] == [(2, 3, 8, 8), (2, 5, 8, 8), (2, 2, 8, 8)]
    small = grad_cam(net, views, resize=False)
    net.eval()  # the maps are of the evaluation mode
    features = net.features(views)
    kernel = net.linear.kernel[...][:, 0]
    for p, (m, a) in enumerate(zip(small, features)):
        n = a.shape[1] * a.shape[2] * a.shape[3]
        expected = jnp.maximum(jnp.einsum("bshwc,c->bshw", a, kernel[4 * p:4 * p + 4] / n), 0)
        np.testing.assert_allclose(m, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="grad_cam: resize=True needs an input array or an "
                                         "input pytree of the feature maps' structure"):
        grad_cam(net, views, features=(lambda v: net.features(v)[:2],
                                       lambda m: net.head_from_features(m + features[2:])))


def test_errors(images):
    net = make_classifier()
    with pytest.raises(ValueError, match=r"class_activation_map: target must be an output "
                                         r"index in 0\.\.2 \(the head has 3 outputs\), got \[3\]"):
        class_activation_map(net, images, target=3)
    with pytest.raises(ValueError, match=r"grad_cam: target must be an int or an int array "
                                         r"\(batch,\) = \(3,\), got shape \(2,\)"):
        grad_cam(net, images, target=np.array([0, 1]))
    with pytest.raises(TypeError, match="class_activation_map: the net must have features"):
        class_activation_map(MaxPoolNet(nnx.Rngs(0)), images)
    with pytest.raises(TypeError, match="features_and_head: the net must have a features"):
        grad_cam(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), images)
    with pytest.raises(TypeError, match="grad_cam: the net must be an nnx.Module, got dict"):
        grad_cam({"features": None}, images)


def test_with_the_package_resnet(rng):
    import mskjax.nets

    if not hasattr(mskjax.nets, "ResNet"):
        pytest.skip("mskjax.nets.ResNet is not available")
    rngs = nnx.Rngs(5)
    backbone = mskjax.nets.ResNet(1, layers=(1, 1), width=4, norm="batch", rngs=rngs)
    net = Classifier(backbone, ClassifierHead(backbone.out_features, task="multiclass",
                                              num_classes=3, rngs=rngs))
    x = jnp.asarray(rng.standard_normal((2, 24, 20, 1)), jnp.float32)
    cam = class_activation_map(net, x, target=2, resize=False)
    net.eval()
    np.testing.assert_allclose(cam.mean(axis=(1, 2)) + net.head.bias[...][2], net(x)[:, 2],
                               rtol=1e-5, atol=1e-6)
    n = cam.shape[1] * cam.shape[2]
    gc = grad_cam(net, x, target=2)
    assert gc.shape == (2, 24, 20)
    np.testing.assert_allclose(gc, class_activation_map(net, x, target=2, relu=True) / n,
                               rtol=1e-5, atol=1e-7)


def test_with_the_package_multiview_net(rng):
    import mskjax.nets

    if not hasattr(mskjax.nets, "MultiViewNet"):
        pytest.skip("mskjax.nets.MultiViewNet is not available")
    net = mskjax.nets.MultiViewNet(lambda r: TinyBackbone(1, 4, rngs=r), task="binary",
                                   rngs=nnx.Rngs(6))
    views = tuple(jnp.asarray(rng.standard_normal((2, s, 8, 6, 1)), jnp.float32)
                  for s in (3, 4, 2))
    maps = grad_cam(net, views)
    assert [m.shape for m in maps] == [(2, 3, 8, 6), (2, 4, 8, 6), (2, 2, 8, 6)]
    # mean over the image axes, max over the slices, linear: w_c = W[c] / (slices * h * w)
    small = grad_cam(net, views, resize=False)
    net.eval()
    weights = net.head.weights()[:, 0]
    for m, a, rows in zip(small, net.features(views), net.plane_slices()):
        n = a.shape[1] * a.shape[2] * a.shape[3]
        expected = jnp.maximum(jnp.einsum("bshwc,c->bshw", a, weights[rows]) / n, 0)
        np.testing.assert_allclose(m, expected, rtol=1e-5, atol=1e-7)
