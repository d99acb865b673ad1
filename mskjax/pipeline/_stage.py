"""Stages and their combinators, modelled on optax's gradient transformations.

A :class:`Stage` is a pair of pure functions::

    init(key, sample) -> params
    apply(params, sample, **extra) -> sample

``chain(*stages)`` is a Stage whose params are the tuple of its stages' params, and
``named_chain((name, stage), ...)`` one whose params are a dict keyed by name. Stateless stages
have params ``()``. A chain is one pure function, so ``jax.jit(pipeline.apply)`` compiles the
whole path (k-space to image to segmentation to diagnosis) into one XLA program.

Keyword arguments given to a chain's ``apply`` (``**extra``) reach every stage, so every
``apply`` accepts ``**extra`` and ignores what it does not use. A ``key`` among them is split:
stage ``i`` receives ``jax.random.fold_in(key, i)``, so stages draw independent randomness.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax


class Stage(NamedTuple):
    """A pipeline stage: ``init(key, sample) -> params``, ``apply(params, sample, **extra)``."""

    init: Callable[..., Any]
    apply: Callable[..., Any]


def stateless(fn: Callable[..., Any]) -> Stage:
    """A Stage without parameters from ``fn(sample, **extra) -> sample``."""
    if not callable(fn):
        raise TypeError(f"mskjax.pipeline.stateless: expected a callable, got {type(fn).__name__}")

    def init(key, sample):
        del key, sample
        return ()

    def apply(params, sample, **extra):
        if params != ():
            raise ValueError(
                "mskjax.pipeline: a stateless stage takes empty params (), got "
                f"{type(params).__name__}; use the params returned by its init"
            )
        return fn(sample, **extra)

    return Stage(init, apply)


def _check_stages(stages, func):
    for i, stage in enumerate(stages):
        if not (isinstance(stage, tuple) and len(stage) == 2 and all(map(callable, stage))):
            raise TypeError(
                f"{func}: stage {i} must be a Stage(init, apply) of two callables, got "
                f"{type(stage).__name__}"
            )


def _stage_extra(extra, index):
    if "key" in extra and extra["key"] is not None:
        return {**extra, "key": jax.random.fold_in(extra["key"], index)}
    return extra


def _run_init(stages, key, sample):
    params = []
    for i, stage in enumerate(stages):
        p = stage.init(jax.random.fold_in(key, i), sample)
        params.append(p)
        sample = stage.apply(p, sample)
    return params


def chain(*stages: Stage) -> Stage:
    """Chain stages into one; its params are the tuple of the stages' params.

    ``init`` runs each stage's ``init`` on the sample as it arrives at that stage (so the
    earlier stages' ``apply`` also run once).
    """
    _check_stages(stages, "mskjax.pipeline.chain")
    n = len(stages)

    def init(key, sample):
        return tuple(_run_init(stages, key, sample))

    def apply(params, sample, **extra):
        if not isinstance(params, tuple) or len(params) != n:
            got = f"a tuple of {len(params)}" if isinstance(params, tuple) else type(params).__name__
            raise ValueError(
                f"mskjax.pipeline.chain: apply expected params as a tuple of {n} (one per stage), "
                f"got {got}; build them with the same chain's init(key, sample)"
            )
        for i, (p, stage) in enumerate(zip(params, stages)):
            sample = stage.apply(p, sample, **_stage_extra(extra, i))
        return sample

    return Stage(init, apply)


def named_chain(*named_stages: tuple[str, Stage]) -> Stage:
    """Chain ``(name, stage)`` pairs into one stage whose params are a dict keyed by name."""
    func = "mskjax.pipeline.named_chain"
    for i, pair in enumerate(named_stages):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(f"{func}: argument {i} must be a (name, stage) pair, got {pair!r}")
    names = [name for name, _ in named_stages]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{func}: stage names must be unique, repeated: {duplicates}")
    stages = [stage for _, stage in named_stages]
    _check_stages(stages, func)

    def init(key, sample):
        return dict(zip(names, _run_init(stages, key, sample)))

    def apply(params, sample, **extra):
        if not isinstance(params, dict) or set(params) != set(names):
            have = set(params) if isinstance(params, dict) else set()
            raise ValueError(
                f"{func}: apply expected params as a dict with keys {names}, got "
                + (f"missing {sorted(set(names) - have)}, unexpected {sorted(have - set(names))}"
                   if isinstance(params, dict) else type(params).__name__)
                + "; build them with the same named_chain's init(key, sample)"
            )
        for i, (name, stage) in enumerate(named_stages):
            sample = stage.apply(params[name], sample, **_stage_extra(extra, i))
        return sample

    return Stage(init, apply)
