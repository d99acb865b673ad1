"""The fastMRI masks against the fastmri package itself, bit for bit."""

import itertools

import numpy as np
import pytest

import mskjax.sampling as sampling

subsample = pytest.importorskip("fastmri.data.subsample")

FAMILIES = {
    "random_mask": subsample.RandomMaskFunc,
    "equispaced_mask": subsample.EquiSpacedMaskFunc,
    "equispaced_fraction_mask": subsample.EquispacedMaskFractionFunc,
    "magic_mask": subsample.MagicMaskFunc,
    "magic_fraction_mask": subsample.MagicMaskFractionFunc,
}
OFFSET_FAMILIES = [name for name in FAMILIES if name != "random_mask"]

# Our complex k-space shapes; the last axis is the phase-encode axis.
SHAPES = [(15, 368), (4, 9, 372), (320,), (6, 257), (33,), (2, 640)]
CENTER_FRACTIONS = [0.08, 0.04, 0.1, 0.2]
ACCELERATIONS = [2, 3, 4, 8, 10]
SEEDS = [0, 1234, 2**32 - 1, tuple(map(ord, "file1000001.h5")), (7, 11)]


def fastmri_mask(name, shape, center_fraction, acceleration, seed, offset=None):
    """The fastmri mask for our shape, as a bool vector, and its num_low_frequencies."""
    mask_func = FAMILIES[name]([center_fraction], [acceleration])
    full_shape = (*shape, 2) if len(shape) >= 2 else (1, *shape, 2)
    mask, num_low = mask_func(full_shape, offset=offset, seed=seed)
    mask = mask.numpy()
    assert mask.shape == (1,) * (len(full_shape) - 2) + (shape[-1], 1)
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    return mask.reshape(-1).astype(bool), num_low


def ours(name, shape, center_fraction, acceleration, seed, **kwargs):
    return getattr(sampling, name)(shape, center_fraction=center_fraction,
                                   acceleration=acceleration, seed=seed, **kwargs)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_bit_for_bit_with_fastmri(name):
    compared = 0
    for shape, cf, acc, seed in itertools.product(SHAPES, CENTER_FRACTIONS, ACCELERATIONS,
                                                  SEEDS):
        try:
            want = fastmri_mask(name, shape, cf, acc, seed)
        except (ValueError, ZeroDivisionError):
            # Where fastMRI fails we raise a ValueError that names the function.
            with pytest.raises(ValueError, match=f"mskjax.sampling.{name}"):
                ours(name, shape, cf, acc, seed)
            continue
        mask, num_low = ours(name, shape, cf, acc, seed)
        assert mask.dtype == np.bool_ and mask.shape == (shape[-1],)
        assert type(num_low) is int
        assert num_low == want[1], (shape, cf, acc, seed)
        np.testing.assert_array_equal(mask, want[0], err_msg=str((shape, cf, acc, seed)))
        compared += 1
    assert compared >= 0.8 * len(SHAPES) * len(CENTER_FRACTIONS) * len(ACCELERATIONS) * len(SEEDS)


@pytest.mark.parametrize("name", ["random_mask", "equispaced_fraction_mask",
                                  "magic_fraction_mask"])
def test_real_accelerations_match_fastmri(name):
    for acc, seed in itertools.product([1, 1.0, 2.5, 3.7, 6.25], [0, (1, 2, 3)]):
        want = fastmri_mask(name, (12, 368), 0.08, acc, seed)
        mask, num_low = ours(name, (12, 368), 0.08, acc, seed)
        assert num_low == want[1]
        np.testing.assert_array_equal(mask, want[0])


@pytest.mark.parametrize("name", ["equispaced_mask", "magic_mask"])
def test_acceleration_one_matches_fastmri(name):
    for n in [33, 368]:
        want = fastmri_mask(name, (n,), 0.08, 1, 5)
        np.testing.assert_array_equal(ours(name, (n,), 0.08, 1, 5)[0], want[0])


@pytest.mark.parametrize("name", OFFSET_FAMILIES)
def test_offset_is_honoured_and_matches_fastmri(name):
    acc = 4
    spacing = {"equispaced_fraction_mask": 5, "magic_fraction_mask": 6}.get(name, acc)
    masks = []
    for offset in range(spacing):
        want = fastmri_mask(name, (20, 368), 0.08, acc, 3, offset=offset)
        mask, _ = ours(name, (20, 368), 0.08, acc, 3, offset=offset)
        np.testing.assert_array_equal(mask, want[0])
        masks.append(mask)
    # Different offsets give different masks (except that fastMRI's magic mask maps offsets
    # o and spacing - 1 - o to the same mask for an even spacing), and a fixed offset ignores
    # the seed.
    distinct = spacing // 2 if name == "magic_mask" else spacing
    assert len({m.tobytes() for m in masks}) == distinct
    np.testing.assert_array_equal(ours(name, (20, 368), 0.08, acc, 99, offset=1)[0], masks[1])


