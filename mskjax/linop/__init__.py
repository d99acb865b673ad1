"""Linear operators for MRI: a small algebra (``.H``, ``.N``, ``@``, ``*``, ``+``) over pytrees.

See :class:`LinearOperator` for the conventions. Operators: :class:`Identity`, :class:`FFT`,
:class:`Mask`, :class:`Coils`, :class:`Sense`, :class:`SoftSense`, the non-Cartesian
:class:`NUFFT` and :class:`NufftSense` (with Toeplitz normal operators), :class:`FiniteDifference`,
:class:`Wavelet`, the CT projection :class:`Radon`; a user's own as :class:`Matrix` (a dense
matrix) or :class:`FunctionOperator` (forward and adjoint functions); the algebra's
building blocks :class:`Adjoint`, :class:`Normal`, :class:`Compose`, :class:`Sum` and
:class:`Scaled` are public so that ``isinstance`` checks and pytree paths read well.
"""

from ._base import Adjoint, Compose, Identity, LinearOperator, Normal, Scaled, Sum, static_field
from ._finite_difference import FiniteDifference
from ._function import FunctionOperator
from ._matrix import Matrix
from ._mri import (FFT, Coils, Mask, Sense, SenseNormal, SoftSense, apply_mask, check_maps,
                   check_mask, reduce_mask)
from ._nufft import (NUFFT, ToeplitzNormal, check_coords, check_eps, check_kspace_on_coords,
                     check_weights, coords_for_shape)
from ._nufft_sense import NufftSense, NufftSenseNormal
from ._radon import Radon
from ._wavelet import Wavelet

__all__ = [
    "LinearOperator", "static_field", "Identity", "Adjoint", "Normal", "Compose", "Sum",
    "Scaled", "FFT", "Mask", "Coils", "Sense", "SenseNormal", "SoftSense", "FiniteDifference",
    "Wavelet", "NUFFT", "ToeplitzNormal", "NufftSense", "NufftSenseNormal", "check_coords",
    "check_weights", "check_eps", "check_kspace_on_coords", "coords_for_shape",
    "Matrix", "FunctionOperator", "apply_mask", "check_mask", "check_maps", "reduce_mask",
    "Radon",
]
