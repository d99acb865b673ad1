"""Quantitative MRI: relaxation maps (T2, T1rho), the qDESS T2 of Sveinsson et al. and cartilage
thickness from a segmentation.

Conventions:

- Images are stacked on the first axis, ``(len(times), *spatial)`` (one image per echo or
  spin-lock time); maps are ``(*spatial)``.
- Times are in milliseconds, angles in degrees; the qDESS spoiler duration ``tg`` is in
  microseconds, as GE stores it.
- Every map comes with a ``valid`` flag map. Where a voxel is not valid the map holds 0, never
  a silent NaN.
- numpy, JAX and scipy only (the numerical core).
"""

from ._qdess import QDessT2, qdess_t2
from ._relaxation import FitStatus, RelaxationFit, fit_relaxation
from ._thickness import CartilageThickness, cartilage_thickness

__all__ = ["fit_relaxation", "RelaxationFit", "FitStatus", "qdess_t2", "QDessT2",
           "cartilage_thickness", "CartilageThickness"]
