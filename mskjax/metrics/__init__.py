"""Image-quality metrics: NMSE, PSNR and SSIM with the fastMRI definitions.

Conventions:

- Inputs are real magnitude images (float32, or float64 with 64-bit JAX): ``gt`` the
  reference, ``pred`` the estimate, of the same shape. Complex images are rejected; take
  ``jnp.abs`` first.
- :func:`nmse` and :func:`psnr` accept any shape and reduce over all of it. :func:`ssim` takes a
  ``(slices, H, W)`` volume (fastMRI) or an ``(H, W)`` image and averages over slices.
- ``data_range=None`` means ``gt.max()`` over the whole input, as in ``fastmri.evaluate``.
- Every metric returns a scalar and is pure ``jax.numpy``: it runs under ``jit`` and batches
  over examples with ``jax.vmap``.
"""

from ._image import nmse, psnr, ssim, ssim_map

__all__ = ["nmse", "psnr", "ssim", "ssim_map"]
