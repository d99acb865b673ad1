"""Coil arrays: root-sum-of-squares, coil compression, simulated and normalised maps.

Conventions:

- Coil data (k-space, coil images, sensitivity maps) are ``(coils, *spatial)`` with 2 or 3
  spatial axes last, one example at a time (batch with ``jax.vmap``). Complex data are
  complex64 (complex128 with 64-bit JAX); magnitudes come back in the matching real dtype.
- Sensitivity maps multiply the image: coil image ``c`` is ``S_c * image``. Normalised maps
  satisfy ``sum_c |S_c|^2 == 1`` wherever they are non-zero (:func:`normalize_maps`).
- Simulated maps use normalised coordinates ``(i - n/2) / (n/2)`` on each spatial axis, so
  the field of view spans ``[-1, 1)``; ``x`` is the last axis, ``y`` the one before.
- ESPIRiT (:func:`espirit`) takes centred Cartesian k-space; :func:`nufft_calibration` grids
  the centre of non-Cartesian k-space (coordinates in cycles per field of view, as for
  :class:`mskjax.linop.NUFFT`) onto that grid, and :func:`espirit_nufft` runs ESPIRiT on it.
- Coil compression is SVD-based: the virtual coils are the leading left singular vectors of
  the ``(coils, samples)`` data matrix, ordered by decreasing energy.

All functions are pure ``jax.numpy``; they run under ``jit`` (with sizes and ``num_virtual``
static) and ``vmap``, and :func:`rss` and :func:`normalize_maps` are safe under ``grad``.
"""

from ._compress import coil_compress, coil_compression_matrix
from ._espirit import espirit
from ._normalize import normalize_maps
from ._nufft_calibration import espirit_nufft, nufft_calibration
from ._rss import rss
from ._simulate import birdcage_maps, gaussian_maps

__all__ = [
    "rss", "normalize_maps", "birdcage_maps", "gaussian_maps", "coil_compress",
    "coil_compression_matrix", "espirit", "nufft_calibration", "espirit_nufft",
]
