"""Solvers over any linear operator; they know nothing of MRI.

Each takes a :class:`mskjax.linop.LinearOperator` (or, for :func:`cg` and
:func:`max_eigenvalue`, any linear function on arrays or pytrees) and returns one
:class:`SolverResult` ``(x, iterations, history, status)`` instead of raising mid-run; the
:class:`Status` says whether it converged, used its iterations, broke down or met NaN.
Reconstructions (:mod:`mskjax.recon`) and the data-consistency steps of the nets build an
operator and call these; speed lives in the operators' ``.N``.

- :func:`cg`: conjugate gradients for ``A x = b``, ``A`` self-adjoint positive semi-definite;
  implicit (``custom_linear_solve``) gradients by default.
- :func:`fista`: ``min 1/2 ||A x - y||^2 + g(x)`` with a proximal map of ``g``.
- :func:`primal_dual`: ``min 1/2 ||A x - y||^2 + g(K x)`` (Condat-Vu), e.g. total variation.
- :func:`max_eigenvalue`: power iteration, for step sizes.
- :func:`affine_projection`: ``x + A^+ (y - A x)``, the projection onto ``{x : A x = y}``
  (exact data consistency), by CG on ``A.N``.
- :mod:`mskjax.solvers.prox`: proximal maps (``soft_threshold``, ``l1``, ``l2_squared``, ...).

Loops are ``lax.scan`` (fixed iteration counts, reverse-differentiable) or ``lax.while_loop``
(CG with a tolerance); everything jits and vmaps over a batch of problems.
"""

from . import prox
from ._affine_projection import affine_projection
from ._cg import cg
from ._fista import fista
from ._operator import PROBE_MAX_SIZE
from ._power import max_eigenvalue
from ._primal_dual import primal_dual
from ._result import SolverResult, Status

__all__ = ["cg", "fista", "primal_dual", "max_eigenvalue", "prox", "SolverResult", "Status",
           "PROBE_MAX_SIZE", "affine_projection"]
