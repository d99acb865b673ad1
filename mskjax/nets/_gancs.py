"""The GANCS generator: a residual CNN followed by an affine data-consistency projection.

Mardani et al., "Deep Generative Adversarial Neural Networks for Compressive Sensing MRI",
IEEE Trans. Med. Imaging 38(1):167-179, 2019 (GANCS). The generator maps the zero-filled SENSE
image ``x_0 = A^H y`` through a residual network ``G`` and then projects the result onto the
set of images consistent with the measured k-space:

    z = x_0 + N_w(x_0),        x = P(z) = z + A^+ (y - A z),

with ``A = M F S`` :class:`mskjax.linop.Sense` and ``P`` :func:`mskjax.solvers.affine_projection`
(CG on ``A^H A``; implicit gradients). After the projection ``M F S x == y`` on the sampled
locations to the CG tolerance; the net only fills in the k-space that was not measured. It is
trained against a discriminator (:func:`mskjax.train.make_gan_train_step`) with a mix of pixel
and least-squares GAN losses.

``N_w``: a 3 x 3 convolution from the two channels (real, imaginary) to ``features``, then
``num_blocks`` residual blocks (convolution, ReLU, convolution, plus the block's input), a ReLU
and a last convolution back to two channels, whose output is added to the input image (the
global skip). The paper's generator has 5 residual blocks of 128 feature maps with batch
normalisation; the defaults here are 4 blocks of 32 features without normalisation (no running
statistics; the input scaling below plays its part), small enough to train in minutes on a CPU.

Conventions as in :mod:`mskjax.nets._varnet`: one example, k-space complex ``(coils, rows,
cols)``, maps the same shape, a mask broadcasting to it; the image is complex ``(rows, cols)``;
batch with ``jax.vmap``. The k-space is divided by the 99th percentile of ``|A^H y|`` on the way
in and the image multiplied by it on the way out, so ``net(c * y) == c * net(y)`` for ``c > 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import check_positive_int
from ..linop import Sense
from ..solvers import affine_projection
from ._conv import conv
from ._varnet import check_inputs, from_channels, input_scale, to_channels

__all__ = ["GANCSGenerator"]


class _Conv(nnx.Module):
    """A ``k x k`` convolution with bias, zero padding, channels-last, He initialisation."""

    def __init__(self, features_in, features_out, *, kernel_size, gain, param_dtype, rngs):
        init = jax.nn.initializers.variance_scaling(gain, "fan_in", "truncated_normal")
        shape = (kernel_size, kernel_size, features_in, features_out)
        self.kernel = nnx.Param(init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(jnp.zeros((features_out,), param_dtype))

    def __call__(self, x):
        kernel = self.kernel[...]
        return conv(x, kernel.astype(x.dtype), padding=kernel.shape[0] // 2) + \
            self.bias[...].astype(x.dtype)


class _ResidualBlock(nnx.Module):
    def __init__(self, features, *, kernel_size, param_dtype, rngs):
        self.conv1 = _Conv(features, features, kernel_size=kernel_size, gain=2.0,
                           param_dtype=param_dtype, rngs=rngs)
        # A small second convolution: each block starts close to the identity.
        self.conv2 = _Conv(features, features, kernel_size=kernel_size, gain=0.1,
                           param_dtype=param_dtype, rngs=rngs)

    def __call__(self, h):
        return h + self.conv2(jax.nn.relu(self.conv1(h)))


class GANCSGenerator(nnx.Module):
    """The GANCS generator (see the module docstring): residual CNN + affine projection.

    Args:
        num_blocks: residual blocks (each two convolutions).
        features: channels of the hidden layers.
        kernel_size: the convolution window (odd).
        projection: apply the affine data-consistency projection (``True``, GANCS) or return
            the residual net's output ``z`` (``False``: no data consistency).
        cg_iterations: the most CG iterations of the projection (static; fewer once CG's
            relative residual reaches ``10 * eps`` of the working precision).
        implicit: differentiate the projection implicitly (the gradient of the exact
            projection) or, with ``False`` (the default), through the CG iterations (the
            gradient of what is computed). With many coils an undersampled SENSE operator is
            often over-determined but ill-conditioned: the exact projection barely depends on
            ``z`` and a few CG iterations are far from it, so the implicit gradient does not
            describe the truncated projection and training with it degrades the net
            (observed on the 8-coil knees at 5x); the unrolled one stores ``cg_iterations``
            iterates.
        param_dtype: dtype of the parameters.
        rngs: ``nnx.Rngs`` for the initialisation (``params`` stream).

    Call ``net(kspace, mask, maps)`` with one example: k-space complex ``(coils, rows, cols)``,
    a mask broadcasting to it, coil maps ``(coils, rows, cols)``; returns the complex image
    ``(rows, cols)`` (dtype of the k-space). Batch with ``jax.vmap``.
    """

    def __init__(self, *, num_blocks: int = 4, features: int = 32, kernel_size: int = 3,
                 projection: bool = True, cg_iterations: int = 10, implicit: bool = False,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        func = "mskjax.nets.GANCSGenerator"
        check_positive_int(num_blocks, "num_blocks", func, minimum=0)
        check_positive_int(features, "features", func)
        check_positive_int(kernel_size, "kernel_size", func)
        check_positive_int(cg_iterations, "cg_iterations", func)
        if kernel_size % 2 == 0:
            raise ValueError(f"{func}: kernel_size must be odd, got {kernel_size}")
        for name, flag in (("projection", projection), ("implicit", implicit)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{func}: {name} must be a bool, got {flag!r}")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.num_blocks, self.features, self.kernel_size = num_blocks, features, kernel_size
        self.projection, self.cg_iterations = bool(projection), cg_iterations
        self.implicit = bool(implicit)
        options = dict(kernel_size=kernel_size, param_dtype=param_dtype, rngs=rngs)
        self.head = _Conv(2, features, gain=1.0, **options)
        self.blocks = nnx.List([_ResidualBlock(features, **options) for _ in range(num_blocks)])
        self.tail = _Conv(features, 2, gain=0.1, **options)

    def residual(self, image: jax.Array) -> jax.Array:
        """``x + N_w(x)`` of a batch ``(batch, rows, cols, 2)`` (real, imaginary channels)."""
        h = self.head(image)
        for block in self.blocks:
            h = block(h)
        return image + self.tail(jax.nn.relu(h))

    def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        kspace, mask, maps = check_inputs(kspace, mask, maps, "mskjax.nets.GANCSGenerator")
        operator = Sense(maps, mask=mask)
        adjoint = operator.H(kspace)
        scale = input_scale(adjoint).astype(kspace.dtype)
        data = kspace / scale
        real = adjoint.real.dtype
        z = from_channels(self.residual(to_channels(adjoint / scale).astype(real)))
        z = z.astype(kspace.dtype)
        if self.projection:
            z = affine_projection(operator, z, data, max_iter=self.cg_iterations,
                                  implicit=self.implicit).x
        return z * scale

    def apply_sample(self, sample):
        """Reconstruct ``sample.kspace`` (with ``sample.mask``, ``sample.maps``) into
        ``sample.image``: the complex image ``(rows, cols)``, not its magnitude."""
        return sample.replace(image=self(sample.kspace, sample.mask, sample.maps))
