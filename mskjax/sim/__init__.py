"""Simulated data: a built-in 2D knee cross-section for demos and tests."""

from ._knee_section import TISSUE_INTENSITY, knee_section

__all__ = ["knee_section", "TISSUE_INTENSITY"]
