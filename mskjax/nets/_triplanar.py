"""The triplanar CNN of Prasoon et al. (2013, MICCAI, LNCS 8150:246): a voxel classified from
three 2D patches centred on it, in the three planes through it.

Planes. Patch ``k`` lies in the plane perpendicular to spatial axis ``k`` of the volume, its
two axes the other two in increasing order. With :data:`mskjax.sim.AXES` (left-right,
superior-inferior, anterior-posterior) patch 0 is sagittal, patch 1 axial and patch 2 coronal.
A ``patch_size`` ``P`` patch centred on voxel ``v`` covers ``v - P // 2 .. v - P // 2 + P - 1``
(the centre is the voxel just past the middle when ``P`` is even); outside the volume it reads
zeros.

Net. Each plane has its own small 2D CNN, as in the paper: a ``kernel_size`` convolution
(valid), ReLU, 2 x 2 max pooling, a second convolution, ReLU, pooling, and a dense layer to
``hidden`` features with ReLU; the three feature vectors are concatenated and fused by a dense
layer (``hidden``, ReLU) and a last dense layer to the class logits. With the defaults
(``P = 28``, 5 x 5 kernels, 20 and 50 channels) the maps are 24, 12, 8 and 4 pixels wide, the
paper's sizes.

Whole volumes (:meth:`TriplanarCNN.segment`). Classifying every voxel patch by patch repeats
almost all the work of its neighbours. The net is instead evaluated fully convolutionally on
every slice of each plane: a max pooling of stride 2 becomes one of stride 1, and every later
layer a convolution dilated by the product of the strides removed before it (2, then 4 for the
dense layer, a convolution as wide as the last map). Output pixel ``i`` of a slice zero-padded
by ``P // 2`` is then exactly the net's output for the patch centred on voxel ``i``: the same
sums of the same numbers, equal to the per-patch result up to float32 round-off (a test
checks). Dilated convolutions go through :func:`mskjax.nets.conv` by space-to-batch (the
polyphase components of the map, each convolved without dilation). The first fusion layer is
linear, so it is applied plane by plane and summed, never holding the three feature maps at
once; ``slice_batch`` bounds the memory further.

Arrays are channels-last float32: patches ``(batch, 3, P, P, in_chans)``, volumes ``(batch, X,
Y, Z, in_chans)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import _is_concrete, check_positive_int
from ._blocks import uniform_init
from ._conv import conv
from ._segmentation import image_channels

_FUNC = "mskjax.nets.TriplanarCNN"


def _map_sizes(patch_size, kernel_size):
    """The side of each map: conv1, pool1, conv2, pool2."""
    c1 = patch_size - kernel_size + 1
    p1 = c1 // 2
    c2 = p1 - kernel_size + 1
    return c1, p1, c2, c2 // 2


def triplanar_patches(volume: jax.Array, coords: jax.Array, *, patch_size: int) -> jax.Array:
    """The three orthogonal 2D patches centred on each of a set of voxels.

    Args:
        volume: ``(X, Y, Z, channels)``, one example (no batch axis).
        coords: integer ``(n, 3)`` voxel indices, each inside the volume (checked when
            concrete; under ``jit`` an index outside is clamped by ``lax.dynamic_slice``).
        patch_size: ``P``, the side of the patches (keyword-only).

    Returns:
        ``(n, 3, P, P, channels)``: patch ``k`` in the plane perpendicular to axis ``k``
        (module docstring), zeros outside the volume. A zero padding and one
        ``lax.dynamic_slice`` per patch, vmapped: pure JAX, jittable.
    """
    func = "mskjax.nets.triplanar_patches"
    check_positive_int(patch_size, "patch_size", func)
    volume = jnp.asarray(volume)
    coords = jnp.asarray(coords)
    if volume.ndim != 4:
        raise ValueError(f"{func}: volume must be (X, Y, Z, channels), got shape "
                         f"{tuple(volume.shape)}")
    if coords.ndim != 2 or coords.shape[1] != 3 or not jnp.issubdtype(coords.dtype,
                                                                      jnp.integer):
        raise ValueError(f"{func}: coords must be integer (n, 3) voxel indices, got shape "
                         f"{tuple(coords.shape)} ({coords.dtype})")
    if _is_concrete(coords) and coords.size:
        values = np.asarray(coords)
        if values.min() < 0 or np.any(values.max(0) >= np.asarray(volume.shape[:3])):
            raise ValueError(f"{func}: coords must lie inside the volume {volume.shape[:3]}, "
                             f"got values from {values.min(0)} to {values.max(0)}")
    before = patch_size // 2
    padded = jnp.pad(volume, [(before, patch_size - 1 - before)] * 3 + [(0, 0)])
    c = volume.shape[-1]

    def one(voxel):
        x, y, z = voxel[0], voxel[1], voxel[2]
        p0 = jax.lax.dynamic_slice(padded, (x + before, y, z, 0), (1, patch_size, patch_size, c))
        p1 = jax.lax.dynamic_slice(padded, (x, y + before, z, 0), (patch_size, 1, patch_size, c))
        p2 = jax.lax.dynamic_slice(padded, (x, y, z + before, 0), (patch_size, patch_size, 1, c))
        return jnp.stack([p0[0], p1[:, 0], p2[:, :, 0]])

    return jax.vmap(one)(coords.astype(jnp.int32))


def _dilated_conv(x, kernel, dilation):
    """Valid 2D convolution with the kernel dilated by ``dilation``, through ``conv`` by
    space-to-batch: ``(B, H, W, C)`` -> ``(B, H - d (k - 1), W - d (k - 1), O)``."""
    if dilation == 1:
        return conv(x, kernel, padding=0)
    d = dilation
    b, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    out_h, out_w = h - d * (kh - 1), w - d * (kw - 1)
    hp, wp = -(-h // d) * d, -(-w // d) * d
    x = jnp.pad(x, [(0, 0), (0, hp - h), (0, wp - w), (0, 0)])
    x = x.reshape(b, hp // d, d, wp // d, d, c).transpose(0, 2, 4, 1, 3, 5)
    y = conv(x.reshape(b * d * d, hp // d, wp // d, c), kernel, padding=0)
    o = y.shape[-1]
    y = y.reshape(b, d, d, *y.shape[1:3], o).transpose(0, 3, 1, 4, 2, 5)
    return y.reshape(b, y.shape[1] * d, y.shape[3] * d, o)[:, :out_h, :out_w]


def _dilated_pool(x, dilation):
    """Max over ``{i, i + d}`` along both spatial axes (a 2 x 2 pool of stride 1, dilated)."""
    d = dilation
    x = jnp.maximum(x[:, :-d], x[:, d:])
    return jnp.maximum(x[:, :, :-d], x[:, :, d:])


def _pool(x):
    """2 x 2 max pooling with stride 2, an odd trailing row dropped."""
    b, h, w, c = x.shape
    x = x[:, :2 * (h // 2), :2 * (w // 2)].reshape(b, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4))


class _PlaneCNN(nnx.Module):
    """conv, ReLU, pool, conv, ReLU, pool, dense, ReLU on ``(B, P, P, C)`` patches."""

    def __init__(self, in_chans, chans, kernel_size, patch_size, hidden, *, rngs):
        c1, c2 = chans
        k = kernel_size
        side = _map_sizes(patch_size, kernel_size)[3]
        self.kernel1 = nnx.Param(uniform_init(rngs.params(), (k, k, in_chans, c1),
                                              in_chans * k * k))
        self.bias1 = nnx.Param(uniform_init(rngs.params(), (c1,), in_chans * k * k))
        self.kernel2 = nnx.Param(uniform_init(rngs.params(), (k, k, c1, c2), c1 * k * k))
        self.bias2 = nnx.Param(uniform_init(rngs.params(), (c2,), c1 * k * k))
        # the dense layer on the flattened (side, side, c2) map, held as a convolution kernel
        self.kernel3 = nnx.Param(uniform_init(rngs.params(), (side, side, c2, hidden),
                                              side * side * c2))
        self.bias3 = nnx.Param(uniform_init(rngs.params(), (hidden,), side * side * c2))

    def __call__(self, x):
        x = _pool(jax.nn.relu(conv(x, self.kernel1[...], padding=0) + self.bias1[...]))
        x = _pool(jax.nn.relu(conv(x, self.kernel2[...], padding=0) + self.bias2[...]))
        x = jax.nn.relu(conv(x, self.kernel3[...], padding=0) + self.bias3[...])
        return x[:, 0, 0]

    def dense(self, x):
        """The same net at every pixel of ``(B, H, W, C)``: output ``i`` is the net on the
        patch starting at ``i``; ``(B, H - R + 1, W - R + 1, hidden)``, ``R`` the receptive
        field."""
        x = jax.nn.relu(conv(x, self.kernel1[...], padding=0) + self.bias1[...])
        x = _dilated_pool(x, 1)
        x = jax.nn.relu(_dilated_conv(x, self.kernel2[...], 2) + self.bias2[...])
        x = _dilated_pool(x, 2)
        return jax.nn.relu(_dilated_conv(x, self.kernel3[...], 4) + self.bias3[...])


class TriplanarCNN(nnx.Module):
    """Prasoon et al.'s triplanar CNN: three 2D CNNs on orthogonal patches, fused (module doc).

    Args:
        in_chans: input channels.
        num_classes: class logits out (background included).
        patch_size: side ``P`` of the patches (keyword-only).
        chans: channels of the two convolutions of each plane's CNN.
        kernel_size: side of their kernels.
        hidden: features of each plane's dense layer and of the fusion layer.
        rngs: ``nnx.Rngs`` (``params`` stream).

    Call ``model(patches)``: ``(batch, 3, P, P, in_chans)`` (from :func:`triplanar_patches`)
    -> logits ``(batch, num_classes)``. :meth:`segment` classifies every voxel of volumes.
    ``apply_sample(sample)`` (the :func:`mskjax.nets.stage` protocol) maps ``sample.image``
    ``(X, Y, Z)`` or ``(X, Y, Z, in_chans)`` to ``sample.segmentation`` logits ``(X, Y, Z,
    num_classes)``.
    """

    def __init__(self, in_chans: int, num_classes: int, *, patch_size: int = 28,
                 chans: tuple[int, int] = (20, 50), kernel_size: int = 5, hidden: int = 64,
                 rngs: nnx.Rngs):
        check_positive_int(in_chans, "in_chans", _FUNC)
        check_positive_int(num_classes, "num_classes", _FUNC)
        check_positive_int(patch_size, "patch_size", _FUNC)
        check_positive_int(kernel_size, "kernel_size", _FUNC)
        check_positive_int(hidden, "hidden", _FUNC)
        if not (isinstance(chans, (tuple, list)) and len(chans) == 2):
            raise ValueError(f"{_FUNC}: chans must be two channel counts, got {chans!r}")
        for c in chans:
            check_positive_int(c, "chans", _FUNC)
        if _map_sizes(patch_size, kernel_size)[3] < 1:
            raise ValueError(f"{_FUNC}: patch_size {patch_size} is too small for two "
                             f"{kernel_size} x {kernel_size} convolutions and two poolings "
                             f"(at least {3 * kernel_size + 1} with this kernel_size)")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{_FUNC}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.num_classes, self.patch_size = in_chans, num_classes, patch_size
        self.chans, self.kernel_size, self.hidden = tuple(chans), kernel_size, hidden
        self.ndim = 3
        self.planes = nnx.List([_PlaneCNN(in_chans, tuple(chans), kernel_size, patch_size,
                                          hidden, rngs=rngs) for _ in range(3)])
        self.fuse_kernel = nnx.Param(uniform_init(rngs.params(), (3, hidden, hidden),
                                                  3 * hidden))
        self.fuse_bias = nnx.Param(uniform_init(rngs.params(), (hidden,), 3 * hidden))
        self.out_kernel = nnx.Param(uniform_init(rngs.params(), (hidden, num_classes), hidden))
        self.out_bias = nnx.Param(uniform_init(rngs.params(), (num_classes,), hidden))

    def __call__(self, patches: jax.Array) -> jax.Array:
        p, c = self.patch_size, self.in_chans
        if patches.ndim != 5 or tuple(patches.shape[1:]) != (3, p, p, c):
            raise ValueError(f"{_FUNC}: patches must be (batch, 3, {p}, {p}, {c}), got shape "
                             f"{tuple(patches.shape)}")
        if jnp.iscomplexobj(patches):
            raise TypeError(f"{_FUNC}: patches must be real, got {patches.dtype}")
        patches = jnp.asarray(patches, jnp.float32)
        fused = self.fuse_bias[...]
        for k, plane in enumerate(self.planes):
            fused = fused + plane(patches[:, k]) @ self.fuse_kernel[k]
        return jax.nn.relu(fused) @ self.out_kernel[...] + self.out_bias[...]

    def segment(self, volume: jax.Array, *, slice_batch: int | None = None) -> jax.Array:
        """Logits of every voxel, fully convolutionally (exactly the per-patch result).

        Args:
            volume: ``(batch, X, Y, Z, in_chans)``.
            slice_batch: slices of each plane evaluated at once (``lax.map`` over groups of
                them, the last group padded); None for all at once. Bounds the memory to about ``slice_batch`` times
                the slice area times ``max(chans, hidden)`` floats.

        Returns:
            ``(batch, X, Y, Z, num_classes)`` logits; voxel ``v`` is ``model(patches)`` of its
            :func:`triplanar_patches`.
        """
        c = self.in_chans
        if volume.ndim != 5 or volume.shape[-1] != c:
            raise ValueError(f"{_FUNC}.segment: volume must be (batch, X, Y, Z, {c}), got "
                             f"shape {tuple(volume.shape)}")
        if jnp.iscomplexobj(volume):
            raise TypeError(f"{_FUNC}.segment: volume must be real, got {volume.dtype}")
        if slice_batch is not None:
            check_positive_int(slice_batch, "slice_batch", f"{_FUNC}.segment")
        volume = jnp.asarray(volume, jnp.float32)
        p = self.patch_size
        before, after = p // 2, p - 1 - p // 2
        fused = self.fuse_bias[...]
        for k, plane in enumerate(self.planes):
            # slices perpendicular to axis k: (batch * n_k, a, b, C), a and b in axis order
            moved = jnp.moveaxis(volume, k + 1, 1)
            b, n, a, bb = moved.shape[:4]
            slices = moved.reshape(b * n, a, bb, c)
            slices = jnp.pad(slices, [(0, 0), (before, after), (before, after), (0, 0)])

            def run(group, plane=plane, k=k, a=a, bb=bb):
                features = plane.dense(group)[:, :a, :bb]
                return features @ self.fuse_kernel[k]

            if slice_batch is None or slice_batch >= b * n:
                out = run(slices)
            else:
                groups = -(-(b * n) // slice_batch)
                extra = groups * slice_batch - b * n
                grouped = jnp.pad(slices, [(0, extra)] + [(0, 0)] * 3)
                grouped = grouped.reshape(groups, slice_batch, *slices.shape[1:])
                out = jax.lax.map(run, grouped)
                out = out.reshape(groups * slice_batch, *out.shape[2:])[:b * n]
            out = jnp.moveaxis(out.reshape(b, n, a, bb, -1), 1, k + 1)
            fused = fused + out
        return jax.nn.relu(fused) @ self.out_kernel[...] + self.out_bias[...]

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image`` -> ``sample.segmentation`` logits."""
        x = image_channels(sample.image, ndim=3, in_chans=self.in_chans,
                           func=f"{_FUNC}.apply_sample")
        return sample.replace(segmentation=self.segment(x[None])[0])
