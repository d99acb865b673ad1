"""Class activation maps (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017).

Both are pure functions of a net and a batch of images: they split the net into a **feature
extractor** and a **head** (no hooks) and return one map per example and feature map.

- A net follows the protocol of :func:`features_and_head`: it has a method
  ``head_from_features(maps)`` (used with its ``features(x)``), or it is a
  :class:`Classifier`-like net with ``features(x)`` and a ``head`` module. A multi-view net
  (MRNet layout) whose ``features(views)`` returns one feature map per plane gets one map per
  plane and slice from :func:`grad_cam`.
- Feature maps are channels-last with a leading batch axis, ``(batch, *axes, channels)``; a net
  may return a pytree of them (a tuple, one per plane). ``head(maps)`` gives the outputs
  ``(batch, num_outputs)``.
- ``target`` is an output index: an int for every example, or an int array ``(batch,)``. Its
  default is the predicted class: the argmax of the outputs for ``multiclass`` (and for any net
  with several outputs and no ``task`` attribute); index 0 for ``binary`` (the single logit:
  evidence for the positive class), ``ordinal`` (the weight vector shared by the thresholds:
  the maps of all thresholds are the same) and ``regression`` (the value).
- The maps are computed in evaluation mode: on a view of the net (``nnx.view``) with dropout
  off and BatchNorm on its running statistics, so each example's map depends on that example
  only. The net itself is not changed.
- ``resize=True`` brings the maps to the input's size with ``jax.image.resize(..., "linear")``:
  axis by axis, half-pixel centres (the centres of the ``n`` feature cells sit at the centres
  of the ``n`` equal blocks of the input, as ``align_corners=False`` in PyTorch), the values
  at the image border held from the outermost cell centres. Maps are float32 (the features'
  dtype).
- ``normalize=True`` rescales each example's map (of each feature map) to ``[0, 1]``,
  ``(m - min) / (max - min)``, as the usual overlay figure shows it; a constant map becomes
  all zeros (never NaN).

Jit either function with ``nnx.jit`` (the net is an argument) or through ``nnx.split`` /
``nnx.merge``; options are static.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import _is_concrete


def features_and_head(net) -> tuple[Callable, Callable]:
    """The split of ``net`` that :func:`grad_cam` differentiates through.

    The protocol, in order:

    1. a net with methods ``features(x)`` and ``head_from_features(maps)`` (e.g. a multi-view
       net, whose ``features`` returns a pytree of per-plane feature maps and whose head pools
       over planes and slices) gives ``(net.features, net.head_from_features)``;
    2. a net with a method ``features(x)`` and a callable ``head`` module (the
       :class:`Classifier` contract) gives ``(net.features, net.head)``.

    ``head(features(x))`` must equal ``net(x)``.

    Args:
        net: an ``nnx.Module`` following one of the two forms.

    Returns:
        ``(features_fn, head_fn)``: ``features_fn(x) -> maps``, a pytree of ``(batch, *axes,
        channels)`` arrays, and ``head_fn(maps) -> (batch, num_outputs)``.
    """
    if not callable(getattr(net, "features", None)):
        raise TypeError(f"mskjax.nets.features_and_head: the net must have a features(x) "
                        f"method (and head_from_features or a head), got "
                        f"{type(net).__name__} without one")
    if callable(getattr(net, "head_from_features", None)):
        return net.features, net.head_from_features
    if callable(getattr(net, "head", None)):
        return net.features, net.head
    raise TypeError(f"mskjax.nets.features_and_head: {type(net).__name__} has features(x) but "
                    "neither a head_from_features(maps) method nor a callable head")


def _eval_view(net, func):
    if not isinstance(net, nnx.Module):
        raise TypeError(f"{func}: the net must be an nnx.Module, got {type(net).__name__}")
    return nnx.view(net, deterministic=True, use_running_average=True,
                    raise_if_not_found=False)


def _check_outputs(outputs, batch, func):
    if not (hasattr(outputs, "ndim") and outputs.ndim == 2 and outputs.shape[0] == batch):
        raise ValueError(f"{func}: the head must give outputs (batch, num_outputs) with "
                         f"batch={batch}, got shape {tuple(np.shape(outputs))}")


def _targets(target, outputs, task, func):
    """``(batch,)`` int32 output indices, and whether each is out of range (traced input)."""
    batch, num = outputs.shape
    if target is None:
        if task == "multiclass" or (task is None and num > 1):
            index = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
        else:
            index = jnp.zeros((batch,), jnp.int32)
        return index, jnp.zeros((batch,), bool)
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"{func}: target must be an int or an int array (batch,), got {target!r}")
    target = jnp.asarray(target) if not isinstance(target, jax.core.Tracer) else target
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{func}: target must be an int or an int array (batch,), got dtype "
                        f"{target.dtype}")
    if target.shape not in ((), (batch,)):
        raise ValueError(f"{func}: target must be an int or an int array (batch,) = ({batch},), "
                         f"got shape {tuple(target.shape)}")
    if _is_concrete(target):
        values = np.asarray(target)
        if values.min() < 0 or values.max() >= num:
            raise ValueError(f"{func}: target must be an output index in 0..{num - 1} (the "
                             f"head has {num} outputs), got {np.unique(values).tolist()[:8]}")
    index = jnp.broadcast_to(target, (batch,)).astype(jnp.int32)
    bad = (index < 0) | (index >= num)
    return jnp.clip(index, 0, num - 1), bad


def _nan_where(maps, bad):
    """NaN maps for the examples whose traced target was out of range (never a silent clip)."""
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return jnp.where(bad.reshape(shape), jnp.asarray(jnp.nan, maps.dtype), maps)


def _normalize(maps):
    axes = tuple(range(1, maps.ndim))
    low = jnp.min(maps, axis=axes, keepdims=True)
    span = jnp.max(maps, axis=axes, keepdims=True) - low
    return jnp.where(span > 0, (maps - low) / jnp.where(span > 0, span, 1), 0.0)


def _resize(maps, x, func):
    """``(batch, *axes)`` -> ``(batch, *x.shape[1:1 + len(axes)])``, linear interpolation."""
    if not hasattr(x, "shape") or len(x.shape) < maps.ndim:
        raise ValueError(f"{func}: cannot resize a map of shape {tuple(maps.shape)} to an input "
                         f"of shape {tuple(np.shape(x))}; pass resize=False")
    shape = (maps.shape[0],) + tuple(x.shape[1:maps.ndim])
    return jax.image.resize(maps, shape, method="linear")


def _finish(maps, x, *, resize, normalize, func):
    if resize:
        maps = _resize(maps, x, func)
    return _normalize(maps) if normalize else maps


def class_activation_map(classifier, x, *, target=None, relu: bool = False,
                         normalize: bool = False, resize: bool = True) -> jax.Array:
    """The class activation map of a net whose head is global average pooling and one linear
    layer (Zhou et al. 2016).

    ``CAM_t = sum_c W[c, t] A_c``: the feature map ``A = classifier.features(x)`` weighted by
    the column ``t`` of ``classifier.head.weights()``. At the feature maps' resolution its
    spatial mean plus the bias is the output ``t`` exactly; the raw map (``relu=False``, the
    default) is signed, negative where the features speak against the output. ``relu=True``
    keeps the positive evidence only (applied before resizing).

    Args:
        classifier: a net with ``features(x)`` and a GAP + linear ``head`` with ``weights()``
            and ``bias`` (a :class:`Classifier`); others: use :func:`grad_cam`.
        x: ``(batch, *spatial, in_chans)`` float32 images.
        target: output index, an int or an int array ``(batch,)`` (keyword-only); default the
            predicted class (module docstring).
        relu: clip the map at 0 (keyword-only).
        normalize: rescale each example's map to ``[0, 1]`` (module docstring).
        resize: bring the map to the input's spatial size (linear interpolation, module
            docstring); ``False`` keeps the feature maps' size.

    Returns:
        ``(batch, *spatial)`` (or ``(batch, *spatial')`` with ``resize=False``), the features'
        dtype.
    """
    func = "mskjax.nets.class_activation_map"
    head = getattr(classifier, "head", None)
    if not (callable(getattr(classifier, "features", None))
            and callable(getattr(head, "weights", None)) and hasattr(head, "bias")):
        raise TypeError(f"{func}: the net must have features(x) and a global-average-pooling + "
                        f"linear head with weights() and bias (a mskjax.nets.Classifier), got "
                        f"{type(classifier).__name__}; use grad_cam for other nets")
    net = _eval_view(classifier, func)
    features = net.features(x)
    if not (hasattr(features, "ndim") and features.ndim >= 3):
        raise ValueError(f"{func}: features(x) must be (batch, *spatial', channels), got "
                         f"{type(features).__name__} of shape {np.shape(features)}")
    outputs = net.head(features)
    _check_outputs(outputs, features.shape[0], func)
    index, bad = _targets(target, outputs, getattr(classifier, "task", None), func)
    weights = net.head.weights()[:, index].T  # (batch, channels)
    maps = jnp.einsum("b...c,bc->b...", features, weights.astype(features.dtype))
    if relu:
        maps = jnp.maximum(maps, 0)
    maps = _finish(maps, x, resize=resize, normalize=normalize, func=func)
    return _nan_where(maps, bad)


def grad_cam(classifier, x, *, target=None, features: tuple[Callable, Callable] | None = None,
             normalize: bool = False, resize: bool = True):
    """Grad-CAM (Selvaraju et al. 2017) of any net split into features and head.

    For each feature map ``A`` (``(batch, *axes, channels)``) and each example, the weights are
    the mean over ``axes`` of the gradient of the output ``target`` with respect to ``A``,
    ``w_c = mean_p d y_t / d A_{p,c}``, and the map is ``ReLU(sum_c w_c A_c)``. For a GAP +
    linear head this is ``ReLU(CAM_t) / n`` with ``n`` the number of positions of ``axes``
    (the gradient of a spatial mean is ``W[c, t] / n`` everywhere). The gradients of a batch
    come from one backward pass of the summed targets, which is exact because in evaluation
    mode every output depends on its own example only.

    Args:
        classifier: a net following :func:`features_and_head` (a :class:`Classifier`, or a
            net with ``features`` and ``head_from_features``, such as a multi-view net).
        x: the net's input: ``(batch, *spatial, in_chans)`` images, or the pytree its
            ``features`` takes (e.g. one array per plane).
        target: output index, an int or an int array ``(batch,)`` (keyword-only); default the
            predicted class (module docstring).
        features: a ``(features_fn, head_fn)`` pair to use instead of
            ``features_and_head(classifier)``, e.g. to look at an earlier layer
            (``head_fn(features_fn(x))`` must be the outputs; the pair is used as given, not in
            an evaluation-mode view).
        normalize: rescale each example's map to ``[0, 1]`` (keyword-only).
        resize: bring each map to the input's size (linear interpolation, module docstring):
            a map ``(batch, *axes)`` takes the sizes of the first ``len(axes)`` axes of the
            input array, or of the matching leaf when the input is a pytree of the same
            structure as the feature maps (one map per plane and slice for a multi-view net);
            ``False`` keeps the feature maps' size.

    Returns:
        The maps, ``(batch, *spatial)``, float, non-negative; a pytree of the structure of the
        feature maps when the net gives several.
    """
    func = "mskjax.nets.grad_cam"
    if features is None:
        features_fn, head_fn = features_and_head(_eval_view(classifier, func))
    else:
        if not (isinstance(features, tuple) and len(features) == 2
                and all(callable(f) for f in features)):
            raise TypeError(f"{func}: features must be a (features_fn, head_fn) pair of "
                            f"callables, got {type(features).__name__}")
        features_fn, head_fn = features
    maps = features_fn(x)
    leaves, treedef = jax.tree_util.tree_flatten(maps)
    if not leaves or not all(hasattr(a, "ndim") and a.ndim >= 3 for a in leaves):
        raise ValueError(f"{func}: the features must be (batch, *axes, channels) arrays (or a "
                         f"pytree of them), got shapes "
                         f"{[tuple(np.shape(a)) for a in leaves]}")
    batch = leaves[0].shape[0]
    if any(a.shape[0] != batch for a in leaves):
        raise ValueError(f"{func}: every feature map must have the batch size {batch}, got "
                         f"shapes {[tuple(a.shape) for a in leaves]}")
    outputs = head_fn(maps)
    _check_outputs(outputs, batch, func)
    index, bad = _targets(target, outputs, getattr(classifier, "task", None), func)

    def score(maps):
        out = head_fn(maps)
        return jnp.sum(jnp.take_along_axis(out, index[:, None], axis=1))

    grads = jax.tree_util.tree_leaves(jax.grad(score)(maps))
    if resize:
        inputs = jax.tree_util.tree_leaves(x)
        if len(leaves) > 1 or not hasattr(x, "shape"):
            if jax.tree_util.tree_structure(x) != treedef:
                raise ValueError(f"{func}: resize=True needs an input array or an input pytree "
                                 f"of the feature maps' structure ({treedef}), got "
                                 f"{jax.tree_util.tree_structure(x)}; pass resize=False")
        else:
            inputs = [x]
    out = []
    for i, (a, g) in enumerate(zip(leaves, grads)):
        axes = tuple(range(1, a.ndim - 1))
        weights = jnp.mean(g, axis=axes, keepdims=True)
        cam = jnp.maximum(jnp.sum(weights * a, axis=-1), 0)
        cam = _finish(cam, inputs[i] if resize else None, resize=resize, normalize=normalize,
                      func=func)
        out.append(_nan_where(cam, bad))
    return jax.tree_util.tree_unflatten(treedef, out)
