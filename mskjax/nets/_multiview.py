"""Multi-view classification of MRI exams in the MRNet layout (Bien et al. 2018).

An exam is three stacks of 2D slices, one per plane (sagittal, coronal, axial; the order of
:data:`PLANES`), each ``(batch, slices, H, W, in_chans)``; slices and sizes may differ from plane
to plane. For each plane a 2D backbone (the contract of :class:`mskjax.nets.Classifier`) runs
on every slice (the slices of every example as one batch), its feature map is averaged over
the image axes (one vector per slice) and the vectors are max-pooled over the slices (one per
plane, each feature its largest value over the slices, whatever their number; a batch norm
in training mode takes its statistics over every slice of every example). The three plane
vectors are concatenated and one :class:`mskjax.nets.ClassifierHead` (dropout, one linear
layer, any task of :data:`mskjax.nets.TASKS`) gives the outputs. MRNet trained one AlexNet per
plane and combined the three predictions by logistic regression afterwards; here the planes
are one model, trained end to end (the backbones separate, or one shared by the planes with
``shared=True``).

Because the head is linear after the pooling, the class activation map of plane ``p`` on one
slice is ``feature_map @ head.weights()[rows of plane p]`` (``plane_slices`` gives the rows);
:meth:`MultiViewNet.features` returns the per-slice feature maps for Grad-CAM, and
:meth:`MultiViewNet.head_from_features` takes them to the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ._classifier import ClassifierHead, num_outputs
from ._segmentation import image_channels

#: The planes of an exam, in the order of the views.
PLANES = ("sagittal", "coronal", "axial")

_FUNC = "mskjax.nets.MultiViewNet"


def _check_backbone(backbone, what):
    if not isinstance(backbone, nnx.Module):
        raise TypeError(f"{_FUNC}: {what} must be an nnx.Module, got {type(backbone).__name__}")
    sizes = {name: getattr(backbone, name, None) for name in ("ndim", "in_chans",
                                                              "out_features")}
    if not all(isinstance(v, int) for v in sizes.values()):
        raise TypeError(f"{_FUNC}: {what} must have int attributes ndim, in_chans and "
                        f"out_features, got {sizes} from {type(backbone).__name__}")
    if sizes["ndim"] != 2:
        raise ValueError(f"{_FUNC}: {what} must be a 2D backbone (ndim=2; it runs on slices), "
                         f"got ndim={sizes['ndim']}")
    return backbone


class MultiViewNet(nnx.Module):
    """MRNet-style classifier of three stacks of slices (module docstring).

    Args:
        backbones: a factory ``backbones(rngs) -> backbone`` (called once if ``shared``, else
            three times), three backbones (one per plane, in the order of :data:`PLANES`), or
            one backbone with ``shared=True``. Each is 2D (``ndim == 2``) with the same
            ``in_chans``.
        task: one of :data:`mskjax.nets.TASKS` (keyword-only).
        num_classes: classes of a ``multiclass`` or ``ordinal`` task; ``None`` otherwise.
        drop_prob: dropout probability on the concatenated plane vectors, in ``[0, 1)``.
        rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``drop_prob > 0``).
        shared: one backbone for the three planes (a third of the weights) instead of three.

    Attributes: ``in_chans``, ``ndim`` (2: the backbones'), ``task``, ``num_classes``,
    ``num_outputs``, ``shared``, ``out_features`` (per plane, a tuple of three),
    ``backbones`` (an ``nnx.List`` of one or three), ``head``.

    ``MultiViewNet.planes`` is :data:`PLANES`.

    Call: ``views``, a tuple of three ``(batch, slices_p, H_p, W_p, in_chans)`` float arrays ->
    outputs ``(batch, num_outputs)``.
    """

    planes = PLANES

    def __init__(self, backbones, *, task: str, num_classes: int | None = None,
                 drop_prob: float = 0.0, rngs: nnx.Rngs, shared: bool = False):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{_FUNC}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        num_outputs(task, num_classes, _FUNC)  # a bad task or class count, named here
        if not isinstance(shared, bool):
            raise TypeError(f"{_FUNC}: shared must be True or False, got {shared!r}")
        if isinstance(backbones, nnx.Module):
            if not shared:
                raise ValueError(f"{_FUNC}: one backbone for three planes needs shared=True; "
                                 "pass a factory rngs -> backbone or three backbones for "
                                 "separate ones")
            built = [backbones]
        elif isinstance(backbones, Sequence) and not isinstance(backbones, str):
            if len(backbones) != len(PLANES):
                raise ValueError(f"{_FUNC}: backbones must be one per plane {PLANES}, got "
                                 f"{len(backbones)}")
            if shared:
                raise ValueError(f"{_FUNC}: shared=True takes one backbone or a factory, got a "
                                 f"sequence of {len(backbones)}")
            built = list(backbones)
        elif callable(backbones):
            built = [backbones(rngs) for _ in range(1 if shared else len(PLANES))]
        else:
            raise TypeError(f"{_FUNC}: backbones must be a factory rngs -> backbone, a backbone "
                            f"or three backbones, got {type(backbones).__name__}")
        for i, backbone in enumerate(built):
            what = "the backbone" if shared else f"the {PLANES[i]} backbone"
            _check_backbone(backbone, what)
        chans = {b.in_chans for b in built}
        if len(chans) != 1:
            raise ValueError(f"{_FUNC}: the backbones must take the same in_chans, got "
                             f"{[b.in_chans for b in built]}")
        self.shared, self.ndim, self.in_chans = shared, 2, chans.pop()
        self.backbones = nnx.List(built)
        self.out_features = tuple(self._backbone(p).out_features for p in range(len(PLANES)))
        self.head = ClassifierHead(sum(self.out_features), task=task, num_classes=num_classes,
                                   drop_prob=drop_prob, rngs=rngs)
        self.task, self.num_classes, self.num_outputs = (self.head.task, self.head.num_classes,
                                                         self.head.num_outputs)

    def _backbone(self, plane: int):
        return self.backbones[0 if self.shared else plane]

    def plane_slices(self) -> tuple[slice, ...]:
        """The rows of the head's kernel (``head.weights()``) belonging to each plane."""
        starts = [sum(self.out_features[:p]) for p in range(len(PLANES) + 1)]
        return tuple(slice(a, b) for a, b in zip(starts[:-1], starts[1:]))

    def _check_views(self, views):
        expected = (f"three arrays (batch, slices, H, W, {self.in_chans}), one per plane "
                    f"{PLANES}")
        if not isinstance(views, (tuple, list)) or len(views) != len(PLANES):
            got = (f"{len(views)} views" if isinstance(views, (tuple, list))
                   else type(views).__name__)
            raise ValueError(f"{_FUNC}: views must be {expected}, got {got}")
        shapes = [tuple(getattr(v, "shape", ())) for v in views]
        if any(len(s) != 5 or s[-1] != self.in_chans or s[1] < 1 for s in shapes):
            raise ValueError(f"{_FUNC}: views must be {expected}, got shapes {shapes}")
        if len({s[0] for s in shapes}) != 1:
            raise ValueError(f"{_FUNC}: the views must have the same batch size, got shapes "
                             f"{shapes}")

    def features(self, views) -> tuple[jax.Array, ...]:
        """The backbones' feature maps of every slice: a tuple of three ``(batch, slices_p,
        h_p, w_p, out_features_p)`` arrays (what Grad-CAM differentiates with respect to)."""
        self._check_views(views)
        maps = []
        for p, view in enumerate(views):
            batch, slices = view.shape[:2]
            out = self._backbone(p)(view.reshape(batch * slices, *view.shape[2:]))
            maps.append(out.reshape(batch, slices, *out.shape[1:]))
        return tuple(maps)

    def pooled(self, feature_maps) -> jax.Array:
        """``(batch, sum(out_features))``: each plane's feature maps averaged over the image
        axes, max-pooled over the slices, concatenated in the order of :data:`PLANES`."""
        return jnp.concatenate([jnp.max(jnp.mean(f, axis=(2, 3)), axis=1)
                                for f in feature_maps], axis=-1)

    def head_from_features(self, feature_maps) -> jax.Array:
        """The outputs ``(batch, num_outputs)`` from the per-slice feature maps of
        :meth:`features`."""
        return self.head(self.pooled(feature_maps)[:, None, :])

    def __call__(self, views) -> jax.Array:
        return self.head_from_features(self.features(views))

    def apply_sample(self, sample):
        """``sample.image``, a tuple of three ``(slices, H, W)`` (real, or complex as two
        channels) or ``(slices, H, W, in_chans)`` stacks, -> ``sample.label`` = outputs
        ``(num_outputs,)``; a pipeline stage with :func:`mskjax.nets.stage`."""
        views = sample.image
        if not isinstance(views, (tuple, list)) or len(views) != len(PLANES):
            got = (f"{len(views)} views" if isinstance(views, (tuple, list))
                   else f"{type(views).__name__} of shape {getattr(views, 'shape', None)}")
            raise ValueError(f"{_FUNC}: sample.image must be a tuple of three (slices, H, W) "
                             f"stacks, one per plane {PLANES}, got {got}")
        batch = tuple(image_channels(v, ndim=3, in_chans=self.in_chans, func=_FUNC)[None]
                      for v in views)
        return sample.replace(label=self(batch)[0])
