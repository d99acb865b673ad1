"""MoDL: model-based deep learning for multi-coil 2D MRI (Aggarwal, Mani, Jacob).

"MoDL: Model-Based Deep Learning Architecture for Inverse Problems", IEEE Trans. Med. Imaging
38(2):394-405, 2019. ``K`` iterations alternate a CNN denoiser ``D_w`` (one set of weights for
every iteration) with exact data consistency:

    x_0 = A^H y,    z_k = D_w(x_k),    x_{k+1} = argmin_x ||A x - y||^2 + lamda ||x - z_k||^2,

the last solved by conjugate gradients on ``(A^H A + lamda I) x = A^H y + lamda z_k`` from
zero, with ``A`` :class:`mskjax.linop.Sense` and :func:`mskjax.solvers.cg` (implicit gradients
through ``lax.custom_linear_solve`` by default, so memory does not grow with the CG iterations;
``implicit=False`` differentiates through them). The returned image is ``x_K``.

CG stops early once its relative residual reaches the machine epsilon of the working precision
(``tol=eps``): later iterations change nothing, and differentiating through them (unrolled)
divides by residual norms that underflow, which turns the gradients into NaN.

Conventions as in :mod:`mskjax.nets._varnet`: one example ``(coils, rows, cols)``, complex image
``(rows, cols)``, batch with ``jax.vmap``; the k-space is divided by the 99th percentile of
``|A^H y|`` on the way in and the image multiplied by it on the way out, so ``lamda`` and the
denoiser see scale-free images and ``net(c * y) == c * net(y)`` for ``c > 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import check_interval, check_positive_int
from ..linop import Identity, Sense
from ..solvers import cg
from ._conv import conv
from ._varnet import check_inputs, from_channels, input_scale, remat_policy, to_channels

__all__ = ["MoDL"]


class _Conv3x3(nnx.Module):
    """A 3 x 3 convolution with bias, zero padding, channels-last."""

    def __init__(self, features_in, features_out, *, gain, param_dtype, rngs):
        init = jax.nn.initializers.variance_scaling(gain, "fan_in", "truncated_normal")
        self.kernel = nnx.Param(init(rngs.params(), (3, 3, features_in, features_out),
                                     param_dtype))
        self.bias = nnx.Param(jnp.zeros((features_out,), param_dtype))

    def __call__(self, x):
        return conv(x, self.kernel[...], padding=1) + self.bias[...].astype(x.dtype)


class ResidualDenoiser(nnx.Module):
    """MoDL's denoiser ``D_w(x) = x + N_w(x)`` on ``(batch, rows, cols, 2)`` images.

    ``N_w`` is ``num_layers`` 3 x 3 convolutions (2 -> features -> ... -> features -> 2), each
    but the last followed by ReLU. No normalisation layer: the paper's batch normalisation
    keeps running statistics (state that changes between training and inference); the net's
    input scaling plays its part here. The paper writes ``D_w = I - N_w`` (``N_w`` estimates
    the alias and noise); the sign is absorbed into the weights.
    """

    def __init__(self, *, num_layers: int, features: int, param_dtype, rngs: nnx.Rngs):
        sizes = [2] + [features] * (num_layers - 1) + [2]
        self.layers = nnx.List([
            _Conv3x3(a, b, gain=2.0 if i < num_layers - 1 else 1.0, param_dtype=param_dtype,
                     rngs=rngs)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])

    def __call__(self, x, *, remat_layers: bool = False):
        """``(batch, rows, cols, 2)`` -> same. ``remat_layers``: ``jax.checkpoint`` around each
        convolution and its ReLU, so the backward pass stores the layers' inputs only."""
        h = x
        for layer in self.layers[:-1]:
            h = _call(layer, h, remat=remat_layers, activation=jax.nn.relu)
        return x + _call(self.layers[-1], h, remat=remat_layers)


def _call(module, x, *, remat, activation=None):
    """``activation(module(x))``, inside ``jax.checkpoint`` when ``remat``."""
    if not remat:
        y = module(x)
        return y if activation is None else activation(y)
    graphdef, state = nnx.split(module)

    @jax.checkpoint
    def run(state, x):
        y = nnx.merge(graphdef, state)(x)
        return y if activation is None else activation(y)

    return run(state, x)


