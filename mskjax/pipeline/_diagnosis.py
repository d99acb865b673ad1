"""From k-space to a diagnosis in one pure, jittable and end-to-end trainable program.

:func:`kspace_to_diagnosis` chains four named stages::

    undersample -> reconstruct -> segment -> classify

The reconstruction writes ``sample.image`` (complex for VarNet and MoDL, the real
root-sum-of-squares for E2E-VarNet); the segmentation net sees its magnitude (one channel) and
writes class logits ``(*spatial, classes)`` to ``sample.segmentation``; the classifier reads
its input channels (:func:`classifier_channels`), in the order of ``classifier_inputs``:
``"image"`` the magnitude of the reconstruction (a real image is taken as it is) and
``"segmentation"`` the softmax probabilities of the logits (one channel per class), and writes
its outputs ``(num_outputs,)`` (see :mod:`mskjax.nets._classifier`) to ``sample.label``.
``sample.image`` and ``sample.segmentation`` are left as the earlier stages wrote them. The
chain's params are a dict keyed by the stage names; a net's params are its ``nnx.State``.
:func:`diagnosis_stages` gives the stages themselves, to run part of the path.

One example at a time (``kspace`` ``(coils, *spatial)``); batch with ``jax.vmap`` over the
sample with the params shared (``in_axes=(None, 0)``). The chain is one pure function, so
``jax.jit(chain.apply)`` compiles the whole path into one XLA program.

:func:`diagnosis_loss` is a loss of the chain's params for :func:`mskjax.train.make_train_step`
(with ``functools.partial``): a weighted sum of a reconstruction term, a segmentation term and
a classification term, each optional. Stages stay fixed while others train either with
``frozen=`` in the loss (``jax.lax.stop_gradient``: their gradients are exactly zero, and
not computed) or with :func:`freeze_stages`, an optax ``multi_transform`` that zeroes their
updates.

Example (a batch is a :class:`Sample` with a leading batch axis: ``kspace``, ``maps``, the
references ``target`` (magnitude image), ``segmentation`` (int labels) and ``label``)::

    chain = pipeline.kspace_to_diagnosis(
        mask=mask,                                   # (cols,) bool, e.g. an 8x equispaced mask
        reconstruction=lambda rngs: nets.MoDL(num_iterations=2, features=8, rngs=rngs),
        segmentation=lambda rngs: nets.Segmenter(nets.UNet(1, 3, chans=4, rngs=rngs)),
        classifier=lambda rngs: nets.Classifier(backbone(4, rngs=rngs),   # 1 + 3 channels
                                                nets.ClassifierHead(16, task="binary",
                                                                    rngs=rngs)))
    params = chain.init(jax.random.key(0), first_example)
    outputs = jax.jit(jax.vmap(chain.apply, in_axes=(None, 0)))(params, batch).label
    loss_fn = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                                weights={"classification": 1.0, "reconstruction": 0.1},
                                frozen=("segment",))
    step = jax.jit(train.make_train_step(loss_fn, optax.adam(1e-3)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from .. import losses, nets
from ._stage import Stage, named_chain
from ._stages import identity, undersample

#: The stage names of :func:`kspace_to_diagnosis`, in order.
DIAGNOSIS_STAGES = ("undersample", "reconstruct", "segment", "classify")
#: What the classifier can see (``classifier_inputs``).
CLASSIFIER_INPUTS = ("image", "segmentation")
#: The terms of :func:`diagnosis_loss` (keys of ``weights``).
LOSS_TERMS = ("reconstruction", "segmentation", "classification")
#: Reconstruction terms of :func:`diagnosis_loss` (``image_loss``).
IMAGE_LOSSES = ("l1", "ssim")

_BUILD = "mskjax.pipeline.kspace_to_diagnosis"
_LOSS = "mskjax.pipeline.diagnosis_loss"


def _is_stage(obj) -> bool:
    return isinstance(obj, tuple) and len(obj) == 2 and all(map(callable, obj))


def _check_segmenter(net):
    output = getattr(net, "output", "logits")
    if output != "logits":
        raise ValueError(f"{_BUILD}: the segmentation net must write logits (the loss and the "
                         f"classifier's probabilities start from them), got output={output!r}; "
                         "build it as Segmenter(net, output='logits')")
    return net


def _as_stage(what: str, obj, *, check=None) -> Stage:
    """A Stage from a net (``apply_sample``), a factory ``rngs -> net`` or a Stage."""
    if isinstance(obj, nnx.Module):
        return Stage(*nets.stage(check(obj) if check else obj))
    if _is_stage(obj):
        return Stage(*obj)
    if callable(obj):
        return Stage(*nets.stage((lambda rngs: check(obj(rngs))) if check else obj))
    raise TypeError(f"{_BUILD}: {what} must be an nnx.Module with apply_sample, a factory "
                    f"rngs -> module, or a pipeline Stage, got {type(obj).__name__}")


def classifier_channels(sample, inputs: Sequence[str] = CLASSIFIER_INPUTS) -> jax.Array:
    """The classifier's input channels of one sample, ``(*spatial, channels)`` float32.

    Args:
        sample: a :class:`Sample` with ``image`` ``(*spatial)`` (complex or real) and, when
            ``"segmentation"`` is asked for, ``segmentation`` logits ``(*spatial, classes)``.
        inputs: ``"image"`` (one channel: ``|image|``, a real image as it is) and/or
            ``"segmentation"`` (``classes`` channels: ``softmax(logits)``), in this order.

    Returns:
        The channels concatenated on a new last axis, ``(*spatial, sum of channels)``.
    """
    func = "mskjax.pipeline.classifier_channels"
    channels = []
    spatial = None
    for name in inputs:
        value = getattr(sample, name)
        if value is None:
            raise ValueError(f"{func}: the sample has no {name}; an earlier stage must set it")
        value = jnp.asarray(value)
        if name == "image":
            image = jnp.abs(value) if jnp.iscomplexobj(value) else value
            if not jnp.issubdtype(image.dtype, jnp.floating):
                raise TypeError(f"{func}: sample.image must be complex or real floating point, "
                                f"got {value.dtype}")
            shape, channel = image.shape, image[..., None]
        else:
            if not jnp.issubdtype(value.dtype, jnp.floating) or value.ndim < 2:
                raise ValueError(f"{func}: sample.segmentation must be real logits (*spatial, "
                                 f"classes), got shape {value.shape} ({value.dtype}); the "
                                 "segmentation stage must write logits, not labels")
            shape, channel = value.shape[:-1], jax.nn.softmax(value, axis=-1)
        if spatial is not None and shape != spatial:
            raise ValueError(f"{func}: the inputs {tuple(inputs)} have different spatial "
                             f"shapes, {spatial} and {shape}")
        spatial = shape
        channels.append(channel.astype(jnp.float32))
    return jnp.concatenate(channels, axis=-1)


def _on_channels(inner: Stage, inputs: tuple[str, ...], field: str) -> Stage:
    """``inner`` (a stage reading ``sample.image``) run with ``image`` replaced by the
    channels of :func:`classifier_channels`; only its ``field`` is kept in the sample."""

    def channels_sample(sample):
        return sample.replace(image=classifier_channels(sample, inputs))

    def init(key, sample):
        return inner.init(key, channels_sample(sample))

    def apply(params, sample, **extra):
        out = inner.apply(params, channels_sample(sample), **extra)
        return sample.replace(**{field: getattr(out, field)})

    return Stage(init, apply)


def kspace_to_diagnosis(*, mask: Any = None, reconstruction: Any, segmentation: Any = None,
                        classifier: Any,
                        classifier_inputs: Sequence[str] = CLASSIFIER_INPUTS) -> Stage:
    """The chain ``undersample -> reconstruct -> segment -> classify`` (module docstring).

    ``named_chain(*diagnosis_stages(...))`` with the same arguments (see
    :func:`diagnosis_stages`, which gives the stages themselves, to run part of the path).

    Args:
        mask: the sampling mask of :func:`mskjax.pipeline.undersample` (an array broadcasting
            to the k-space, a function ``mask(key, kspace_shape)`` drawn per call, or None to
            apply the mask each sample carries).
        reconstruction: a net whose ``apply_sample`` writes ``sample.image`` (``nets.VarNet``,
            ``nets.MoDL``, ``nets.E2EVarNet``), a factory ``rngs -> net`` (the chain's
            ``init`` builds it from its key), or any Stage (``pipeline.zero_filled()``).
        segmentation: a net with one input channel (the reconstruction's magnitude) writing
            logits ``(*spatial, classes)`` to ``sample.segmentation`` (``nets.Segmenter(net)``
            with ``output="logits"``, ``nets.SegNet``), a factory, a Stage, or None for none
            (the ``segment`` stage then passes the sample on, with empty params).
        classifier: a ``nets.Classifier`` (or a net with the same ``apply_sample``: it reads
            ``sample.image`` and writes ``sample.label``) whose ``in_chans`` is the number of
            assembled channels (1 for ``"image"``, the classes for ``"segmentation"``), a
            factory, or a Stage.
        classifier_inputs: the channels the classifier sees, in order, a non-empty subset of
            ``("image", "segmentation")``.

    Returns:
        A :func:`mskjax.pipeline.named_chain` Stage with the params ``{"undersample": (),
        "reconstruct": ..., "segment": ..., "classify": ...}``.
    """
    return named_chain(*diagnosis_stages(
        mask=mask, reconstruction=reconstruction, segmentation=segmentation,
        classifier=classifier, classifier_inputs=classifier_inputs))


def diagnosis_stages(*, mask: Any = None, reconstruction: Any, segmentation: Any = None,
                     classifier: Any, classifier_inputs: Sequence[str] = CLASSIFIER_INPUTS,
                     ) -> tuple[tuple[str, Stage], ...]:
    """The ``(name, stage)`` pairs of :func:`kspace_to_diagnosis` (same arguments), in the
    order of :data:`DIAGNOSIS_STAGES`: ``named_chain(*pairs[:3])`` runs the path up to the
    classifier (``classifier_channels`` of its output are what the classifier sees).
    """
    inputs = (classifier_inputs,) if isinstance(classifier_inputs, str) else \
        tuple(classifier_inputs)
    if not inputs or any(name not in CLASSIFIER_INPUTS for name in inputs) \
            or len(set(inputs)) != len(inputs):
        raise ValueError(f"{_BUILD}: classifier_inputs must be distinct names from "
                         f"{CLASSIFIER_INPUTS}, got {classifier_inputs!r}")
    if "segmentation" in inputs and segmentation is None:
        raise ValueError(f"{_BUILD}: classifier_inputs asks for the segmentation but "
                         "segmentation is None; give a segmentation net or use "
                         "classifier_inputs=('image',)")
    if reconstruction is None or classifier is None:
        raise TypeError(f"{_BUILD}: reconstruction and classifier are required (use "
                        "pipeline.zero_filled() for no learned reconstruction)")
    segment = identity() if segmentation is None else _on_channels(
        _as_stage("segmentation", segmentation, check=_check_segmenter), ("image",),
        "segmentation")
    return (("undersample", undersample(mask)),
            ("reconstruct", _as_stage("reconstruction", reconstruction)),
            ("segment", segment),
            ("classify", _on_channels(_as_stage("classifier", classifier), inputs, "label")))


# --- training ----------------------------------------------------------------------------------


def _check_weights(weights):
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError(f"{_LOSS}: weights must be a non-empty dict with keys from {LOSS_TERMS}, "
                        f"got {weights!r}")
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"{_LOSS}: unknown loss terms {unknown}; the terms are {LOSS_TERMS}")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 \
                or w == float("inf"):
            raise ValueError(f"{_LOSS}: the weight of {name} must be a finite number >= 0, "
                             f"got {w!r}")
    return {name: float(w) for name, w in weights.items() if w > 0}


def _reference(batch, field, term):
    value = getattr(batch, field)
    if value is None:
        raise ValueError(f"{_LOSS}: the {term} term needs batch.{field} (the reference); the "
                         f"batch has none")
    return jnp.asarray(value)


def diagnosis_loss(params: Mapping[str, Any], batch, key: jax.Array, *, chain: Stage,
                   task: str, weights: Mapping[str, float], image_loss: str = "l1",
                   frozen: Sequence[str] = (), rest: Mapping[str, Any] | None = None,
                   ) -> tuple[jax.Array, dict]:
    """The weighted training loss of a :func:`kspace_to_diagnosis` chain over a batch.

    ``functools.partial(diagnosis_loss, chain=chain, task=..., weights=...)`` is a
    ``loss_fn(params, batch, key)`` for :func:`mskjax.train.make_train_step`.

    Args:
        params: the chain's params (the dict of its ``init``; or their trainable part, see
            ``rest``).
        batch: a :class:`Sample` with a leading batch axis: the inputs ``kspace``, ``maps``,
            ``mask``, ``extra`` as the stages need them, and the references the terms need:
            ``target`` real ``(batch, *spatial)`` (reconstruction), ``segmentation`` int
            ``(batch, *spatial)`` labels (segmentation), ``label`` ``(batch,)``
            (classification). The references and ``image`` are removed before the chain
            runs, so no stage sees them.
        key: a ``jax.random`` key, split over the examples (masks drawn per call, dropout).
        chain: the chain (keyword-only, like every option).
        task: the classifier's task, one of ``nets.TASKS``.
        weights: ``{"reconstruction": a, "segmentation": b, "classification": c}``, each
            optional, each ``>= 0``; a missing or zero term is not computed.
        image_loss: ``"l1"`` (:func:`mskjax.losses.l1_loss`) or ``"ssim"``
            (:func:`mskjax.losses.ssim_loss`, each example's peak the maximum of its target)
            between the reconstruction's magnitude and ``target``.
        frozen: names of stages whose params are held fixed (``jax.lax.stop_gradient``; their
            gradients are exactly zero; gradients still flow through them to earlier stages).
        rest: for nets with state other than ``nnx.Param`` (random streams of dropout, batch
            statistics): the non-trainable part, merged back into ``params`` per stage (both
            from :func:`split_trainable`). None when ``params`` is the whole of it.

    Returns:
        ``(loss, metrics)``: the weighted sum, and ``metrics`` with each computed term
        (``"<term>_loss"``, unweighted).

    The segmentation term is :func:`mskjax.losses.dice_ce_loss` of the segment stage's logits;
    the classification term is :func:`mskjax.losses.classification_loss`.
    """
    weights = _check_weights(weights)
    if not isinstance(chain, tuple) or len(chain) != 2:
        raise TypeError(f"{_LOSS}: chain must be the Stage of kspace_to_diagnosis, got "
                        f"{type(chain).__name__}")
    if image_loss not in IMAGE_LOSSES:
        raise ValueError(f"{_LOSS}: image_loss must be one of {IMAGE_LOSSES}, got "
                         f"{image_loss!r}")
    if task not in nets.TASKS:
        raise ValueError(f"{_LOSS}: task must be one of {nets.TASKS}, got {task!r}")
    frozen = (frozen,) if isinstance(frozen, str) else tuple(frozen)
    if not isinstance(params, Mapping):
        raise TypeError(f"{_LOSS}: params must be the dict of the chain's init, got "
                        f"{type(params).__name__}")
    unknown = sorted(set(frozen) - set(params))
    if unknown:
        raise ValueError(f"{_LOSS}: frozen names stages {unknown} that are not in the params; "
                         f"the stages are {sorted(params)}")
    params = {name: jax.lax.stop_gradient(p) if name in frozen else p
              for name, p in params.items()}
    if rest is not None:
        params = merge_trainable(params, rest)
    if getattr(batch, "kspace", None) is None:
        raise ValueError(f"{_LOSS}: batch must be a Sample with a leading batch axis and "
                         "kspace, got " + type(batch).__name__)
    size = jnp.shape(batch.kspace)[0]
    references = {term: _reference(batch, field, term) for term, field in
                  (("reconstruction", "target"), ("segmentation", "segmentation"),
                   ("classification", "label")) if term in weights}
    inputs = batch.replace(image=None, target=None, segmentation=None, label=None)
    keys = jax.random.split(key, size)
    out = jax.vmap(lambda s, k: chain.apply(params, s, key=k))(inputs, keys)

    terms = {}
    if "reconstruction" in weights:
        target = references["reconstruction"]
        image = jnp.abs(out.image) if jnp.iscomplexobj(out.image) else out.image
        if image_loss == "l1":
            terms["reconstruction"] = losses.l1_loss(target, image)
        else:
            peak = jnp.max(target.reshape(size, -1), axis=1)
            terms["reconstruction"] = losses.ssim_loss(target, image, data_range=peak)
    if "segmentation" in weights:
        labels = references["segmentation"]
        logits = out.segmentation
        if logits is None or logits.ndim != labels.ndim + 1:
            raise ValueError(f"{_LOSS}: the segmentation term needs logits (batch, *spatial, "
                             "classes) from the segment stage, got "
                             f"{None if logits is None else logits.shape}")
        terms["segmentation"] = losses.dice_ce_loss(labels, logits,
                                                    num_classes=logits.shape[-1])
    if "classification" in weights:
        labels = references["classification"]
        terms["classification"] = losses.classification_loss(labels, out.label, task=task)
    loss = sum(weights[name] * value for name, value in terms.items())
    return loss, {f"{name}_loss": value for name, value in terms.items()}


def split_trainable(params: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split a chain's params into ``nnx.Param`` variables and the rest, per stage.

    Returns ``(trainable, rest)``, dicts keyed as ``params``; a stage whose params are not an
    ``nnx.State`` (a stateless stage's ``()``) is trainable as it is and has ``rest`` None.
    """
    trainable, rest = {}, {}
    for name, p in params.items():
        if isinstance(p, nnx.State):
            trainable[name], rest[name] = nnx.split_state(p, nnx.Param, ...)
        else:
            trainable[name], rest[name] = p, None
    return trainable, rest


def merge_trainable(trainable: Mapping[str, Any], rest: Mapping[str, Any]) -> dict:
    """The inverse of :func:`split_trainable`."""
    if set(trainable) != set(rest):
        raise ValueError(f"mskjax.pipeline.merge_trainable: the two parts name different "
                         f"stages, {sorted(trainable)} and {sorted(rest)}")
    return {name: p if rest[name] is None else nnx.merge_state(p, rest[name])
            for name, p in trainable.items()}


def freeze_stages(optimizer: optax.GradientTransformation, *,
                  frozen: Sequence[str]) -> optax.GradientTransformation:
    """``optimizer`` for the stages not in ``frozen``, zero updates for those in it.

    An ``optax.multi_transform`` labelled by the params' top keys (the stage names); the
    frozen stages get ``optax.set_to_zero()`` and keep no optimiser state. Their gradients are
    still computed; ``diagnosis_loss(..., frozen=...)`` skips them instead.
    """
    func = "mskjax.pipeline.freeze_stages"
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{func}: optimizer must be an optax GradientTransformation, got "
                        f"{type(optimizer).__name__}")
    frozen = (frozen,) if isinstance(frozen, str) else tuple(frozen)

    def labels(params):
        if not isinstance(params, Mapping):
            raise TypeError(f"{func}: the params must be a dict keyed by stage name, got "
                            f"{type(params).__name__}")
        unknown = sorted(set(frozen) - set(params))
        if unknown:
            raise ValueError(f"{func}: frozen names stages {unknown} that are not in the "
                             f"params; the stages are {sorted(params)}")
        return {name: jax.tree_util.tree_map(
                    lambda _, name=name: "frozen" if name in frozen else "trained", p)
                for name, p in params.items()}

    return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()},
                                 labels)
