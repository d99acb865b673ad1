"""Centred orthonormal FFTs (``ifftshift``, FFT, ``fftshift``; ``norm="ortho"``)."""

from ._fft import fft2c, fftnc, ifft2c, ifftnc

__all__ = ["fft2c", "ifft2c", "fftnc", "ifftnc"]