class MoDL(nnx.Module):
    """MoDL: ``num_iterations`` alternations of a shared residual CNN denoiser and CG data
    consistency (see the module docstring).

    Parameters: ``denoiser`` (a :class:`ResidualDenoiser`, the same in every iteration) and
    ``log_lamda`` (scalar), ``lamda = exp(log_lamda)`` (positive, learned). The paper uses
    ``K = 10`` iterations of a 5-layer, 64-feature denoiser; the default here is ``K = 5``.

    Args:
        num_iterations: ``K``, denoiser + data-consistency iterations.
        cg_iterations: the most CG iterations per data-consistency step (static; fewer once
            the residual reaches the machine epsilon).
        num_layers: convolutions in the denoiser (at least 2).
        features: channels of the denoiser's hidden layers.
        lamda: the initial weight of ``||x - z||^2``, in units of the scaled image (> 0).
        implicit: implicit gradients through CG (memory independent of ``cg_iterations``; the
            gradient of the exact solution) or, with ``False``, through the iterations.
        remat: what the backward pass recomputes instead of storing
            (:func:`mskjax.nets._varnet.remat_policy`): ``"none"`` (default, or ``False``)
            stores every iteration's arrays; ``"cascade"`` (or ``True``) checkpoints each
            iteration (denoiser and CG): only its input image is stored and its forward pass
            runs again in the backward pass (with any policy the iterations run in
            ``lax.scan``); ``"block"`` checkpoints each convolution (with its
            ReLU) of the denoiser: the layers' inputs are stored, the pre-activation maps
            recomputed, the CG arrays stored; ``"cascade+block"`` nests the two.
        param_dtype: dtype of the parameters.
        rngs: ``nnx.Rngs`` for the denoiser's initialisation.

    Call ``net(kspace, mask, maps)`` with one example: k-space complex ``(coils, rows, cols)``,
    a mask broadcasting to it, coil maps ``(coils, rows, cols)``; returns the complex image
    ``(rows, cols)`` (dtype of the k-space).
    """

    def __init__(self, *, num_iterations: int = 5, cg_iterations: int = 10, num_layers: int = 5,
                 features: int = 64, lamda: float = 0.05, implicit: bool = True,
                 remat: bool | str = "none", param_dtype=jnp.float32, rngs: nnx.Rngs):
        func = "mskjax.nets.MoDL"
        check_positive_int(num_iterations, "num_iterations", func)
        check_positive_int(cg_iterations, "cg_iterations", func)
        check_positive_int(num_layers, "num_layers", func, minimum=2)
        check_positive_int(features, "features", func)
        check_interval(lamda, "lamda", func, low=0)
        if not isinstance(implicit, (bool, np.bool_)):
            raise TypeError(f"{func}: implicit must be a bool, got {implicit!r}")
        remat = remat_policy(remat, func)
        self.num_iterations, self.cg_iterations = num_iterations, cg_iterations
        self.implicit, self.remat = bool(implicit), remat
        self.denoiser = ResidualDenoiser(num_layers=num_layers, features=features,
                                         param_dtype=param_dtype, rngs=rngs)
        self.log_lamda = nnx.Param(jnp.asarray(np.log(lamda), param_dtype))

    @property
    def lamda(self) -> jax.Array:
        """The data-consistency weight ``exp(log_lamda)``."""
        return jnp.exp(self.log_lamda[...])

    def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        kspace, mask, maps = check_inputs(kspace, mask, maps, "mskjax.nets.MoDL")
        operator = Sense(maps, mask=mask)
        adjoint = operator.H(kspace)
        scale = input_scale(adjoint)
        adjoint_data = adjoint / scale.astype(adjoint.dtype)
        lamda = self.lamda.astype(adjoint.real.dtype)
        normal = operator.N + lamda * Identity(operator.ishape)
        tol = float(jnp.finfo(lamda.dtype).eps)
        graphdef, state = nnx.split(self.denoiser)
        policy = remat_policy(self.remat, "mskjax.nets.MoDL")
        remat_layers = policy in ("block", "cascade+block")

        def iteration(x, state):
            denoiser = nnx.merge(graphdef, state)
            # Only a ResidualDenoiser takes remat_layers: another denoiser may be put in.
            image = to_channels(x)
            z = from_channels(denoiser(image, remat_layers=True) if remat_layers
                              else denoiser(image))
            result = cg(normal, adjoint_data + lamda * z, max_iter=self.cg_iterations,
                        tol=tol, implicit=self.implicit)
            return result.x

        if policy in ("cascade", "cascade+block"):
            iteration = jax.checkpoint(iteration)
        if policy == "none":
            # A Python loop, not lax.scan: the reverse pass of a scan whose body holds CG
            # solves and convolutions runs several times slower on CPU than unrolled.
            x = adjoint_data
            for _ in range(self.num_iterations):
                x = iteration(x, state)
        else:
            # With remat, lax.scan: unrolled, XLA may schedule the recomputation early, where
            # it saves nothing.
            x, _ = jax.lax.scan(lambda x, _: (iteration(x, state), None), adjoint_data, None,
                                length=self.num_iterations)
        return x * scale.astype(x.dtype)

    def apply_sample(self, sample):
        """Reconstruct ``sample.kspace`` (with ``sample.mask``, ``sample.maps``) into
        ``sample.image``: the complex image ``(rows, cols)``, not its magnitude."""
        return sample.replace(image=self(sample.kspace, sample.mask, sample.maps))
