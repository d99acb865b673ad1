"""The sample: one example flowing through a pipeline, as a frozen pytree of named fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Sample:
    """One example, one field per kind of data; absent fields are ``None``.

    Fields (shapes for one example; batch with ``jax.vmap``):
        kspace: complex ``(coils, *spatial)`` k-space (undersampled once a mask is applied),
            or ``(coils, *trajectory)`` non-Cartesian k-space on ``coords``.
        mask: boolean or real sampling mask broadcasting to ``kspace`` (Cartesian).
        coords: real ``(*trajectory, ndim)`` k-space coordinates of non-Cartesian k-space, in
            cycles per field of view (:class:`mskjax.linop.NUFFT`); None for Cartesian.
        density: real non-negative ``(*trajectory)`` density compensation of ``coords``, in
            mskjax's scale (``NUFFT.H(d * NUFFT(x)) ~= x`` for a smooth image), optional.
        maps: complex ``(coils, *spatial)`` coil sensitivity maps.
        image: ``(*spatial)`` reconstructed image, real or complex.
        target: ``(*spatial)`` reference image (e.g. the fully sampled reconstruction).
        segmentation: ``(*spatial)`` integer labels or ``(*spatial, classes)`` scores.
        label: per-example label(s), e.g. a grade or a class index.
        extra: any further pytree a user's stage needs (a dict, say).

    A sample is immutable: stages return ``sample.replace(image=...)``.
    """

    kspace: Any = None
    mask: Any = None
    coords: Any = None
    density: Any = None
    maps: Any = None
    image: Any = None
    target: Any = None
    segmentation: Any = None
    label: Any = None
    extra: Any = None

    def replace(self, **changes) -> Sample:
        """A copy with the given fields replaced."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(
                f"mskjax.pipeline.Sample.replace: unknown fields {sorted(unknown)}; fields are "
                f"{[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)


SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Sample))

jax.tree_util.register_dataclass(Sample, data_fields=list(SAMPLE_FIELDS), meta_fields=[])
