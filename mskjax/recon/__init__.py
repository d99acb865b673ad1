"""Reconstruction of undersampled MRI. Conventions: k-space ``(coils, *spatial)``, centred."""

from ._zero_filled import zero_filled

__all__ = ["zero_filled"]
