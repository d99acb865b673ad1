"""The non-uniform FFT (NUFFT) and its Toeplitz normal operator, on ``jax-finufft``.

Conventions:

- ``coords`` has shape ``(*trajectory, ndim)`` with ``ndim`` of 1 to 3 (2 or 3 in MRI): one
  k-space location per trajectory point, in **cycles per field of view**, the units of sigpy
  and BART. Coordinate ``a`` belongs to the ``a``-th transformed (spatial) axis, in array
  order: for a ``(rows, cols)`` image ``coords[..., 0]`` is along the rows and
  ``coords[..., 1]`` along the columns. On an axis of ``n`` grid points the centred grid
  frequencies are ``-n/2 <= k < n/2``; ``k = +n/2`` is accepted too, being the same frequency
  as ``-n/2`` on the periodic grid.
- The forward transform of an image ``x`` of ``shape`` (grid ``n``, ``N = prod(n)`` points) is

  ``y_m = N**-0.5 * sum_r x[r] exp(-2 pi i sum_a k_{m,a} (r_a - n_a // 2) / n_a)``,

  the centring and orthonormal scaling of :class:`FFT`: on integer coordinates it equals
  ``mskjax.fourier.fftnc`` at index ``k + n // 2``, and without weights ``A.H A`` is the
  identity for a fully sampled Cartesian grid.
- jax-finufft works in radians: its points are ``x_a = 2 pi k_a / n_a`` in ``[-pi, pi]``, and
  its mode ordering (``modeord=0``, frequencies ``-n//2 .. (n-1)//2``) is the centred grid's.
- Optional real non-negative ``weights`` (one per trajectory point) multiply the samples, as
  a real mask does in :class:`Sense`: ``A = diag(w) F``, so ``A.H A = F^H diag(w**2) F``. For
  density-compensated least squares with a density compensation function ``d`` (sigpy's
  ``weights``), pass ``weights=sqrt(d)`` and weight the data by the same ``sqrt(d)``.
- Leading axes of ``shape`` beyond the ``ndim`` transformed ones (coils) are a batch:
  ``shape = (coils, rows, cols)`` maps ``(coils, rows, cols) -> (coils, *trajectory)``.

The normal operator ``A.N`` is a Toeplitz embedding (Wajer and Pruessmann; Fessler et al.
2005): ``F^H W F`` is a convolution with the point-spread function
``h(d) = N**-1 sum_m w_m**2 exp(2 pi i k_m . d / n)``, ``|d_a| < n_a``. Its values on a grid
twice the size come from one type-1 NUFFT, once, when ``A.N`` is taken; applying it then costs
two FFTs of the zero-padded image and no interpolation. The entries at ``d_a = -n_a`` are
never needed (zero padding keeps them out) and are set to zero, which makes the kernel
Hermitian, so its Fourier transform is real and is stored as a real array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_finite, check_ndim
from ._base import LinearOperator, _check_shape_tuple, static_field

_EPS_RANGE = (1e-14, 1e-1)


def _finufft():
    """``(nufft1, nufft2)`` of jax-finufft, imported on first use (an optional dependency)."""
    try:
        import jax_finufft
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mskjax.linop.NUFFT needs jax-finufft: pip install 'mskjax[nufft]' "
            "(or pip install jax-finufft)") from error
    # jax-finufft 1.3.1's batching rule reads jax.interpreters.batching.not_mapped, which JAX
    # 0.10 removed (jax-finufft issue 227, fixed upstream after 1.3.1). The sentinel was None.
    from jax._src.interpreters import batching
    if not hasattr(batching, "not_mapped"):
        batching.not_mapped = None
    return jax_finufft.nufft1, jax_finufft.nufft2


def check_coords(coords: ArrayLike, grid: Sequence[int], func: str) -> jax.Array:
    """Validate k-space coordinates ``(*trajectory, ndim)`` in cycles per field of view."""
    coords = as_array(coords, "coords", func)
    if not (jnp.issubdtype(coords.dtype, jnp.floating) or jnp.issubdtype(coords.dtype,
                                                                          jnp.integer)):
        raise TypeError(f"{func}: coords must be real (float32 or float64), got {coords.dtype}")
    ndim = len(grid)
    if coords.ndim < 2 or coords.shape[-1] != ndim:
        raise ValueError(
            f"{func}: coords must be (*trajectory, {ndim}) for a {ndim}D grid {tuple(grid)} "
            f"(one coordinate per transformed axis), got shape {tuple(coords.shape)}")
    if 0 in coords.shape:
        raise ValueError(f"{func}: coords must hold at least one point, got shape "
                         f"{tuple(coords.shape)}")
    if not jnp.issubdtype(coords.dtype, jnp.floating):
        coords = coords.astype(np.float32)
    if not isinstance(coords, jax.core.Tracer):
        values = np.asarray(coords)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{func}: coords must be finite, got "
                             f"{int(np.sum(~np.isfinite(values)))} NaN or infinite values")
        for axis, n in enumerate(grid):
            worst = float(np.max(np.abs(values[..., axis])))
            if worst > n / 2 * (1 + 1e-6):
                raise ValueError(
                    f"{func}: coords[..., {axis}] must lie in [-{n / 2:g}, {n / 2:g}] (cycles "
                    f"per field of view on an axis of {n} points), got values up to {worst:g}; "
                    "scale a trajectory given in [-0.5, 0.5] by the matrix size, or in radians "
                    "by n / (2 pi)")
    return jnp.asarray(coords)


def coords_for_shape(coords: ArrayLike, shape: Sequence[int], func: str):
    """Validate ``coords`` ``(*trajectory, ndim)`` for an array ``shape`` whose last ``ndim``
    axes are the grid (leading axes, such as coils, are a batch); return ``(coords, grid)``."""
    coords_arr = as_array(coords, "coords", func)
    ndim = int(coords_arr.shape[-1]) if coords_arr.ndim else 0
    if not 1 <= ndim <= 3 or ndim > len(shape):
        raise ValueError(
            f"{func}: coords must be (*trajectory, ndim) with ndim 1 to 3 and at most "
            f"len(shape) = {len(shape)}, got coords of shape {tuple(coords_arr.shape)}")
    grid = tuple(shape[len(shape) - ndim:])
    return check_coords(coords_arr, grid, func), grid


def check_kspace_on_coords(kspace: ArrayLike, coords: jax.Array, func: str) -> jax.Array:
    """Validate complex finite non-Cartesian k-space ``(coils, *trajectory)`` against validated
    ``coords`` ``(*trajectory, ndim)``; return it as a JAX array."""
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, min_ndim=2, layout="(coils, *trajectory)")
    check_complex(kspace, "kspace", func)
    if tuple(kspace.shape[1:]) != tuple(coords.shape[:-1]):
        raise ValueError(
            f"{func}: kspace must be (coils, *trajectory) with trajectory = "
            f"coords.shape[:-1] = {tuple(coords.shape[:-1])}, got shape {tuple(kspace.shape)}")
    check_finite(kspace, "kspace", func)
    return jnp.asarray(kspace)


def check_weights(weights: ArrayLike, trajectory: Sequence[int], func: str,
                  name: str = "weights") -> jax.Array:
    """Validate real non-negative per-sample weights that broadcast to ``trajectory``."""
    weights = as_array(weights, name, func)
    if not (jnp.issubdtype(weights.dtype, jnp.floating)
            or jnp.issubdtype(weights.dtype, jnp.integer) or weights.dtype == np.bool_):
        raise TypeError(f"{func}: {name} must be real, got {weights.dtype}")
    try:
        shape = np.broadcast_shapes(tuple(weights.shape), tuple(trajectory))
    except ValueError:
        shape = None
    if shape != tuple(trajectory):
        raise ValueError(
            f"{func}: {name} must have the trajectory shape {tuple(trajectory)} (one per "
            f"k-space point, coords.shape[:-1]), got shape {tuple(weights.shape)}")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(np.float32)
    if not isinstance(weights, jax.core.Tracer):
        values = np.asarray(weights)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{func}: {name} must be finite")
        if np.any(values < 0):
            raise ValueError(f"{func}: {name} must be non-negative, got a minimum of "
                             f"{float(values.min()):g}")
    return jnp.asarray(weights)


def check_eps(eps, func: str) -> float:
    """The NUFFT tolerance as a float in the range FINUFFT supports."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"{func}: eps must be a number, got {eps!r}") from None
    if not (_EPS_RANGE[0] <= value <= _EPS_RANGE[1]):
        raise ValueError(f"{func}: eps must lie in [{_EPS_RANGE[0]:g}, {_EPS_RANGE[1]:g}] "
                         f"(the relative accuracy asked of FINUFFT), got {eps!r}")
    return value