def test_equispaced_offset_places_the_lines():
    mask, num_low = sampling.equispaced_mask((368,), center_fraction=0.04, acceleration=4,
                                             offset=3)
    lines = np.zeros(368, bool)
    lines[3::4] = True
    centre = np.zeros(368, bool)
    pad = (368 - num_low + 1) // 2
    centre[pad:pad + num_low] = True
    np.testing.assert_array_equal(mask, lines | centre)


def test_centre_lines_and_counts():
    mask, num_low = sampling.random_mask((640, 368), center_fraction=0.08, acceleration=4, seed=1)
    assert num_low == round(368 * 0.08) == 29
    pad = (368 - 29 + 1) // 2
    assert mask[pad:pad + 29].all()
    assert abs(mask.sum() - 368 / 4) < 25
    mask, num_low = sampling.magic_fraction_mask((368,), center_fraction=0.08, acceleration=4,
                                                 seed=1)
    assert mask.sum() <= round(368 / 4) + 2


@pytest.mark.parametrize("name", list(FAMILIES))
def test_determinism_and_fresh_draws(name):
    a = ours(name, (368,), 0.08, 4, (1, 2))
    b = ours(name, (368,), 0.08, 4, [1, 2])
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    state = np.random.get_state()[1].copy()
    masks = {ours(name, (368,), 0.08, 4, None)[0].tobytes() for _ in range(12)}
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert len(masks) > 1
    seeds = {ours(name, (368,), 0.08, 4, s)[0].tobytes() for s in range(12)}
    assert len(seeds) > 1


BAD = [
    (dict(shape=()), ValueError, "shape must have at least one axis"),
    (dict(shape=(4, 0)), ValueError, "shape must have positive sizes"),
    (dict(shape=(4, -3)), ValueError, "shape must have positive sizes"),
    (dict(shape=368), TypeError, "shape must be a tuple of ints"),
    (dict(shape=(4, 36.0)), TypeError, "shape must be a tuple of ints"),
    (dict(center_fraction=1.5), ValueError, r"center_fraction must be in \(0, 1\), got 1.5"),
    (dict(center_fraction=0), ValueError, r"center_fraction must be in \(0, 1\)"),
    (dict(center_fraction=float("nan")), ValueError, "center_fraction must be a finite"),
    (dict(acceleration=0.5), ValueError, "acceleration must be"),
    (dict(acceleration=float("inf")), ValueError, "acceleration must be"),
    (dict(acceleration=True), ValueError, "acceleration must be"),
    (dict(seed=-1), ValueError, "seed must be"),
    (dict(seed=2**32), ValueError, "seed must be"),
    (dict(seed=()), ValueError, "seed must be"),
    (dict(seed=(1, -2)), ValueError, "seed must be"),
    (dict(seed="file.h5"), ValueError, "seed must be"),
]


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("bad,error,message", BAD)
def test_bad_inputs(name, bad, error, message):
    kwargs = dict(shape=(368,), center_fraction=0.08, acceleration=4, seed=0) | bad
    shape = kwargs.pop("shape")
    with pytest.raises(error, match=f"mskjax.sampling.{name}: {message}"):
        getattr(sampling, name)(shape, **kwargs)


@pytest.mark.parametrize("name", ["equispaced_mask", "magic_mask"])
def test_integer_families_reject_real_accelerations(name):
    for acc in [2.5, 4.0]:
        with pytest.raises(ValueError, match=f"mskjax.sampling.{name}: acceleration must be an "
                                             "integer >= 1"):
            ours(name, (368,), 0.08, acc, 0)
        with pytest.raises(TypeError):  # fastMRI slices with it and fails
            fastmri_mask(name, (368,), 0.08, acc, 0)


@pytest.mark.parametrize("name,spacing", [("equispaced_mask", 4), ("magic_mask", 4),
                                          ("equispaced_fraction_mask", 5),
                                          ("magic_fraction_mask", 6)])
def test_bad_offsets(name, spacing):
    for offset in [-1, spacing, 2.0, True]:
        with pytest.raises(ValueError, match=rf"mskjax.sampling.{name}: offset must be None or "
                                             rf"an int in \[0, {spacing}\)"):
            ours(name, (368,), 0.08, 4, 0, offset=offset)


def test_where_the_centre_fills_the_budget():
    with pytest.raises(ValueError, match="random_mask: center_fraction 0.6 keeps all 1"):
        sampling.random_mask((1,), center_fraction=0.6, acceleration=2, seed=0)
    with pytest.raises(ValueError, match="equispaced_fraction_mask: the 80 centre lines"):
        sampling.equispaced_fraction_mask((320,), center_fraction=0.25, acceleration=4, seed=0)
    with pytest.raises(ValueError, match="magic_fraction_mask: the 3 centre lines already fill"):
        sampling.magic_fraction_mask((33,), center_fraction=0.08, acceleration=10, seed=0)
    # random_mask keeps working (only the centre) when the centre exceeds cols / acceleration.
    mask, num_low = sampling.random_mask((320,), center_fraction=0.3, acceleration=4, seed=0)
    assert mask.sum() == num_low == 96
