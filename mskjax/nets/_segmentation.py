"""Segmentation with any dense-prediction net: labels from logits, and the pipeline stage.

A segmentation net maps ``(batch, *spatial, in_chans)`` images to ``(batch, *spatial,
num_classes)`` class logits (channels-last; class 0 the background). :class:`UNet` with
``out_chans=num_classes`` is one, as are :class:`SegNet` and a user's own. The reconstruction
nets' ``apply_sample`` maps ``sample.image`` to ``sample.image``; a segmentation stage must
write ``sample.segmentation`` instead, which :class:`Segmenter` does for any such net without
changing it (the least intrusive design: the U-Net stays the one fastMRI defines, with the same
weights, its reconstruction stage unchanged), optionally by sliding windows and optionally
returning probabilities or labels. :class:`SegNet` and :class:`TriplanarCNN` are segmentation
nets by construction; their own ``apply_sample`` writes logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._sliding_window import sliding_window_inference

OUTPUTS = ("logits", "probabilities", "labels")


def predict_labels(logits: jax.Array) -> jax.Array:
    """Class labels from scores: ``argmax`` over the last (channel) axis.

    Args:
        logits: ``(..., num_classes)`` logits or probabilities, real.

    Returns:
        int32 ``(...)``; the first class where several tie. NaN scores give the class of the
        first NaN (numpy's argmax), never a silent 0.
    """
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"mskjax.nets.predict_labels: logits must be (..., num_classes), got "
                         f"shape {tuple(logits.shape)}")
    if jnp.iscomplexobj(logits):
        raise TypeError(f"mskjax.nets.predict_labels: logits must be real, got {logits.dtype}")
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def image_channels(image, *, ndim: int, in_chans: int, func: str) -> jax.Array:
    """One example's image as ``(*spatial, in_chans)`` channels: a real ``(*spatial)`` image
    (one channel), real ``(*spatial, in_chans)`` channels, or a complex ``(*spatial)`` image as
    two channels (real, imaginary)."""
    if image is None:
        raise ValueError(f"{func}: the sample has no image; an earlier stage or the input "
                         "sample must set it")
    image = jnp.asarray(image)
    if jnp.iscomplexobj(image) and image.ndim == ndim:
        x = jnp.stack([image.real, image.imag], axis=-1)
    elif image.ndim == ndim and not jnp.iscomplexobj(image):
        x = image[..., None]
    elif image.ndim == ndim + 1 and not jnp.iscomplexobj(image):
        x = image
    else:
        raise ValueError(f"{func}: sample.image must be (*spatial) or (*spatial, channels) "
                         f"with {ndim} spatial axes, got shape {image.shape} ({image.dtype})")
    if x.shape[-1] != in_chans:
        raise ValueError(f"{func}: the net takes {in_chans} input channels, got an image of "
                         f"shape {image.shape} ({image.dtype})")
    return x


def _net_sizes(net, func):
    sizes = [getattr(net, name, None) for name in ("ndim", "in_chans")]
    if not all(isinstance(s, int) for s in sizes):
        raise TypeError(f"{func}: the net must have int attributes ndim and in_chans (as UNet "
                        f"and SegNet have), got {type(net).__name__}")
    return sizes


def segment_sample(net, sample, *, func, output="logits", window=None, overlap=0.5,
                   sigma_scale=0.125, batch_size=1):
    """``sample.image`` through ``net`` (``(batch, *spatial, C)`` -> ``(batch, *spatial,
    classes)``) into ``sample.segmentation``."""
    ndim, in_chans = _net_sizes(net, func)
    x = image_channels(sample.image, ndim=ndim, in_chans=in_chans, func=func)
    if window is None:
        logits = net(x[None])[0]
    else:
        logits = sliding_window_inference(net, x, window=window, overlap=overlap,
                                          sigma_scale=sigma_scale, batch_size=batch_size)
    if output == "probabilities":
        return sample.replace(segmentation=jax.nn.softmax(logits, axis=-1))
    if output == "labels":
        return sample.replace(segmentation=predict_labels(logits))
    return sample.replace(segmentation=logits)


class Segmenter(nnx.Module):
    """A dense-prediction net as a segmentation stage: ``sample.image`` -> ``sample.segmentation``.

    Args:
        net: an ``nnx.Module`` mapping ``(batch, *spatial, in_chans)`` to ``(batch, *spatial,
            num_classes)`` logits, with int attributes ``ndim`` and ``in_chans`` (e.g.
            ``UNet(1, num_classes, ndim=3, rngs=rngs)``, :class:`SegNet`).
        output: what ``apply_sample`` writes (keyword-only): ``"logits"`` ``(*spatial,
            num_classes)``, ``"probabilities"`` (their softmax) or ``"labels"`` (int32
            ``(*spatial)``, :func:`predict_labels`).
        window: None to run the net on the whole image, or a tile size (an int or one per
            spatial axis) for :func:`sliding_window_inference` (device path, jittable) with
            ``overlap``, ``sigma_scale`` and ``batch_size``; logits are blended.

    Calling the segmenter calls the net. ``nets.stage(Segmenter(net))`` (or a factory
    ``lambda rngs: Segmenter(UNet(..., rngs=rngs))``) is the pipeline stage; its params are
    the wrapped net's state, under ``net``.
    """

    def __init__(self, net: nnx.Module, *, output: str = "logits", window=None,
                 overlap: float = 0.5, sigma_scale: float | None = 0.125, batch_size: int = 1):
        func = "mskjax.nets.Segmenter"
        if not isinstance(net, nnx.Module):
            raise TypeError(f"{func}: net must be an nnx.Module, got {type(net).__name__}")
        _net_sizes(net, func)
        if output not in OUTPUTS:
            raise ValueError(f"{func}: output must be one of {OUTPUTS}, got {output!r}")
        if window is not None:
            window = (window,) * net.ndim if isinstance(window, int) else tuple(window)
            if len(window) != net.ndim:
                raise ValueError(f"{func}: window must have one size per spatial axis "
                                 f"({net.ndim}), got {window}")
            for w in window:
                check_positive_int(w, "window", func)
        check_interval(overlap, "overlap", func, low=0.0, high=1.0, low_open=False)
        if sigma_scale is not None:
            check_interval(sigma_scale, "sigma_scale", func, low=0.0)
        check_positive_int(batch_size, "batch_size", func)
        self.net = net
        self.output, self.window, self.overlap = output, window, float(overlap)
        self.sigma_scale = None if sigma_scale is None else float(sigma_scale)
        self.batch_size = batch_size
        self.ndim, self.in_chans = net.ndim, net.in_chans

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image`` (``(*spatial)``, ``(*spatial, in_chans)``
        or complex as two channels) -> ``sample.segmentation`` as set by ``output``."""
        return segment_sample(self.net, sample, func="mskjax.nets.Segmenter.apply_sample",
                              output=self.output, window=self.window, overlap=self.overlap,
                              sigma_scale=self.sigma_scale, batch_size=self.batch_size)
