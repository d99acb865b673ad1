"""Reconstruction of undersampled MRI. Conventions: k-space ``(coils, *spatial)``, centred.

Non-Cartesian k-space is ``(coils, *trajectory)`` with coordinates ``(*trajectory, ndim)`` in
cycles per field of view (:class:`mskjax.linop.NUFFT`): :func:`gridding`, and
:func:`cg_sense`, :func:`l1_wavelet` and :func:`total_variation` with ``coords=``.

CT: :func:`filtered_back_projection` of a parallel-beam sinogram ``(angles, detectors)``
(:class:`mskjax.linop.Radon`'s geometry), and :func:`tv_denoise` for any image.
"""

from ._batch import map_slices
from ._fbp import FBP_FILTERS, filtered_back_projection
from ._cg_sense import cg_sense
from ._grappa import grappa
from ._gridding import gridding
from ._interpolate import tricubic_upsample
from ._l1_wavelet import l1_wavelet
from ._result import Reconstruction
from ._total_variation import total_variation
from ._tv_denoise import tv_denoise
from ._zero_filled import zero_filled

__all__ = ["Reconstruction", "zero_filled", "cg_sense", "total_variation", "grappa", "l1_wavelet",
           "map_slices", "gridding", "tricubic_upsample", "filtered_back_projection",
           "FBP_FILTERS", "tv_denoise"]
