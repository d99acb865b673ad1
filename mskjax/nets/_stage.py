"""Nets as pipeline stages: ``stage(net)`` is an ``(init, apply)`` pair for
:func:`mskjax.pipeline.chain`.

The protocol a net implements to be a stage is one method::

    net.apply_sample(sample) -> sample

which reads the fields it needs from one example's :class:`mskjax.pipeline.Sample` (no batch
axis) and returns ``sample.replace(<field>=...)``. :class:`E2EVarNet` reads ``kspace`` and
``mask`` and writes ``image``; :class:`UNet` maps ``image`` to ``image``; :class:`SegNet`,
:class:`TriplanarCNN` and :class:`Segmenter` (which wraps a U-Net or any other dense net for
segmentation) map ``image`` to ``segmentation``. Any ``nnx.Module``
with such a method (the other reconstruction nets, a user's own) works with :func:`stage`.

The stage's params are the net's whole ``nnx.State`` (``nnx.split(net)[1]``): its weights
(``nnx.Param``) and any other variables, such as the random streams of dropout. To train
through a pipeline, differentiate with respect to the ``nnx.Param`` part (for instance
``params.filter(nnx.Param)``) and merge it back with the rest.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

_FUNC = "mskjax.nets.stage"


class NetStage(NamedTuple):
    """``init(key, sample) -> params`` and ``apply(params, sample, **extra) -> sample``: the
    fields of :class:`mskjax.pipeline.Stage`, which ``pipeline.chain`` accepts as it is
    (``pipeline.Stage(*s)`` converts it when a ``Stage`` instance is wanted)."""

    init: Callable[..., Any]
    apply: Callable[..., Any]


def _check_net(net, what):
    if not isinstance(net, nnx.Module):
        raise TypeError(f"{_FUNC}: {what} must be an nnx.Module, got {type(net).__name__}")
    if not callable(getattr(net, "apply_sample", None)):
        raise TypeError(f"{_FUNC}: {type(net).__name__} has no apply_sample(sample) -> sample "
                        "method, the protocol a net implements to be a pipeline stage")


def _reseed(model, key):
    tags = sorted({stream.key.tag for _, stream in nnx.iter_graph(model)
                   if isinstance(stream, nnx.RngStream)})
    if tags:
        nnx.reseed(model, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(tags)})


def stage(net: nnx.Module | Callable[[nnx.Rngs], nnx.Module]) -> NetStage:
    """A pipeline stage running ``net.apply_sample`` on each sample.

    Args:
        net: a net (an ``nnx.Module`` with ``apply_sample``; ``init`` then returns its current
            state and ignores the key), or a factory ``net(rngs) -> module`` (``init(key,
            sample)`` builds ``net(nnx.Rngs(key))`` and returns its state; e.g.
            ``lambda rngs: UNet(1, 1, chans=8, rngs=rngs)``).

    Returns:
        ``NetStage(init, apply)``. ``apply(params, sample, *, key=None, **extra)`` merges the
        params into the net and returns ``net.apply_sample(sample)``; a ``key`` (which
        ``pipeline.chain`` hands to each stage) reseeds the net's random streams first, so that
        dropout in training mode draws fresh masks per call. Training or evaluation mode
        (``net.train()`` / ``net.eval()``) is fixed when the stage is built. Everything is pure:
        ``jax.jit(pipeline.chain(..., stage(net)).apply)`` compiles one program.
    """
    cache = {}
    if isinstance(net, nnx.Module):
        _check_net(net, "net")
        cache["graphdef"], state = nnx.split(net)
        factory = None
    elif callable(net):
        factory, state = net, None
    else:
        raise TypeError(f"{_FUNC}: expected an nnx.Module or a factory rngs -> module, got "
                        f"{type(net).__name__}")

    def built(model):
        _check_net(model, "the factory's result")
        graphdef, built_state = nnx.split(model)
        if cache.setdefault("graphdef", graphdef) != graphdef:
            raise ValueError(f"{_FUNC}: the factory built a differently structured net this "
                             "time; a factory must build the same architecture every time")
        return built_state

    def graphdef():
        # A factory's structure, when apply comes before any init (params from a checkpoint).
        if "graphdef" not in cache:
            built(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))
        return cache["graphdef"]

    def init(key, sample):
        del sample
        if factory is None:
            return state
        return built(factory(nnx.Rngs(key)))

    def apply(params, sample, *, key=None, **extra):
        del extra
        try:
            # Fresh variables when reseeding: the params' own may belong to an outer trace
            # (params closed over by a vmapped function), where nnx forbids the mutation.
            model = nnx.merge(graphdef(), params, copy=key is not None)
        except Exception as err:  # noqa: BLE001 - any mismatch: say how to fix it
            raise ValueError(f"{_FUNC}: apply got params that do not fit the net "
                             f"({type(err).__name__}: {err}); use the params returned by the "
                             "same stage's init(key, sample)") from err
        if key is not None:
            _reseed(model, key)
        return model.apply_sample(sample)

    return NetStage(init, apply)


def image_through_net(net, sample, ndim, func):
    """``net`` on one example's real ``(*spatial)`` image of ``ndim`` axes (one channel), for
    ``apply_sample``: a batch axis and a channel axis added and removed."""
    image = sample.image
    if image is None:
        raise ValueError(f"{func}: the sample has no image; an earlier stage or the input "
                         "sample must set it")
    image = jnp.asarray(image)
    if net.in_chans != 1 or image.ndim != ndim or not jnp.issubdtype(image.dtype,
                                                                         jnp.floating):
        raise ValueError(f"{func}: apply_sample takes a real image of {ndim} axes for a net "
                         f"with in_chans=1, got shape {tuple(image.shape)} and dtype "
                         f"{image.dtype} (in_chans={net.in_chans})")
    return net(image[None, ..., None])[0, ..., 0]
