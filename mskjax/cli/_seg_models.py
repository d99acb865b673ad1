"""The segmentation models of the CLI: names, default sizes, how each sees a volume.

Every model maps a normalised volume ``(x, y, z)`` (the phantom's ``(left-right,
superior-inferior, anterior-posterior)`` order; :func:`normalise` divides by the 99th
percentile) to class probabilities ``(x, y, z, num_classes)``:

- ``unet`` and ``segnet``: 2D nets on the sagittal slices ``volume[i]`` (batched over slices).
- ``unet3d``: a 3D U-Net on patches, blended over the volume by
  :func:`mskjax.nets.sliding_window_inference` (Gaussian weights).
- ``triplanar``: :class:`mskjax.nets.TriplanarCNN`, one classification per voxel from its
  sagittal, coronal and axial patches.

The default sizes train in minutes on a CPU; every size is an option (``--config KEY=VALUE``)
and is stored with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import nets


@dataclasses.dataclass(frozen=True)
class SegModelSpec:
    """How to build a segmentation model and how it covers a volume."""

    build: Callable[..., nnx.Module]
    defaults: dict
    kind: str  # "slice", "patch" or "voxel"
    description: str


SEG_MODELS: dict[str, SegModelSpec] = {
    "unet": SegModelSpec(
        build=lambda rngs, num_classes, **c: nets.UNet(1, num_classes, ndim=2, rngs=rngs, **c),
        defaults={"chans": 16, "num_pool_layers": 4, "drop_prob": 0.0},
        kind="slice", description="2D U-Net on sagittal slices"),
    "segnet": SegModelSpec(
        build=lambda rngs, num_classes, **c: nets.SegNet(1, num_classes, ndim=2, rngs=rngs,
                                                         **c),
        defaults={"chans": 16, "num_pool_layers": 4},
        kind="slice", description="SegNet-style encoder-decoder (index unpooling) on sagittal "
                                  "slices"),
    "unet3d": SegModelSpec(
        build=lambda rngs, num_classes, **c: nets.UNet(1, num_classes, ndim=3, rngs=rngs, **c),
        defaults={"chans": 8, "num_pool_layers": 3, "drop_prob": 0.0},
        kind="patch", description="3D U-Net on patches, Gaussian-blended sliding windows"),
    "triplanar": SegModelSpec(
        build=lambda rngs, num_classes, **c: nets.TriplanarCNN(1, num_classes, rngs=rngs, **c),
        defaults={},
        kind="voxel", description="triplanar 2.5D CNN (Prasoon et al.), one voxel at a time"),
}

#: Patch of the 3D models (voxels), training and sliding-window inference.
PATCH_3D = (32, 64, 64)


def seg_model_spec(name: str, func: str) -> SegModelSpec:
    if name not in SEG_MODELS:
        raise ValueError(f"{func}: unknown model {name!r}; expected one of {sorted(SEG_MODELS)}")
    return SEG_MODELS[name]


def build_seg_model(name: str, config: dict | None, num_classes: int, seed: int, func: str):
    """``(model, full_config)``: the defaults updated by ``config``."""
    spec = seg_model_spec(name, func)
    full = {**spec.defaults, **(config or {})}
    try:
        model = spec.build(nnx.Rngs(params=seed, dropout=seed + 1), num_classes, **full)
    except TypeError as err:
        raise ValueError(f"{func}: bad --config for {name}: {err}") from err
    return model, full


def normalise(volume: np.ndarray) -> np.ndarray:
    """``volume / percentile(volume, 99)`` as float32 (a constant volume is an error)."""
    volume = np.asarray(volume, dtype=np.float32)
    scale = float(np.percentile(volume, 99))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("the image's 99th percentile is not positive; is it empty?")
    return volume / scale


@functools.lru_cache(maxsize=8)
def _probabilities_fn(graphdef, kind: str):
    """``fn(state, x)`` -> class probabilities, jitted once per net structure (not per call:
    a volume after the first reuses the compiled program)."""

    def probabilities(state, x):
        model = nnx.merge(graphdef, state)
        logits = model.segment(x, slice_batch=16) if kind == "voxel" else model(x)
        return jax.nn.softmax(logits, axis=-1)

    return jax.jit(probabilities)


def volume_probabilities(name: str, model: nnx.Module, volume: Any, *, num_classes: int,
                         batch_size: int = 8) -> np.ndarray:
    """Class probabilities ``(x, y, z, num_classes)`` float32 of a normalised volume."""
    kind = SEG_MODELS[name].kind
    graphdef, state = nnx.split(model)
    probabilities = functools.partial(_probabilities_fn(graphdef, kind), state)
    volume = np.asarray(volume, dtype=np.float32)
    if kind == "slice":
        return np.concatenate([
            np.asarray(probabilities(jnp.asarray(volume[start:start + batch_size, ..., None])))
            for start in range(0, volume.shape[0], batch_size)])
    if kind == "patch":
        probs = nets.sliding_window_inference(probabilities, volume[..., None], window=PATCH_3D,
                                              overlap=0.5, batch_size=1,
                                              num_classes=num_classes)
        return np.asarray(probs, dtype=np.float32)
    return np.asarray(probabilities(jnp.asarray(volume[None, ..., None]))[0], dtype=np.float32)
