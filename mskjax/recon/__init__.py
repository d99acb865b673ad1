"""Reconstruction of undersampled MRI. Conventions: k-space ``(coils, *spatial)``, centred."""

from ._result import Reconstruction
from ._zero_filled import zero_filled

__all__ = ["Reconstruction", "zero_filled"]