def _points(coords, grid, dtype):
    """jax-finufft's points, one flat ``(M,)`` array of radians per transformed axis, and an
    ``(M,)`` bool of the points whose coordinates are finite.

    Under ``jit`` the finiteness and range checks of :func:`check_coords` cannot run, and a NaN
    point crashes FINUFFT: non-finite coordinates become 0 here (callers make their results
    NaN), and every coordinate is wrapped into ``[-pi, pi]``, which is exact (the transform is
    periodic in ``k`` with period ``n``) and leaves valid coordinates and their gradients as
    they are.
    """
    flat = coords.reshape(-1, len(grid)).astype(dtype)
    finite = jnp.all(jnp.isfinite(flat), axis=-1)
    flat = jnp.where(finite[:, None], flat, jnp.zeros((), dtype))
    points = []
    for a, n in enumerate(grid):
        radians = flat[:, a] * (2 * math.pi / n)
        points.append(radians - (2 * math.pi) * jax.lax.stop_gradient(
            jnp.round(radians / (2 * math.pi))))
    return tuple(points), finite


def _real_dtype(x):
    return jnp.finfo(x.dtype).dtype


def weigh(weights, y):
    """``y`` times real per-sample ``weights`` (None: unchanged), keeping ``y``'s dtype."""
    return y if weights is None else y * weights.astype(_real_dtype(y))


