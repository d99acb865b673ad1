"""Reconstruction of undersampled MRI. Conventions: k-space ``(coils, *spatial)``, centred."""

from ._batch import map_slices
from ._cg_sense import cg_sense
from ._grappa import grappa
from ._l1_wavelet import l1_wavelet
from ._result import Reconstruction
from ._total_variation import total_variation
from ._zero_filled import zero_filled

__all__ = ["Reconstruction", "zero_filled", "cg_sense", "total_variation", "grappa", "l1_wavelet",
           "map_slices"]
