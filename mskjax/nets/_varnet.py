"""The variational network of Hammernik et al. (MRM 2018) for multi-coil 2D MRI.

"Learning a variational network for reconstruction of accelerated MRI data", Magn. Reson.
Med. 79:3055-3071, 2018. Each of ``T`` steps is one gradient step on a learned energy, the
fields-of-experts regulariser plus the SENSE data term, with its own parameters:

    x <- x - sum_i K_i^T phi_i(K_i x) - lambda_t A^H (A x - y)

``K_i`` filters the (real, imaginary) channels of the complex image (one 2D convolution with two
input channels), ``K_i^T`` is its exact adjoint (zero boundary: the flipped filters, so that
``<K x, z> == <x, K^T z>`` holds to rounding at the image border too), ``phi_i`` is a weighted
sum of Gaussian radial basis functions with fixed, equally spaced centres, and ``A`` is
:class:`mskjax.linop.Sense`. The data-term gradient is ``A.N(x) - A.H(y)``.

Conventions: one example, k-space complex ``(coils, rows, cols)``, coil maps the same shape, a
mask broadcasting to it (a fastMRI ``(cols,)`` vector keeps the 1D FFTs of ``Sense.N``); the
image is complex ``(rows, cols)``; batch with ``jax.vmap``. Scale: the net divides the k-space
by ``s``, the 99th percentile of ``|A.H(y)|`` (1 when that is zero), and multiplies the result
back by ``s``, so the learned parameters (activation centres, step sizes) do not depend on the
scanner's units and ``net(c * y) == c * net(y)`` for ``c > 0``.

Memory. The activations' backward pass recomputes the Gaussians one centre at a time (a
custom VJP), so a step stores arrays of the size of the filter responses, not ``num_rbf`` times
that. ``remat`` (see :func:`remat_policy`) recomputes whole steps (``"cascade"``) or the
filter-and-activation layer of each step (``"block"``); with a policy the steps run in
``lax.scan`` (in straight-line code XLA's CPU scheduler ran the recomputation early, where it
saved nothing). Gradient of a 10-step, 24-filter, 31-RBF net on one 8-coil 320 x 320 slice
(XLA CPU ``temp_size_in_bytes``): 310 MiB with the steps unrolled (``"none"``), 209 MiB with
``"cascade"`` in a ``lax.scan`` (whose reverse pass is slower on CPU; 433 MiB for a scan
without remat; 7.1 GiB and 1.6 GiB with the Gaussians stored). The net is reverse-mode differentiable
(``jax.grad``, ``jax.vjp``), not forward-mode (``jax.jvp``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import as_array, check_complex, check_interval, check_positive_int
from ..linop import Sense, check_mask
from ._conv import conv

__all__ = ["VarNet"]

_SCALE_QUANTILE = 0.99

#: The rematerialisation policies of the unrolled nets (``remat=``), from least to most
#: recomputation. ``True`` means ``"cascade"`` and ``False`` ``"none"``.
REMAT_POLICIES = ("none", "cascade", "block", "cascade+block")


def remat_policy(value, func: str) -> str:
    """The rematerialisation policy named by ``value`` (a ``remat=`` option of an unrolled net).

    - ``"none"`` (or ``False``): the backward pass reads every intermediate array of every
      cascade (step, iteration) stored by the forward pass: most memory, least compute.
    - ``"cascade"`` (or ``True``): ``jax.checkpoint`` around each cascade (step, iteration):
      only its input is stored, and its forward pass runs again during the backward pass
      (memory of one cascade's intermediates, about one more forward pass).
    - ``"block"``: ``jax.checkpoint`` around each block of the learned regulariser (a U-Net
      level, a filter-and-activation layer, a convolution of a denoiser): the block's inputs are
      stored and its inner arrays (convolution outputs, normalised and activated maps)
      recomputed; the data-consistency arrays are stored as without remat.
    - ``"cascade+block"``: both, nested: only the cascades' inputs are stored, and while one
      cascade is recomputed only its blocks' inputs; the least memory, about two more forward
      passes of the regulariser.

    Raises a TypeError for a value that is neither a bool nor a string, and a ValueError for
    an unknown name.
    """
    if isinstance(value, (bool, np.bool_)):
        return "cascade" if value else "none"
    if not isinstance(value, str):
        raise TypeError(f"{func}: remat must be one of {list(REMAT_POLICIES)} or a bool, got "
                        f"{value!r} ({type(value).__name__})")
    if value not in REMAT_POLICIES:
        raise ValueError(f"{func}: remat must be one of {list(REMAT_POLICIES)} or a bool, got "
                         f"{value!r}")
    return value


def check_inputs(kspace, mask, maps, func):
    """Validate one example ``(kspace, mask, maps)`` of a 2D reconstruction net."""
    kspace = as_array(kspace, "kspace", func)
    maps = as_array(maps, "maps", func)
    if mask is None:
        raise ValueError(f"{func}: mask is required (a boolean or real array broadcasting to "
                         f"the k-space shape {tuple(np.shape(kspace))}), got None")
    mask = as_array(mask, "mask", func)
    if np.ndim(kspace) != 3:
        raise ValueError(f"{func}: kspace must be (coils, rows, cols) for one example (vmap "
                         f"over a batch), got shape {tuple(np.shape(kspace))}")
    check_complex(kspace, "kspace", func)
    check_complex(maps, "maps", func)
    if tuple(np.shape(maps)) != tuple(np.shape(kspace)):
        raise ValueError(f"{func}: maps must have the k-space shape {tuple(np.shape(kspace))} "
                         f"(coils, rows, cols), got shape {tuple(np.shape(maps))}")
    check_mask(mask, kspace.shape, func)
    kspace = jnp.asarray(kspace)
    return kspace, mask, jnp.asarray(maps).astype(kspace.dtype)


def input_scale(image: jax.Array) -> jax.Array:
    """The net's unit of intensity: the 99th percentile of ``|image|``, 1 if that is 0."""
    scale = jnp.quantile(jnp.abs(image), _SCALE_QUANTILE)
    return jnp.where(scale > 0, scale, jnp.ones((), scale.dtype))


def to_channels(x: jax.Array) -> jax.Array:
    """Complex ``(rows, cols)`` -> real ``(1, rows, cols, 2)`` (real, imaginary)."""
    return jnp.stack([x.real, x.imag], axis=-1)[None]


def from_channels(x: jax.Array) -> jax.Array:
    """Real ``(1, rows, cols, 2)`` -> complex ``(rows, cols)``."""
    return jax.lax.complex(x[0, ..., 0], x[0, ..., 1])


def data_gradient(operator: Sense, x: jax.Array, adjoint_data: jax.Array) -> jax.Array:
    """``A^H (A x - y) = A.N(x) - A.H(y)``, given ``adjoint_data = A.H(y)``: the steepest-
    ascent direction of ``1/2 ||A x - y||^2`` (the conjugate of ``jax.grad``'s output)."""
    return operator.N(x) - adjoint_data


def project_filters(raw: jax.Array) -> jax.Array:
    """Zero mean per filter and input channel, unit norm per filter: ``(k, k, 2, F)`` -> same."""
    centred = raw - jnp.mean(raw, axis=(0, 1), keepdims=True)
    norm2 = jnp.sum(centred * centred, axis=(0, 1, 2), keepdims=True)
    return centred * jax.lax.rsqrt(norm2 + jnp.finfo(raw.dtype).tiny)


def analysis(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``K x``: ``(1, rows, cols, 2)`` -> ``(1, rows, cols, F)``, zero boundary."""
    return conv(x, kernel, padding=kernel.shape[0] // 2)


@jax.custom_vjp
def synthesis(z: jax.Array, kernel: jax.Array) -> jax.Array:
    """``K^T z``, the exact adjoint of :func:`analysis`: ``(1, rows, cols, F)`` -> ``(1, rows,
    cols, 2)``. A zero-padded correlation's adjoint is the zero-padded correlation with the
    spatially flipped kernel, input and output channels swapped (odd windows).

    Reverse mode uses the adjointness: ``<K^T z, g> = <z, K g>``, so the cotangent of ``z`` is
    ``analysis(g, kernel)`` and that of the kernel is the kernel gradient of ``analysis`` at
    input ``g`` with cotangent ``z``: the same 2 -> F convolution as the analysis step's own,
    instead of the kernel gradient of an F -> 2 one (much slower with XLA's rule on CPU).
    """
    flipped = jnp.flip(kernel, axis=(0, 1)).transpose(0, 1, 3, 2)
    return conv(z, flipped, padding=kernel.shape[0] // 2)


def _synthesis_forward(z, kernel):
    return synthesis(z, kernel), (z, kernel)


def _synthesis_backward(residuals, cotangent):
    z, kernel = residuals
    response, pullback = jax.vjp(lambda k: analysis(cotangent, k), kernel)
    (d_kernel,) = pullback(z.astype(response.dtype))
    return response.astype(z.dtype), d_kernel.astype(kernel.dtype)


synthesis.defvjp(_synthesis_forward, _synthesis_backward)


@jax.custom_vjp
def rbf_activation(z: jax.Array, weights: jax.Array, centres: jax.Array,
                   width: jax.Array) -> jax.Array:
    """``phi_i(z) = sum_j w_ij exp(-(z - mu_j)^2 / (2 width^2))`` per channel ``i``.

    ``z`` ``(..., F)``, ``weights`` ``(F, R)``, ``centres`` ``(R,)``, ``width`` a scalar.
    Reverse-mode differentiable in ``z`` and ``weights`` (``centres`` and ``width`` are
    constants) with a custom rule that keeps only ``z`` for the backward pass and recomputes
    the Gaussians there, so the ``(..., F, R)`` array of Gaussians is never stored.
    """
    return _rbf(z, weights, centres, width)


def _rbf(z, weights, centres, width):
    # One Gaussian at a time (an unrolled sum XLA fuses into one pass over z): never the
    # (..., F, R) array of every Gaussian, which costs ten times more in memory traffic.
    scale = (-0.5 / (width * width)).astype(z.dtype)
    centres = centres.astype(z.dtype)
    weights = weights.astype(z.dtype)
    total = jnp.zeros_like(z)
    for j in range(centres.shape[0]):
        offset = z - centres[j]
        total = total + weights[:, j] * jnp.exp(offset * offset * scale)
    return total


def _rbf_forward(z, weights, centres, width):
    return _rbf(z, weights, centres, width), (z, weights, centres, width)


def _rbf_backward(residuals, cotangent):
    # One Gaussian at a time: memory of z's size, not R times it.
    z, weights, centres, width = residuals
    scale = (-0.5 / (width * width)).astype(z.dtype)
    batch_axes = tuple(range(z.ndim - 1))

    def one_centre(slope, centre_and_weights):
        centre, w = centre_and_weights
        offset = z - centre.astype(z.dtype)
        gauss = jnp.exp(offset * offset * scale)
        d_w = jnp.sum(cotangent * gauss, axis=batch_axes)
        return slope + w.astype(z.dtype) * gauss * offset, d_w

    slope, d_weights = jax.lax.scan(one_centre, jnp.zeros_like(z), (centres, weights.T))
    return (cotangent * slope * (2 * scale), d_weights.T.astype(weights.dtype),
            jnp.zeros_like(centres), jnp.zeros_like(width))


rbf_activation.defvjp(_rbf_forward, _rbf_backward)


class VarNet(nnx.Module):
    """Hammernik's variational network: ``num_steps`` unrolled gradient steps on a learned
    fields-of-experts energy plus the SENSE data term (see the module docstring).

    Parameters of step ``t`` (none shared between steps; stacked along a leading axis, the steps
    unrolled, or run by ``lax.scan`` with a ``remat`` policy):

    - ``filters`` ``(T, k, k, 2, F)`` float: raw filters; the net uses
      :func:`project_filters` of them, zero mean (per filter and channel) and unit norm (per
      filter). The paper constrains its filters (zero mean, bounded norm) by projecting
      them after each update; here the constraint is a reparametrisation.
    - ``activation_weights`` ``(T, F, R)``: the RBF weights of the activations ``phi_i``, with
      centres ``linspace(-rbf_range, rbf_range, R)`` and width their spacing; initialised so
      that ``phi_i(z)`` is close to ``0.1 z / F`` on the range.
    - ``log_step_size`` ``(T,)``: ``lambda_t = exp(log_step_size[t])`` (positive), initially 1.

    The paper's net has 10 steps of 48 filters of 11 x 11 and 31 RBFs; the defaults here use
    24 filters.

    Args:
        num_steps: ``T``, the number of gradient steps.
        num_filters: ``F``, filters (and activations) per step.
        kernel_size: the filter window ``k`` (odd).
        num_rbf: ``R``, Gaussians per activation (at least 2).
        rbf_range: the centres span ``[-rbf_range, rbf_range]`` in units of the input scale
            (the 99th percentile of ``|A^H y|``); responses outside get ``phi ~ 0``.
        remat: what the backward pass recomputes instead of storing (:func:`remat_policy`):
            ``"none"`` (default, or ``False``) stores every step's arrays; ``"cascade"`` (or
            ``True``) checkpoints each step: memory of one step's arrays instead of ``T``, for
            about one more forward pass; ``"block"`` checkpoints each step's filter, activation
            and adjoint-filter layer (its input image is stored, the ``F`` filter responses
            recomputed; the data term's arrays stored); ``"cascade+block"`` nests the two.
        param_dtype: dtype of the parameters.
        rngs: ``nnx.Rngs`` for the filter initialisation.

    Call ``net(kspace, mask, maps)`` with one example: k-space complex ``(coils, rows, cols)``,
    a mask broadcasting to it, coil maps ``(coils, rows, cols)``; returns the complex image
    ``(rows, cols)`` (dtype of the k-space), starting from ``x0 = A^H y``.
    """

    def __init__(self, *, num_steps: int = 10, num_filters: int = 24, kernel_size: int = 11,
                 num_rbf: int = 31, rbf_range: float = 1.0, remat: bool | str = "none",
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        func = "mskjax.nets.VarNet"
        check_positive_int(num_steps, "num_steps", func)
        check_positive_int(num_filters, "num_filters", func)
        check_positive_int(kernel_size, "kernel_size", func)
        if kernel_size % 2 == 0:
            raise ValueError(f"{func}: kernel_size must be odd, got {kernel_size}")
        check_positive_int(num_rbf, "num_rbf", func, minimum=2)
        check_interval(rbf_range, "rbf_range", func, low=0)
        remat = remat_policy(remat, func)
        self.num_steps, self.num_filters, self.kernel_size = num_steps, num_filters, kernel_size
        self.num_rbf, self.rbf_range, self.remat = num_rbf, float(rbf_range), remat
        shape = (num_steps, kernel_size, kernel_size, 2, num_filters)
        self.filters = nnx.Param(jax.random.normal(rngs.params(), shape, param_dtype))
        centres = np.linspace(-rbf_range, rbf_range, num_rbf)
        # sum_j mu_j g(z - mu_j) ~ z * sqrt(2 pi) * width / spacing: a linear start.
        slope = 0.1 / num_filters / math.sqrt(2 * math.pi)
        weights = np.broadcast_to(slope * centres, (num_steps, num_filters, num_rbf))
        self.activation_weights = nnx.Param(jnp.asarray(weights, param_dtype))
        self.log_step_size = nnx.Param(jnp.zeros((num_steps,), param_dtype))

    @property
    def centres(self) -> np.ndarray:
        """The fixed RBF centres ``(num_rbf,)``."""
        return np.linspace(-self.rbf_range, self.rbf_range, self.num_rbf)

    @property
    def width(self) -> float:
        """The Gaussians' standard deviation: the spacing of the centres."""
        return 2 * self.rbf_range / (self.num_rbf - 1)

    @property
    def step_sizes(self) -> jax.Array:
        """``lambda_t`` for every step, ``(num_steps,)``."""
        return jnp.exp(self.log_step_size[...])

    def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        kspace, mask, maps = check_inputs(kspace, mask, maps, "mskjax.nets.VarNet")
        operator = Sense(maps, mask=mask)
        adjoint = operator.H(kspace)
        scale = input_scale(adjoint)
        adjoint_data = adjoint / scale.astype(adjoint.dtype)
        real = adjoint.real.dtype
        centres = jnp.asarray(self.centres, real)
        width = jnp.asarray(self.width, real)

        policy = remat_policy(self.remat, "mskjax.nets.VarNet")

        def layer(x, raw, weights):
            kernel = project_filters(raw).astype(real)
            response = analysis(to_channels(x), kernel)
            return from_channels(
                synthesis(rbf_activation(response, weights, centres, width), kernel))

        if policy in ("block", "cascade+block"):
            layer = jax.checkpoint(layer)

        def step(x, params):
            raw, weights, log_step = params
            regulariser = layer(x, raw, weights)
            step_size = jnp.exp(log_step).astype(real)
            return x - regulariser - step_size * data_gradient(operator, x, adjoint_data), None

        if policy in ("cascade", "cascade+block"):
            step = jax.checkpoint(step)
        params = (self.filters[...], self.activation_weights[...], self.log_step_size[...])
        if policy == "none":
            # A Python loop over the steps, not lax.scan: the reverse pass of a scan over
            # convolutions runs slower on CPU than the same steps unrolled.
            x = adjoint_data
            for t in range(self.num_steps):
                x, _ = step(x, tuple(p[t] for p in params))
        else:
            # With remat, lax.scan: unrolled, XLA may schedule the recomputation early, where
            # it saves nothing.
            x, _ = jax.lax.scan(step, adjoint_data, params)
        return x * scale.astype(x.dtype)

    def apply_sample(self, sample):
        """Reconstruct ``sample.kspace`` (with ``sample.mask``, ``sample.maps``) into
        ``sample.image``: the complex image ``(rows, cols)``, not its magnitude."""
        return sample.replace(image=self(sample.kspace, sample.mask, sample.maps))
