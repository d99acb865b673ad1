"""The learned reconstruction models of the CLI: names, default sizes, one reconstruct rule.

Every model maps one undersampled example to a magnitude image ``(rows, cols)``:

- ``unet``: fastMRI's U-Net baseline on the zero-filled root-sum-of-squares image, normalised
  by its mean and standard deviation (fastMRI's ``normalize_instance``) and scaled back.
- ``e2e-varnet``: :class:`mskjax.nets.E2EVarNet` (its own sensitivity net) on the k-space.
- ``varnet``, ``modl``, ``gancs``: :class:`mskjax.nets.VarNet`, :class:`mskjax.nets.MoDL` and
  :class:`mskjax.nets.GANCSGenerator` (trained against a discriminator) with ESPIRiT
  maps estimated from the sampled centre lines (:func:`sensitivity_maps`), the same maps as the
  CG-SENSE and L1-wavelet baselines get; the magnitude of their complex output.

The default sizes are small enough to train for minutes on a CPU; every size is an option
(``--config KEY=VALUE`` on the command line) and is stored with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from .. import coils, nets
from ..fourier import ifft2c


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build a model and what it needs."""

    build: Callable[..., nnx.Module]
    defaults: dict
    needs_maps: bool
    description: str


MODELS: dict[str, ModelSpec] = {
    "unet": ModelSpec(
        build=lambda rngs, **config: nets.UNet(1, 1, rngs=rngs, **config),
        defaults={"chans": 16, "num_pool_layers": 4, "drop_prob": 0.0},
        needs_maps=False,
        description="fastMRI U-Net on the zero-filled root-sum-of-squares image"),
    "e2e-varnet": ModelSpec(
        build=lambda rngs, **config: nets.E2EVarNet(rngs=rngs, **config),
        defaults={"num_cascades": 6, "sens_chans": 4, "sens_pools": 3, "chans": 8, "pools": 3},
        needs_maps=False,
        description="end-to-end VarNet (fastMRI's VarNet) with learned sensitivity maps"),
    "varnet": ModelSpec(
        build=lambda rngs, **config: nets.VarNet(rngs=rngs, **config),
        defaults={"num_steps": 8, "num_filters": 24, "kernel_size": 11, "num_rbf": 31},
        needs_maps=True,
        description="Hammernik's variational network with ESPIRiT maps"),
    "modl": ModelSpec(
        build=lambda rngs, **config: nets.MoDL(rngs=rngs, **config),
        defaults={"num_iterations": 5, "cg_iterations": 8, "num_layers": 5, "features": 32},
        needs_maps=True,
        description="MoDL (CNN denoiser + CG data consistency) with ESPIRiT maps"),
    "gancs": ModelSpec(
        build=lambda rngs, **config: nets.GANCSGenerator(rngs=rngs, **config),
        # 4 CG iterations: on the real 8-coil knees at 5x the exact projection amplifies noise
        # (an over-determined but ill-conditioned SENSE operator); 4 beat 10 on the training
        # subjects, SSIM 0.853 against 0.779 (benchmarks/gancs_cg_selection.py).
        defaults={"num_blocks": 3, "features": 16, "kernel_size": 3, "cg_iterations": 4},
        needs_maps=True,
        description="GANCS generator (residual CNN + affine SENSE projection) with ESPIRiT "
                    "maps, trained against a PatchGAN discriminator"),
}


def model_spec(name: str, func: str) -> ModelSpec:
    """The spec of a model name, or a ValueError listing the names."""
    if name not in MODELS:
        raise ValueError(f"{func}: unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, config: dict | None, seed: int, func: str) -> tuple[nnx.Module, dict]:
    """``(model, full_config)``: the defaults updated with ``config``, weights from ``seed``."""
    spec = model_spec(name, func)
    full = {**spec.defaults, **(config or {})}
    try:
        model = spec.build(nnx.Rngs(params=seed, dropout=seed + 1), **full)
    except TypeError as err:
        raise ValueError(f"{func}: bad configuration {full} for model {name!r}: {err}") from err
    return model, full


def num_low_frequencies(cols: int, center_fraction: float) -> int:
    """fastMRI's number of fully sampled centre lines, ``round(cols * center_fraction)``."""
    return int(round(cols * center_fraction))


def sensitivity_maps(kspace: jax.Array, num_low: int) -> jax.Array:
    """ESPIRiT maps ``(coils, rows, cols)`` from the ``num_low`` sampled centre columns.

    The calibration region is 24 rows (or all, if fewer) by the ``num_low`` centre columns,
    with 6 x 6 kernels (narrower when the centre is narrower); static sizes, so it jits and
    vmaps.
    """
    rows = kspace.shape[-2]
    width = max(3, int(num_low))
    return coils.espirit(kspace, calib_width=(min(24, rows), width),
                         kernel_width=(min(6, rows - 1), min(6, width - 1)))


def input_scale(kspace: jax.Array) -> jax.Array:
    """The maximum of the zero-filled root-sum-of-squares image (1 if it is 0), without
    gradient: the unit every method works in, so that float32 keeps its precision whatever
    the scanner's units (the real knees here reach 1e8 in k-space)."""
    peak = jnp.max(coils.rss(ifft2c(kspace), axis=0))
    return jax.lax.stop_gradient(jnp.where(peak > 0, peak, 1.0))


def reconstruct(name: str, model: nnx.Module, kspace: jax.Array, mask: jax.Array, *,
                num_low: int, maps: jax.Array | None = None) -> jax.Array:
    """The magnitude image ``(rows, cols)`` of one undersampled example (module docstring).

    The k-space is divided by :func:`input_scale` before the model sees it and the image
    multiplied back, so every model runs on data of order one.
    """
    scale = input_scale(kspace)
    image = _reconstruct(name, model, kspace / scale.astype(kspace.dtype), mask,
                         num_low=num_low, maps=maps)
    return image * scale


def _reconstruct(name, model, kspace, mask, *, num_low, maps):
    if name == "unet":
        image = coils.rss(ifft2c(kspace), axis=0)
        mean, std = jnp.mean(image), jnp.std(image)
        std = jnp.where(std > 0, std, 1.0)
        out = model(((image - mean) / std)[None, ..., None])[0, ..., 0]
        return out * std + mean
    if name == "e2e-varnet":
        return model(kspace, mask, num_low_frequencies=num_low)
    if maps is None:
        maps = sensitivity_maps(kspace, num_low)
    return jnp.abs(model(kspace, mask, maps))


def parse_config(items: list[str] | None, func: str) -> dict[str, Any]:
    """``["chans=8", "remat=true", "chans=[4,8]"]`` -> ``{"chans": 8, "remat": True, ...}``
    (ints, floats, bools, JSON lists)."""
    config: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{func}: --config takes KEY=VALUE, got {item!r}")
        lowered = text.lower()
        if lowered in ("true", "false"):
            value: Any = lowered == "true"
        elif text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as err:
                raise ValueError(f"{func}: --config {item!r}: a list must be JSON, like "
                                 "[20,50]") from err
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        config[key.replace("-", "_")] = value
    return config
