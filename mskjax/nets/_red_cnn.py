"""RED-CNN: the residual encoder-decoder CNN that denoises low-dose CT images.

Layout (Chen et al., "Low-dose CT with a residual encoder-decoder convolutional neural
network", IEEE Trans. Med. Imaging 36(12), 2017): five ``k x k`` convolutions without padding
(each shrinks the image by ``k - 1``), then five ``k x k`` transposed convolutions with stride
1 (each grows it back by ``k - 1``), all with bias and ReLU, no pooling, and three residual
shortcuts: the output of convolution 4 is added to that of deconvolution 1, the output of
convolution 2 to that of deconvolution 3, and the input to that of deconvolution 5, each sum
then through the ReLU::

    c1 = relu(conv1(x)); c2 = relu(conv2(c1)); c3 = relu(conv3(c2)); c4 = relu(conv4(c3))
    c5 = relu(conv5(c4))
    d1 = relu(deconv1(c5) + c4); d2 = relu(deconv2(d1)); d3 = relu(deconv3(d2) + c2)
    d4 = relu(deconv4(d3)); out = relu(deconv5(d4) + x)

(the reference PyTorch implementation's order). The final ReLU suits non-negative images
(attenuation in 1/cm, normalised CT numbers); ``output_relu=False`` drops it for signed
images. So a net whose weights and biases are all zero returns ``relu(x)``.

A stride-1 transposed convolution is the convolution with ``k - 1`` pixels of zero padding on
each side and the kernel flipped in space with its channel axes swapped; the deconvolution
kernels are held in that convolution form, ``(k, k, in, out)``, so that every layer goes
through :func:`mskjax.nets.conv` (to load PyTorch ``ConvTranspose2d`` weights ``(in, out, k,
k)``, flip them in space and move the axes: ``w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)``).

The paper used 96 filters of 5 x 5 in every layer (about 1.85 million weights) on 55 x 55
patches; the default here, ``features=32`` (about 0.2 million), trains in minutes on a CPU.
Kernels are Kaiming-normal (fan-in, for ReLU; the paper drew them from N(0, 0.01^2)), biases 0.

Call: ``(batch, rows, cols, in_chans)`` float32, rows and cols at least ``5 (k - 1) + 1``
(21 for 5 x 5 kernels) -> the same shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_positive_int
from ._conv import conv
from ._resnet import conv_kernel
from ._stage import image_through_net

_FUNC = "mskjax.nets.REDCNN"


class REDCNN(nnx.Module):
    """Residual encoder-decoder CNN for low-dose CT denoising (module docstring).

    Args:
        in_chans: channels of the input and output (1 for a CT image).
        features: filters of every hidden layer (keyword-only; paper: 96).
        kernel_size: the odd or even window ``k`` of every layer, >= 2 (keyword-only; paper: 5).
        output_relu: apply the ReLU after the last shortcut (keyword-only; paper: yes).
        rngs: ``nnx.Rngs`` (``params`` stream).

    Attributes: ``in_chans``, ``features``, ``kernel_size``, ``output_relu``. Params:
    ``encoder_kernels`` / ``encoder_biases`` (5 each) and ``decoder_kernels`` /
    ``decoder_biases`` (5 each, kernels in convolution form ``(k, k, in, out)``).

    Call: ``(batch, rows, cols, in_chans)`` -> the same shape and dtype.
    """

    def __init__(self, in_chans: int = 1, *, features: int = 32, kernel_size: int = 5,
                 output_relu: bool = True, rngs: nnx.Rngs):
        func = _FUNC
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(features, "features", func)
        check_positive_int(kernel_size, "kernel_size", func, minimum=2)
        if not isinstance(output_relu, bool):
            raise TypeError(f"{func}: output_relu must be a bool, got "
                            f"{type(output_relu).__name__}")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.features = in_chans, features
        self.kernel_size, self.output_relu = kernel_size, output_relu
        k = kernel_size
        encoder = [in_chans] + [features] * 5
        decoder = [features] * 5 + [in_chans]
        self.encoder_kernels = nnx.List([conv_kernel(rngs, k, a, b, 2, fan="in")
                                         for a, b in zip(encoder[:-1], encoder[1:])])
        self.encoder_biases = nnx.List([nnx.Param(jnp.zeros((b,), jnp.float32))
                                        for b in encoder[1:]])
        self.decoder_kernels = nnx.List([conv_kernel(rngs, k, a, b, 2, fan="in")
                                         for a, b in zip(decoder[:-1], decoder[1:])])
        self.decoder_biases = nnx.List([nnx.Param(jnp.zeros((b,), jnp.float32))
                                        for b in decoder[1:]])

    @property
    def min_size(self) -> int:
        """The smallest rows and cols the net takes: ``5 (k - 1) + 1``."""
        return 5 * (self.kernel_size - 1) + 1

    def __call__(self, x: jax.Array) -> jax.Array:
        func = _FUNC
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{func}: x must be an array, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[-1] != self.in_chans:
            raise ValueError(f"{func}: x must be (batch, rows, cols, {self.in_chans}), got "
                             f"shape {tuple(x.shape)}")
        if min(x.shape[1:3]) < self.min_size:
            raise ValueError(f"{func}: rows and cols must be at least {self.min_size} (five "
                             f"unpadded {self.kernel_size} x {self.kernel_size} convolutions),"
                             f" got shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{func}: x must be floating point, got {x.dtype}")
        full = self.kernel_size - 1

        def encode(h, i):
            out = conv(h, self.encoder_kernels[i][...].astype(h.dtype), padding="VALID")
            return out + self.encoder_biases[i][...].astype(h.dtype)

        def decode(h, i):
            out = conv(h, self.decoder_kernels[i][...].astype(h.dtype), padding=full)
            return out + self.decoder_biases[i][...].astype(h.dtype)

        relu = jax.nn.relu
        c1 = relu(encode(x, 0))
        c2 = relu(encode(c1, 1))
        c3 = relu(encode(c2, 2))
        c4 = relu(encode(c3, 3))
        c5 = relu(encode(c4, 4))
        d1 = relu(decode(c5, 0) + c4)
        d2 = relu(decode(d1, 1))
        d3 = relu(decode(d2, 2) + c2)
        d4 = relu(decode(d3, 3))
        out = decode(d4, 4) + x
        return relu(out) if self.output_relu else out

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image``, a real ``(rows, cols)`` CT image (e.g. a
        low-dose filtered back-projection) with ``in_chans == 1``, through the net; the result
        replaces ``sample.image``."""
        return sample.replace(image=image_through_net(self, sample, 2, "mskjax.nets.REDCNN"))
