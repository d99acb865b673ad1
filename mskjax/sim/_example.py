"""One simulated training subject for segmentation: image and labels from one key.

Each call draws a new knee (its anatomy, side, Kellgren-Lawrence grade and pathologies), its
own tissue parameters (:func:`jitter_parameters`), renders it in one or several contrasts
(:data:`REALISTIC_RENDERING` by default), moves image and labels by one elastic deformation
(:func:`elastic_deformation`) and normalises each contrast by its 99th percentile.

Variation of shape between subjects: the anatomy's draws scale the whole knee by 0.88 to 1.12
(``KneeAnatomy.size_scale``) with a further 5 to 8 % per structure, cartilage thickness by
about +-20 %, rotate it by up to 6 (flexion), 10 (internal/external rotation) and 4 (varus or
valgus) degrees and shift it by up to 5 mm; the elastic deformation (3 mm at most, smooth over
15 mm by default) adds local changes of shape of up to about 20 %, and ``side="random"``
mirrors half the knees.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._contrast import CONTRASTS, render_checked
from ._deform import elastic_deformation
from ._jitter import jitter_parameters
from ._phantom import KneePhantom, check_key, knee_phantom, subvoxel_samples
from ._realism import REALISTIC_RENDERING


class SegmentationExample(NamedTuple):
    """The output of :func:`segmentation_example`.

    Attributes:
        image: float32 ``(*spatial)``, or ``(channels, *spatial)`` for several contrasts or
            echoes; each contrast (all its echoes) divided by its 99th percentile over the
            whole grid (left as it is where that is 0).
        labels: int32 ``(*spatial)`` tissue labels (:data:`KNEE_LABELS`), deformed like the
            image.
        phantom: the :class:`KneePhantom` drawn, before the deformation.
    """

    image: jax.Array
    labels: jax.Array
    phantom: KneePhantom


def segmentation_example(key: jax.Array, *, shape: Sequence[int] = (64, 128, 128),
                         contrast: str | Sequence[str] = "pd_fs", realistic: bool = True,
                         pathology: Any = "random", slice_axis: int | None = None,
                         slice_index: int | None = None,
                         deform: bool | Mapping[str, float] = True,
                         kl_grade: int | str = "random", side: str = "random",
                         jitter: float = 0.1, **render_options: Any) -> SegmentationExample:
    """One subject for segmentation training, drawn from ``key`` (module docstring).

    Runs on the host in a Python loop over keys (the phantom and the jitter are host-side);
    the same key always gives the same example.

    Args:
        key: a ``jax.random`` key.
        shape: the phantom's grid (keyword-only), as in :func:`knee_phantom` (160 mm field of
            view).
        contrast: a name from :data:`CONTRASTS`, or a sequence of names: the image is then
            ``(channels, *spatial)``, the contrasts (each with its echoes) of the same
            subject, jitter, texture, receive bias and deformation, with independent noise.
        realistic: render with :data:`REALISTIC_RENDERING` (overridden by ``render_options``);
            False for the clean rendering.
        pathology: as in :func:`knee_phantom` (default: each with its probability).
        slice_axis, slice_index: a 2D slice, as in :func:`knee_phantom` (``slice_axis=0`` is
            sagittal); with ``slice_index=None`` the slice is drawn uniformly from the central
            half of the axis (where the knee is).
        deform: elastic deformation with :func:`elastic_deformation`'s defaults (True), none
            (False), or a dict of its ``alpha`` and ``sigma`` (mm).
        kl_grade: an osteoarthritis grade 0..4, or ``"random"`` (uniform over 0..4).
        side: ``"right"``, ``"left"`` or ``"random"``.
        jitter: ``scale`` of :func:`jitter_parameters` (0: the literature values).
        **render_options: options of :func:`render` (``snr``, ``bias``, ``gibbs``, ...,
            sequence parameters such as ``te``), for every contrast.

    Returns:
        :class:`SegmentationExample`: ``image``, ``labels`` and the ``phantom``.
    """
    func = "mskjax.sim.segmentation_example"
    check_key(key, func)
    contrasts = (contrast,) if isinstance(contrast, str) else tuple(contrast)
    if not contrasts or any(not isinstance(c, str) or c not in CONTRASTS for c in contrasts):
        raise ValueError(f"{func}: contrast must be one of {list(CONTRASTS)} or a non-empty "
                         f"sequence of them, got {contrast!r}")
    if not isinstance(realistic, bool):
        raise TypeError(f"{func}: realistic must be a bool, got {realistic!r}")
    if isinstance(deform, Mapping):
        unknown = sorted(set(deform) - {"alpha", "sigma"})
        if unknown:
            raise ValueError(f"{func}: deform takes alpha and sigma (mm), got {unknown}")
    elif not isinstance(deform, bool):
        raise TypeError(f"{func}: deform must be a bool or a dict of alpha and sigma, got "
                        f"{deform!r}")
    if not (kl_grade == "random" or (isinstance(kl_grade, numbers.Integral)
                                     and not isinstance(kl_grade, bool) and 0 <= kl_grade <= 4)):
        raise ValueError(f"{func}: kl_grade must be an int in 0..4 or 'random', got "
                         f"{kl_grade!r}")
    if side not in ("right", "left", "random"):
        raise ValueError(f"{func}: side must be 'right', 'left' or 'random', got {side!r}")
    if "parameters" in render_options or "key" in render_options:
        raise TypeError(f"{func}: parameters and key are drawn per subject; use jitter= and "
                        f"the key")
    keys = jax.random.split(key, 8)
    if kl_grade == "random":
        kl_grade = int(jax.random.randint(keys[1], (), 0, 5))
    if side == "random":
        side = ("right", "left")[int(jax.random.bernoulli(keys[2]))]
    if slice_axis is not None and slice_index is None:
        if isinstance(slice_axis, bool) or not isinstance(slice_axis, numbers.Integral) or not (
                -3 <= slice_axis < 3):
            raise ValueError(f"{func}: slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        n = int(tuple(shape)[slice_axis])
        slice_index = int(jax.random.randint(keys[3], (), n // 4, max(n - n // 4, n // 4 + 1)))
    phantom = knee_phantom(keys[0], shape=shape, pathology=pathology, kl_grade=kl_grade,
                           side=side, slice_axis=slice_axis, slice_index=slice_index)
    parameters = jitter_parameters(keys[4], scale=jitter)
    options = {**(REALISTIC_RENDERING if realistic else {}), **render_options}
    factor = options.get("partial_volume", 1)
    samples = None
    if isinstance(factor, numbers.Integral) and not isinstance(factor, bool) and factor > 1:
        samples = subvoxel_samples(phantom, int(factor), func)  # shared by the contrasts
    settings = dict(texture=0.0, noise=0.0, partial_volume=1, bias=0.0, snr=None, gibbs=None,
                    trabecular=0.0)
    settings.update(options)
    images = []
    for i, name in enumerate(contrasts):
        images.append(render_checked(phantom, contrast=name, key=keys[5],
                                     parameters=parameters,
                                     noise_key=jax.random.fold_in(keys[6], i),
                                     samples=samples, func=func, **settings))
    spatial = phantom.labels.shape
    sizes = [int(i.size // np.prod(spatial)) for i in images]  # channels of each contrast
    image = images[0] if len(images) == 1 else jnp.concatenate(
        [i.reshape((-1, *spatial)) for i in images])
    labels = phantom.labels
    if deform is not False:
        deform = {} if deform is True else dict(deform)
        image, labels = elastic_deformation(keys[7], image, labels,
                                            voxel_size=phantom.voxel_size, **deform)
    return SegmentationExample(image=_normalise(image, sizes, len(images) > 1),
                               labels=labels.astype(jnp.int32), phantom=phantom)


@functools.partial(jax.jit, static_argnames=("sizes", "stacked"))
def _normalise_compiled(image, sizes, stacked):
    if not stacked:
        parts = [image]
    else:
        bounds = np.cumsum((0,) + sizes)
        parts = [image[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    out = []
    for part in parts:
        scale = jnp.percentile(part, 99.0)
        out.append(jnp.where(scale > 0, part / jnp.where(scale > 0, scale, 1.0), part))
    return (out[0] if not stacked else jnp.concatenate(out)).astype(jnp.float32)


def _normalise(image, sizes, stacked):
    """Each contrast (``sizes[i]`` channels of ``image``) over its 99th percentile."""
    return _normalise_compiled(image, tuple(sizes), stacked)
