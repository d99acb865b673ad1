"""The classification models of the CLI: names, default sizes, how each sees an example.

Every model maps one normalised example to a head's outputs (``mskjax.nets.ClassifierHead``):

- 2D models (``resnet18``, ``resnet34``, ``resnet50``, ``resnet-small``, ``densenet121``,
  ``densenet-small``) take a 2D image ``(rows, cols)`` as one channel;
- ``cnn3d`` takes a volume ``(x, y, z)``;
- ``multiview`` (the MRNet layout) takes three stacks of slices (sagittal, coronal, axial), a
  small ResNet shared by the planes.

Normalisation is group normalisation by default (``norm="group"``; ``"instance"`` works too).
Batch normalisation is refused here: the train step updates the weights only and checkpoints
hold only the weights, so a restored net would normalise with its initial running statistics.
In Python, a net with batch norm trains with :func:`mskjax.train.make_train_step` and gets its
running statistics from :func:`mskjax.train.recompute_batch_statistics`.

The default sizes train in minutes on a CPU; every size is an option (``--config KEY=VALUE``)
and is stored with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import nets


@dataclasses.dataclass(frozen=True)
class ClsModelSpec:
    """How to build a classification model and what its input is."""

    backbone: Callable[..., nnx.Module]
    defaults: dict
    inputs: str  # "image" (2D), "volume" (3D) or "views"
    description: str


def _resnet(layers):
    return lambda rngs, **c: nets.ResNet(1, layers=layers, rngs=rngs, **c)


CLS_MODELS: dict[str, ClsModelSpec] = {
    "resnet18": ClsModelSpec(_resnet("resnet18"), {"width": 16, "norm": "group"}, "image",
                             "ResNet-18 layout (torchvision), width 16 by default"),
    "resnet34": ClsModelSpec(_resnet("resnet34"), {"width": 16, "norm": "group"}, "image",
                             "ResNet-34 layout, width 16 by default"),
    "resnet50": ClsModelSpec(_resnet("resnet50"), {"width": 16, "norm": "group"}, "image",
                             "ResNet-50 layout (bottlenecks), width 16 by default"),
    "resnet-small": ClsModelSpec(_resnet((1, 1, 1, 1)), {"width": 16, "norm": "group"}, "image",
                                 "a ResNet with one basic block per stage, width 16"),
    "densenet121": ClsModelSpec(
        lambda rngs, **c: nets.DenseNet(1, block_config="densenet121", rngs=rngs, **c),
        {"growth_rate": 12, "num_init_features": 24, "norm": "group"}, "image",
        "DenseNet-121 block layout (6, 12, 24, 16), growth 12 by default"),
    "densenet-small": ClsModelSpec(
        lambda rngs, **c: nets.DenseNet(1, block_config="small", rngs=rngs, **c),
        {"norm": "group"}, "image", "a small DenseNet (see mskjax.nets.DenseNet)"),
    "cnn3d": ClsModelSpec(lambda rngs, **c: nets.CNN3D(1, rngs=rngs, **c),
                          {"chans": [8, 16, 32, 64], "norm": "group"}, "volume",
                          "a plain 3D CNN for volumes"),
    "multiview": ClsModelSpec(_resnet((1, 1, 1, 1)), {"width": 16, "norm": "group"}, "views",
                              "MRNet layout: a small ResNet shared by the three planes, "
                              "max-pooled over slices, one head"),
}


def cls_model_spec(name: str, func: str) -> ClsModelSpec:
    if name not in CLS_MODELS:
        raise ValueError(f"{func}: unknown model {name!r}; expected one of {sorted(CLS_MODELS)}")
    return CLS_MODELS[name]


def build_cls_model(name: str, config: dict | None, *, task: str, num_classes: int | None,
                    seed: int, func: str, drop_prob: float = 0.0):
    """``(model, full_config)``: a :class:`mskjax.nets.Classifier` (or
    :class:`mskjax.nets.MultiViewNet`) with the defaults updated by ``config``."""
    spec = cls_model_spec(name, func)
    full = {**spec.defaults, **(config or {})}
    if full.get("norm", "batch" if name == "cnn3d" else None) == "batch":
        raise ValueError(f"{func}: norm=batch is not supported by the command line (checkpoints "
                         "hold only the weights, not the running statistics); use norm=group or "
                         "norm=instance")
    head_classes = None if task in ("binary", "regression") else num_classes
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    try:
        if spec.inputs == "views":
            model = nets.MultiViewNet(lambda r: spec.backbone(r, **full), task=task,
                                      num_classes=head_classes, drop_prob=drop_prob, rngs=rngs,
                                      shared=True)
        else:
            backbone = spec.backbone(rngs, **full)
            head = nets.ClassifierHead(backbone.out_features, task=task,
                                       num_classes=head_classes, drop_prob=drop_prob, rngs=rngs)
            model = nets.Classifier(backbone, head)
    except TypeError as err:
        raise ValueError(f"{func}: bad --config for {name}: {err}") from err
    return model, full


def normalise_example(x: np.ndarray) -> np.ndarray:
    """``x / percentile(x, 99)`` as float32 (each view of a multi-view example on its own);
    a constant or empty image is an error."""
    x = np.asarray(x, dtype=np.float32)
    scale = float(np.percentile(x, 99))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("the image's 99th percentile is not positive; is it empty?")
    return x / scale


def model_input(inputs: str, example) -> object:
    """One normalised example as the model's batch of one: ``(1, *spatial, 1)``, or a tuple of
    three ``(1, slices, rows, cols, 1)`` for views."""
    if inputs == "views":
        return tuple(jnp.asarray(normalise_example(v))[None, ..., None] for v in example)
    return jnp.asarray(normalise_example(example))[None, ..., None]


@functools.lru_cache(maxsize=8)
def outputs_fn(graphdef):
    """``fn(state, x) -> outputs``, jitted once per net structure."""

    def outputs(state, x):
        return nnx.merge(graphdef, state)(x)

    return jax.jit(outputs)


def predict_outputs(model: nnx.Module, inputs: str, examples) -> np.ndarray:
    """Head outputs ``(n, num_outputs)`` of raw examples (a sequence), one at a time."""
    graphdef, state = nnx.split(model)
    fn = outputs_fn(graphdef)
    return np.concatenate([np.asarray(fn(state, model_input(inputs, e))) for e in examples])
