"""Classifiers: a backbone that makes feature maps, and a head for one kind of target.

The contract every classifier of the package follows (and a user's own backbone can follow):

- A **backbone** is an ``nnx.Module`` with int attributes ``ndim`` (spatial axes), ``in_chans``
  and ``out_features``, called on ``(batch, *spatial, in_chans)`` images, float32,
  channels-last, and returning the last feature map ``(batch, *spatial', out_features)``
  (before any global pooling). :class:`DenseNet`, :class:`ResNet` and :class:`CNN3D` are
  backbones.
- A :class:`ClassifierHead` global-average-pools a feature map over its spatial axes and
  applies one linear layer (after optional dropout) to give the **outputs** ``(batch,
  num_outputs)`` for its ``task``:

  ============== ================= ===========================================================
  task           num_outputs       outputs, and what :func:`class_probabilities` makes of them
  ============== ================= ===========================================================
  ``binary``     1                 the logit of the positive class; probability ``sigmoid``
  ``multiclass`` ``num_classes``   logits; probabilities ``softmax``
  ``ordinal``    ``num_classes-1`` cumulative logits ``logit P(y > k)``, ``k = 0..K-2``, with one
                                   weight vector shared by every threshold and one bias each
                                   (rank-consistent, as CORAL, Cao et al. 2020); class
                                   probabilities are the differences of the cumulative ones
  ``regression`` 1                 the predicted value itself
  ============== ================= ===========================================================

  Because the head is pooling followed by a linear map, ``kernel`` (``(out_features,
  num_weights)``) holds the class activation map weights: the outputs equal the spatial mean of
  ``features @ kernel`` plus the bias.
- A :class:`Classifier` joins the two; ``Classifier.features`` is the backbone's feature map (what
  class activation maps and Grad-CAM look at) and calling it gives the head's outputs.
  ``apply_sample`` makes it a pipeline stage (:func:`mskjax.nets.stage`): it reads
  ``sample.image`` (one example: ``(*spatial)`` real, ``(*spatial, in_chans)`` or complex as two
  channels) and writes the outputs ``(num_outputs,)`` to ``sample.label``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._blocks import uniform_init
from ._segmentation import image_channels

#: The kinds of target a head predicts.
TASKS = ("binary", "multiclass", "ordinal", "regression")


def num_outputs(task: str, num_classes: int | None, func: str) -> int:
    """How many outputs a head for ``task`` has (see the module's table)."""
    if task not in TASKS:
        raise ValueError(f"{func}: task must be one of {TASKS}, got {task!r}")
    if task in ("binary", "regression"):
        if num_classes not in (None, 2 if task == "binary" else 1):
            raise ValueError(f"{func}: a {task} head takes num_classes=None, got {num_classes!r}")
        return 1
    check_positive_int(num_classes, "num_classes", func, minimum=2)
    return num_classes if task == "multiclass" else num_classes - 1


class ClassifierHead(nnx.Module):
    """Global average pooling, channel dropout, one linear layer.

    Args:
        in_features: channels of the feature map it takes.
        task: one of :data:`TASKS` (keyword-only).
        num_classes: classes of a ``multiclass`` or ``ordinal`` target (grades 0..K-1 give K);
            ``None`` for ``binary`` and ``regression``.
        drop_prob: dropout probability on the pooled features, in ``[0, 1)``.
        rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``drop_prob > 0``).

    Params: ``kernel`` ``(in_features, num_weights)`` (one column per output; a single shared
    column for ``ordinal``) and ``bias`` ``(num_outputs,)``. Initialisation as PyTorch's
    ``nn.Linear`` (uniform in ``+-1/sqrt(in_features)``); the ordinal biases start ordered
    (decreasing), so the cumulative probabilities are consistent from the first step.

    Call: ``(batch, *spatial, in_features)`` -> ``(batch, num_outputs)``.
    """

    def __init__(self, in_features: int, *, task: str, num_classes: int | None = None,
                 drop_prob: float = 0.0, rngs: nnx.Rngs):
        func = "mskjax.nets.ClassifierHead"
        check_positive_int(in_features, "in_features", func)
        check_interval(drop_prob, "drop_prob", func, low=0.0, high=1.0, low_open=False)
        self.task, self.in_features = task, in_features
        self.num_outputs = num_outputs(task, num_classes, func)
        self.num_classes = (2 if task == "binary" else None if task == "regression"
                            else num_classes)
        num_weights = 1 if task == "ordinal" else self.num_outputs
        self.kernel = nnx.Param(uniform_init(rngs.params(), (in_features, num_weights),
                                             in_features))
        if task == "ordinal":
            bias = jnp.linspace(1.0, -1.0, self.num_outputs, dtype=jnp.float32)
        else:
            bias = uniform_init(rngs.params(), (self.num_outputs,), in_features)
        self.bias = nnx.Param(bias)
        self.dropout = nnx.Dropout(float(drop_prob), rngs=rngs if drop_prob > 0 else None)

    def weights(self) -> jax.Array:
        """``(in_features, num_outputs)``: the linear map from pooled features to each output
        (the shared column repeated for ``ordinal``); the class activation map weights."""
        kernel = self.kernel[...]
        return jnp.broadcast_to(kernel, (self.in_features, self.num_outputs))

    def __call__(self, features: jax.Array) -> jax.Array:
        if features.ndim < 3 or features.shape[-1] != self.in_features:
            raise ValueError(f"mskjax.nets.ClassifierHead: features must be (batch, *spatial, "
                             f"{self.in_features}), got shape {features.shape}")
        pooled = jnp.mean(features, axis=tuple(range(1, features.ndim - 1)))
        return self.dropout(pooled) @ self.weights() + self.bias[...]


def class_probabilities(outputs: jax.Array, task: str) -> jax.Array:
    """Probabilities from a head's outputs ``(..., num_outputs)``.

    Returns: ``binary`` ``(...)`` the probability of the positive class; ``multiclass`` and
    ``ordinal`` ``(..., num_classes)`` summing to 1 (ordinal: ``P(y = k) = P(y > k-1) - P(y >
    k)``, clipped at 0 where a net's cumulative probabilities are not monotone, then
    renormalised); ``regression`` the value itself ``(...)``.
    """
    outputs = jnp.asarray(outputs)
    if task == "binary":
        return jax.nn.sigmoid(outputs[..., 0])
    if task == "multiclass":
        return jax.nn.softmax(outputs, axis=-1)
    if task == "ordinal":
        above = jax.nn.sigmoid(outputs)
        ones = jnp.ones_like(above[..., :1])
        cumulative = jnp.concatenate([ones, above, jnp.zeros_like(ones)], axis=-1)
        p = jnp.maximum(cumulative[..., :-1] - cumulative[..., 1:], 0.0)
        return p / jnp.maximum(p.sum(axis=-1, keepdims=True), 1e-12)
    if task == "regression":
        return outputs[..., 0]
    raise ValueError(f"mskjax.nets.class_probabilities: task must be one of {TASKS}, got "
                     f"{task!r}")


def predict_class(outputs: jax.Array, task: str) -> jax.Array:
    """The prediction from a head's outputs ``(..., num_outputs)``: ``binary`` int32 (logit >=
    0), ``multiclass`` int32 argmax, ``ordinal`` int32 number of thresholds passed (``sum_k
    [P(y > k) >= 0.5]``, the CORAL rule), ``regression`` the value (float)."""
    outputs = jnp.asarray(outputs)
    if task == "binary":
        return (outputs[..., 0] >= 0).astype(jnp.int32)
    if task == "multiclass":
        return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
    if task == "ordinal":
        return jnp.sum(outputs >= 0, axis=-1).astype(jnp.int32)
    if task == "regression":
        return outputs[..., 0]
    raise ValueError(f"mskjax.nets.predict_class: task must be one of {TASKS}, got {task!r}")


class Classifier(nnx.Module):
    """A backbone and a head: images -> outputs for one task.

    Args:
        backbone: an ``nnx.Module`` following the backbone contract (module docstring): int
            attributes ``ndim``, ``in_chans``, ``out_features``; ``(batch, *spatial, in_chans)``
            -> ``(batch, *spatial', out_features)``.
        head: a :class:`ClassifierHead` with ``in_features == backbone.out_features``.

    Attributes ``ndim``, ``in_chans``, ``task``, ``num_classes`` and ``num_outputs`` are the
    backbone's and the head's.

    Call: ``(batch, *spatial, in_chans)`` -> ``(batch, num_outputs)``.
    """

    def __init__(self, backbone: nnx.Module, head: ClassifierHead):
        func = "mskjax.nets.Classifier"
        if not isinstance(backbone, nnx.Module):
            raise TypeError(f"{func}: backbone must be an nnx.Module, got "
                            f"{type(backbone).__name__}")
        sizes = {name: getattr(backbone, name, None) for name in ("ndim", "in_chans",
                                                                  "out_features")}
        if not all(isinstance(v, int) for v in sizes.values()):
            raise TypeError(f"{func}: the backbone must have int attributes ndim, in_chans and "
                            f"out_features, got {sizes} from {type(backbone).__name__}")
        if not isinstance(head, ClassifierHead):
            raise TypeError(f"{func}: head must be a ClassifierHead, got {type(head).__name__}")
        if head.in_features != backbone.out_features:
            raise ValueError(f"{func}: the head takes {head.in_features} features, the backbone "
                             f"makes {backbone.out_features}")
        self.backbone, self.head = backbone, head
        self.ndim, self.in_chans = sizes["ndim"], sizes["in_chans"]
        self.task, self.num_classes, self.num_outputs = (head.task, head.num_classes,
                                                         head.num_outputs)

    def features(self, x: jax.Array) -> jax.Array:
        """The backbone's last feature map, ``(batch, *spatial', out_features)``."""
        return self.backbone(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))

    def apply_sample(self, sample):
        """``sample.image`` (one example) -> ``sample.label`` = outputs ``(num_outputs,)``."""
        x = image_channels(sample.image, ndim=self.ndim, in_chans=self.in_chans,
                           func="mskjax.nets.Classifier")
        return sample.replace(label=self(x[None])[0])
