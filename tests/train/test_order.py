"""batch_indices: epochs of shuffled examples, a pure function of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest

from mskjax.train import batch_indices


def test_epochs_are_permutations_without_the_remainder():
    n, size = 10, 3  # 3 batches per epoch, one example left out of each epoch
    for epoch in range(4):
        batches = [batch_indices(5, 3 * epoch + i, num_examples=n, batch_size=size)
                   for i in range(3)]
        seen = np.concatenate(batches)
        assert all(b.shape == (size,) for b in batches)
        assert len(set(seen.tolist())) == 9 and set(seen.tolist()) <= set(range(n))
    firsts = {tuple(batch_indices(5, 3 * e, num_examples=n, batch_size=size)) for e in range(6)}
    assert len(firsts) > 1  # epochs are shuffled differently
    left_out = {(set(range(n)) - set(np.concatenate(
        [batch_indices(5, 3 * e + i, num_examples=n, batch_size=size) for i in range(3)]
    ).tolist())).pop() for e in range(12)}
    assert len(left_out) > 1  # not always the same example dropped


def test_pure_function_of_seed_and_step():
    a = [batch_indices(1, s, num_examples=50, batch_size=4).tolist() for s in range(40)]
    # Any order of calls (a resumed run starts in the middle) gives the same batches.
    b = [batch_indices(1, s, num_examples=50, batch_size=4).tolist() for s in reversed(range(40))]
    assert a == b[::-1]
    assert a != [batch_indices(2, s, num_examples=50, batch_size=4).tolist() for s in range(40)]
    # The result is a fresh array: changing it does not change later calls.
    out = batch_indices(1, 0, num_examples=50, batch_size=4)
    out[:] = -1
    assert batch_indices(1, 0, num_examples=50, batch_size=4).tolist() == a[0]
    # One batch of the whole set per step: every step is an epoch.
    assert sorted(batch_indices(3, 7, num_examples=6, batch_size=6).tolist()) == list(range(6))


def test_bad_input():
    with pytest.raises(ValueError, match="mskjax.train.batch_indices: batch_size must be at "
                                         "most num_examples \\(3\\), got 4"):
        batch_indices(0, 0, num_examples=3, batch_size=4)
    for kwargs, name in [({"seed": -1}, "seed"), ({"step": -2}, "step"),
                         ({"step": 1.0}, "step"), ({"num_examples": 0}, "num_examples"),
                         ({"batch_size": 0}, "batch_size")]:
        args = {"seed": 0, "step": 0, "num_examples": 5, "batch_size": 2, **kwargs}
        with pytest.raises(ValueError, match=f"batch_indices: {name} must be an integer"):
            batch_indices(args["seed"], args["step"], num_examples=args["num_examples"],
                          batch_size=args["batch_size"])