def nufft_forward(x, coords, grid, eps):
    """Type-2 NUFFT of ``(*lead, *grid)`` to ``(*lead, *trajectory)`` (orthonormal, centred)."""
    _, nufft2 = _finufft()
    ndim = len(grid)
    lead = x.shape[:x.ndim - ndim]
    source = x.reshape((-1, *grid))
    points, finite = _points(coords, grid, _real_dtype(x))
    y = nufft2(source, *points, iflag=-1, eps=eps)
    scale = jnp.asarray(1 / math.sqrt(math.prod(grid)), _real_dtype(x))
    y = jnp.where(finite, y * scale, jnp.asarray(jnp.nan, y.dtype))  # NaN where coords are
    return y.reshape((*lead, *coords.shape[:-1]))


def nufft_adjoint(y, coords, grid, eps):
    """Type-1 NUFFT of ``(*lead, *trajectory)`` to ``(*lead, *grid)``: the adjoint."""
    nufft1, _ = _finufft()
    traj_ndim = coords.ndim - 1
    lead = y.shape[:y.ndim - traj_ndim]
    source = y.reshape((-1, math.prod(coords.shape[:-1])))
    points, finite = _points(coords, grid, _real_dtype(y))
    x = nufft1(tuple(grid), source, *points, iflag=1, eps=eps)
    scale = jnp.asarray(1 / math.sqrt(math.prod(grid)), _real_dtype(y))
    x = jnp.where(jnp.all(finite), x * scale, jnp.asarray(jnp.nan, x.dtype))
    return x.reshape((*lead, *grid))


def toeplitz_kernel(coords, grid, eps, weights=None, dtype=jnp.float32):
    """The real Fourier transform ``(2 n_1, ..., 2 n_d)`` of the point-spread function of
    ``F^H diag(weights**2) F`` (see the module docstring), for :class:`ToeplitzNormal`."""
    nufft1, _ = _finufft()
    complex_dtype = jnp.result_type(dtype, jnp.complex64)
    trajectory = coords.shape[:-1]
    w2 = (jnp.ones(trajectory, dtype) if weights is None
          else jnp.broadcast_to(jnp.asarray(weights, dtype) ** 2, trajectory))
    big = tuple(2 * n for n in grid)
    points, finite = _points(coords, grid, dtype)
    psf = nufft1(big, w2.reshape(-1).astype(complex_dtype), *points,
                 iflag=1, eps=eps) / math.prod(grid)
    psf = jnp.where(jnp.all(finite), psf, jnp.asarray(jnp.nan, psf.dtype))
    # Mode index j holds d = j - n; the d = -n entries are never used: zero them (Hermitian).
    for axis in range(len(grid)):
        psf = psf.at[(slice(None),) * axis + (0,)].set(0)
    kernel = jnp.fft.fftn(jnp.fft.ifftshift(psf), norm="backward")
    return jnp.real(kernel).astype(dtype)


def toeplitz_apply(kernel, x, grid):
    """``F^H W F x`` for ``x`` ``(*lead, *grid)`` by zero-padding to ``2 n`` and two FFTs."""
    ndim = len(grid)
    axes = tuple(range(x.ndim - ndim, x.ndim))
    pad = [(0, 0)] * (x.ndim - ndim) + [(0, n) for n in grid]
    spectrum = jnp.fft.fftn(jnp.pad(x, pad), axes=axes) * kernel
    out = jnp.fft.ifftn(spectrum, axes=axes)
    return out[(Ellipsis, *(slice(0, n) for n in grid))].astype(x.dtype)


