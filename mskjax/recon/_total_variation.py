"""Total-variation regularised SENSE reconstruction by the Condat-Vu primal-dual method."""

from __future__ import annotations

from jax.typing import ArrayLike

from ..linop import FiniteDifference
from ..solvers import primal_dual, prox
from ._result import Reconstruction
from ._sense import sense_operator, spatial_axes


def total_variation(kspace: ArrayLike, maps: ArrayLike, *, mask: ArrayLike | None = None,
                    lamda, max_iter: int = 100, power_iter: int = 30,
                    coords: ArrayLike | None = None, density: ArrayLike | None = None
                    ) -> Reconstruction:
    """Total-variation SENSE reconstruction (the objective of sigpy's ``TotalVariationRecon``).

    Minimises ``1/2 ||M (F S x - y)||^2 + lamda ||G x||_1`` where ``G`` stacks the periodic
    finite differences along every spatial axis (:class:`mskjax.linop.FiniteDifference`); the
    l1 norm sums the magnitudes of the complex differences (anisotropic TV). Solved from
    ``x = 0`` by :func:`mskjax.solvers.primal_dual` (Condat-Vu: an explicit gradient step on
    the data term, the dual step a projection onto ``|v| <= lamda``) with ``||G||^2 = 4 *
    ndim`` and ``||A||^2`` by power iteration.

    Args:
        kspace: complex ``(coils, *spatial)`` k-space, zero where not sampled.
        maps: complex ``(coils, *spatial)`` sensitivity maps, or ``(sets, coils, *spatial)``
            for several sets (soft-SENSE; each set's image is regularised on its own).
        mask: boolean or real weights broadcasting to the k-space (keyword-only); default: the
            locations where any coil is nonzero (see :func:`cg_sense` on its cost under jit).
        lamda: regularisation weight ``>= 0``.
        max_iter: iterations (static).
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
    operator, y = sense_operator(kspace, maps, mask, "mskjax.recon.total_variation",
                                 lamda=lamda, max_iter=max_iter, power_iter=power_iter,
                                 coords=coords, density=density)
    axes = spatial_axes(operator)
    gradient = FiniteDifference(operator.ishape, axes=axes)
    result = primal_dual(operator, y, gradient, prox.l1(None, lamda), max_iter=max_iter,
                         power_iter=power_iter, transform_norm2=4.0 * len(axes))
    return Reconstruction.from_result(result)
