"""A plain 3D convolutional net for volumes, as a classifier backbone.

Layout, for ``chans = (c0, c1, ..., cL)``: a level at full resolution of two 3 x 3 x 3
convolutions (``in_chans`` -> ``c0`` -> ``c0``), then for each further ``ci`` a level of a
3 x 3 x 3 convolution with stride 2 (``c(i-1)`` -> ``ci``, halving every axis: ``n`` ->
``ceil(n / 2)``) and a 3 x 3 x 3 convolution (``ci`` -> ``ci``). Every convolution has one voxel
of zero padding, no bias, and is followed by a norm and ReLU. There is no pooling and no
classifier: the output is the last feature map ``(batch, *ceil(spatial / 2**L), cL)``, as the
backbone contract of :class:`mskjax.nets.Classifier` asks; a :class:`ClassifierHead` on it is
global average pooling and one linear layer.

The default ``(16, 32, 64, 128)`` has 3 downsamplings (an input of 64**3 voxels gives an
8**3 map of 128 features; 0.88 million weights for one input channel). Every axis of the
input must have at least ``2 ** (len(chans) - 1)`` voxels. Convolutions are initialised Kaiming-normal in fan-out mode,
norms with scale 1 and offset 0. ``norm`` is batch (default), instance or group
normalisation (:mod:`mskjax.nets._norm` states the trade-off: volumes come one or two to a
batch, where instance or group normalisation is the safer choice).
"""

from __future__ import annotations

import jax
from flax import nnx

from .._checks import check_positive_int
from ._conv import conv
from ._downsample import check_backbone_input, conv_strided, out_size
from ._norm import check_norm, make_norm
from ._resnet import conv_kernel

_FUNC = "mskjax.nets.CNN3D"


class CNN3D(nnx.Module):
    """Plain 3D CNN backbone (module docstring): volumes -> last feature map.

    Args:
        in_chans: input channels.
        chans: channels of each level (keyword-only), a non-empty sequence of positive ints;
            ``len(chans) - 1`` stride-2 steps.
        norm: ``"batch"``, ``"instance"`` or ``"group"``.
        rngs: ``nnx.Rngs`` (``params`` stream).

    Attributes: ``ndim`` (3), ``in_chans``, ``out_features`` (``chans[-1]``), ``chans``,
    ``norm``, ``downsamplings``. Params: ``kernels`` (two per level, ``(3, 3, 3, in, out)``)
    and ``norms``, in order.

    Call: ``(batch, x, y, z, in_chans)`` float -> ``(batch, *feature_shape((x, y, z)),
    out_features)``.
    """

    def __init__(self, in_chans: int, *, chans=(16, 32, 64, 128), norm: str = "batch",
                 rngs: nnx.Rngs):
        func = _FUNC
        check_positive_int(in_chans, "in_chans", func)
        if (not isinstance(chans, (tuple, list)) or not chans
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                           for c in chans)):
            raise ValueError(f"{func}: chans must be a non-empty sequence of positive ints, got "
                             f"{chans!r}")
        check_norm(norm, func)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.ndim, self.norm = in_chans, 3, norm
        self.chans = tuple(chans)
        self.downsamplings = len(self.chans) - 1
        self.out_features = self.chans[-1]
        widths = [in_chans]
        for c in self.chans:
            widths += [c, c]
        self.kernels = nnx.List([conv_kernel(rngs, 3, a, b, 3)
                                 for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([make_norm(norm, c, rngs=rngs) for c in widths[1:]])

    def feature_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the feature map for an input of spatial shape ``spatial``."""
        out = []
        for n in spatial:
            for _ in range(self.downsamplings):
                n = out_size(n, 3, 2, 1)
            out.append(n)
        return tuple(out)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_backbone_input(x, func=_FUNC, ndim=3, in_chans=self.in_chans,
                             downsamplings=self.downsamplings)
        for i, (kernel, norm) in enumerate(zip(self.kernels, self.norms)):
            if i % 2 == 0 and i > 0:
                x = conv_strided(x, kernel[...], stride=2, padding=1)
            else:
                x = conv(x, kernel[...], padding=1)
            x = jax.nn.relu(norm(x))
        return x