class NUFFT(LinearOperator):
    """Non-uniform FFT: image ``shape`` -> samples ``(*lead, *coords.shape[:-1])``.

    Type-2 forward and type-1 adjoint (jax-finufft), centred and orthonormal like
    :class:`FFT` (module docstring). ``A.N`` is the Toeplitz embedding :class:`ToeplitzNormal`
    (computed when ``A.N`` is taken), or ``A.H @ A`` with ``toeplitz=False``.

    Args:
        coords: k-space coordinates ``(*trajectory, ndim)`` in cycles per field of view,
            ``-n/2 <= k <= n/2`` on an axis of ``n`` points (ndim 1 to 3).
        shape: the image shape (keyword-only); its last ``ndim`` axes are transformed, leading
            axes (coils) are a batch.
        eps: the relative accuracy asked of FINUFFT, in ``[1e-14, 0.1]``; single precision
            reaches about 1e-6 at best.
        weights: optional real non-negative weights, one per trajectory point (broadcasting
            to ``coords.shape[:-1]``), multiplying the samples: ``A = diag(w) F``.
        toeplitz: whether ``A.N`` is the Toeplitz embedding (default) or ``A.H @ A``. Keep
            the embedding for iterative solvers at a loose ``eps``: it is exactly self-adjoint,
            whereas the type-1 and type-2 transforms are adjoint only to about ``eps`` (at
            ``eps=1e-4`` in 3D, CG on ``A.H @ A`` stalled at a relative residual of 2e-3
            against 7.6e-4 on the embedding).

    Example: ``A = NUFFT(radial_coords, shape=(256, 256)); y = A(image)``.
    """

    coords: jax.Array
    weights: jax.Array | None
    grid: tuple = static_field()
    eps: float = static_field()
    toeplitz: bool = static_field()

    def __init__(self, coords: ArrayLike, *, shape: Sequence[int], eps: float = 1e-6,
                 weights: ArrayLike | None = None, toeplitz: bool = True):
        func = "mskjax.linop.NUFFT"
        shape = _check_shape_tuple(shape, func)
        coords, grid = coords_for_shape(coords, shape, func)
        if weights is not None:
            weights = check_weights(weights, coords.shape[:-1], func)
        self._set(coords=coords, weights=weights, grid=grid, eps=check_eps(eps, func),
                  toeplitz=bool(toeplitz), ishape=shape,
                  oshape=(*shape[:len(shape) - len(grid)], *coords.shape[:-1]))

    @property
    def trajectory(self) -> tuple:
        """The trajectory shape ``coords.shape[:-1]``."""
        return tuple(self.coords.shape[:-1])

    def _apply(self, x):
        return weigh(self.weights, nufft_forward(x, self.coords, self.grid, self.eps))

    def _adjoint(self, y):
        return nufft_adjoint(weigh(self.weights, y), self.coords, self.grid, self.eps)

    def _normal(self, x):
        # One application inside a composite operator (``(a * A).N``): forward then adjoint.
        # The Toeplitz kernel costs a type-1 NUFFT on the 2x grid, worth it only when ``A.N``
        # is taken once and applied many times, as the solvers do.
        return self._adjoint(self._apply(x))

    @property
    def N(self) -> LinearOperator:
        """``A.H @ A``: the :class:`ToeplitzNormal` embedding (or the plain composition)."""
        if not self.toeplitz:
            return super().N
        kernel = toeplitz_kernel(self.coords, self.grid, self.eps, self.weights,
                                 dtype=self.coords.dtype)
        return ToeplitzNormal._of(kernel, self.grid, self.ishape)


class ToeplitzNormal(LinearOperator):
    """``F^H W F`` of a :class:`NUFFT` as a convolution on a grid twice the size:
    ``NUFFT(...).N``. Self-adjoint; applies to ``(*lead, *grid)`` arrays.

    ``kernel`` is the real Fourier transform of the point-spread function (shape ``2 * grid``),
    from :func:`toeplitz_kernel`.
    """

    kernel: jax.Array
    grid: tuple = static_field()

    @classmethod
    def _of(cls, kernel, grid, ishape):
        op = object.__new__(cls)
        op._set(kernel=kernel, grid=tuple(grid), ishape=ishape, oshape=ishape)
        return op

    def _apply(self, x):
        return toeplitz_apply(self.kernel.astype(_real_dtype(x)), x, self.grid)

    def _adjoint(self, y):
        return self._apply(y)

    @property
    def H(self) -> ToeplitzNormal:
        return self

    @property
    def hermitian(self) -> bool:
        return True
