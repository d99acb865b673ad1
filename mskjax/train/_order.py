"""The data order as a pure function of (seed, step), so that a run can be resumed anywhere."""

from __future__ import annotations

import functools
import numbers

import numpy as np


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False
    return order


def _check_int(value, name, func, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def batch_indices(seed: int, step: int, *, num_examples: int, batch_size: int) -> np.ndarray:
    """The example indices of training step ``step``: epochs of shuffled examples.

    Epoch ``e`` is a permutation of ``range(num_examples)`` drawn by numpy from ``(seed, e)``
    (on the host, where data loaders index their files); it is cut into
    ``num_examples // batch_size`` batches, and the last ``num_examples % batch_size``
    examples of that permutation are left out of the epoch (a different few in each epoch).
    Step ``s`` takes batch ``s % batches_per_epoch`` of epoch ``s // batches_per_epoch``. No
    state is kept, so a run resumed at step ``s`` sees the batches an uninterrupted run saw.

    Args:
        seed: non-negative int.
        step: the step, ``>= 0`` (``int(state.step)`` before the step).
        num_examples: size of the training set (keyword-only).
        batch_size: examples per step, ``1 <= batch_size <= num_examples`` (keyword-only).

    Returns:
        ``(batch_size,)`` int64 array of distinct indices.
    """
    func = "mskjax.train.batch_indices"
    seed = _check_int(seed, "seed", func, 0)
    step = _check_int(step, "step", func, 0)
    num_examples = _check_int(num_examples, "num_examples", func, 1)
    batch_size = _check_int(batch_size, "batch_size", func, 1)
    if batch_size > num_examples:
        raise ValueError(f"{func}: batch_size must be at most num_examples ({num_examples}), "
                         f"got {batch_size}")
    epoch, position = divmod(step, num_examples // batch_size)
    order = _permutation(seed, epoch, num_examples)
    return order[position * batch_size:(position + 1) * batch_size].copy()
