"""L1-wavelet compressed sensing by FISTA."""

from __future__ import annotations

from jax.typing import ArrayLike

from ..linop import Wavelet
from ..solvers import fista, prox
from ._result import Reconstruction
from ._sense import sense_operator, spatial_axes


def l1_wavelet(kspace: ArrayLike, maps: ArrayLike, *, mask: ArrayLike | None = None, lamda,
               max_iter: int = 30, wavelet: str = "db4", levels: int | None = None,
               power_iter: int = 30, coords: ArrayLike | None = None,
               density: ArrayLike | None = None) -> Reconstruction:
    """L1-wavelet SENSE reconstruction (the objective of sigpy's ``L1WaveletRecon``).

    Minimises ``1/2 ||M (F S x - y)||^2 + lamda ||W x||_1`` with ``W`` the orthonormal
    Daubechies wavelet transform over the spatial axes (:class:`mskjax.linop.Wavelet`, periodic
    boundaries; the l1 norm sums complex magnitudes) by :func:`mskjax.solvers.fista` from
    ``x = 0`` with step ``1 / ||A||^2`` (power iteration) and the proximal step
    ``W^H soft(W x)`` (:func:`mskjax.solvers.prox.l1`), as sigpy's accelerated
    ``GradientMethod`` does. Sizes that are not multiples of ``2**levels`` are zero-padded
    inside the transform; the proximal step is then exact only on the padded image (``W`` is an
    isometry, not square), the same approximation sigpy makes with its zero-padded wavelets.

    Args:
        kspace: complex ``(coils, *spatial)`` k-space, zero where not sampled.
        maps: complex ``(coils, *spatial)`` sensitivity maps, or ``(sets, coils, *spatial)``
            (soft-SENSE, as with two sets of ESPIRiT maps; the image is ``(sets, *spatial)``).
        mask: boolean or real weights broadcasting to the k-space (keyword-only); default: the
            locations where any coil is nonzero (see :func:`cg_sense` on its cost under jit).
        lamda: regularisation weight ``>= 0``.
        max_iter: iterations (static).
        wavelet: ``"db1"`` to ``"db4"`` (see :class:`mskjax.linop.Wavelet`).
        levels: decomposition levels; None for the most the image allows.
        power_iter: power iterations for ``||A||^2`` (static).
        coords: ``(*trajectory, ndim)`` k-space coordinates in cycles per field of view for
            non-Cartesian k-space (keyword-only; :class:`mskjax.linop.NUFFT`): ``kspace`` is
            then ``(coils, *trajectory)``, ``maps`` ``(coils, *spatial)`` sets the image grid,
            and the operator is :class:`mskjax.linop.NufftSense` (Toeplitz normal operator).
        density: density compensation ``(*trajectory)`` for non-Cartesian k-space (sigpy's
            ``weights``; e.g. :func:`mskjax.sampling.pipe_menon_density`): the data term
            becomes ``||sqrt(d) (F S x - y)||^2``, which speeds convergence.

    Returns:
        :class:`Reconstruction` with ``history`` the objective after each iteration and
        ``status`` ``MAX_ITERATIONS`` (or ``NONFINITE``).
    """
    operator, y = sense_operator(kspace, maps, mask, "mskjax.recon.l1_wavelet",
                                 lamda=lamda, max_iter=max_iter, power_iter=power_iter,
                                 coords=coords, density=density)
    transform = Wavelet(operator.ishape, wavelet=wavelet, levels=levels,
                        axes=spatial_axes(operator))
    result = fista(operator, y, prox.l1(transform, lamda), max_iter=max_iter,
                   power_iter=power_iter)
    return Reconstruction.from_result(result)
