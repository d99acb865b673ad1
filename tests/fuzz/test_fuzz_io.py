"""Fuzzing the array files: round trips, and a clean error naming the file for anything else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import io

SHAPES = st.sampled_from([(1,), (4,), (2, 3), (2, 3, 4), (1, 1, 5)])
DTYPES = st.sampled_from([np.complex64, np.float32, np.float64, np.int16])


@given(shape=SHAPES, dtype=DTYPES, special=st.sampled_from([None, np.nan, np.inf, 0.0, 1e30]))
def test_cfl_round_trip_keeps_every_value(tmp_path_factory, shape, dtype, special):
    x = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 2).astype(dtype)
    if special is not None and np.issubdtype(dtype, np.inexact):
        x.flat[0] = special
    path = tmp_path_factory.mktemp("cfl") / "a"
    try:
        io.write_cfl(path, x)
    except (ValueError, TypeError) as err:
        assert str(err).startswith("mskjax.io.write_cfl:")
        return
    back = io.read_cfl(path)
    assert back.shape == shape
    np.testing.assert_array_equal(back, x.astype(np.complex64))


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89HDF\r\n\x1a\n" + b"\0" * 8], ids=repr)
def test_read_fastmri_of_a_non_fastmri_file_names_the_file(tmp_path, content):
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    with pytest.raises((ValueError, OSError)) as info:
        io.read_fastmri(path)
    assert str(info.value).startswith("mskjax.io.read_fastmri:") and str(path) in str(info.value)


@pytest.mark.parametrize("hdr", ["", "# Dimensions\n", "# Dimensions\nx y\n", "# Dimensions\n4 -1\n",
                                 "# Dimensions\n100 100\n"], ids=repr)
def test_read_cfl_of_a_bad_pair_names_the_file(tmp_path, hdr):
    (tmp_path / "a.hdr").write_text(hdr)
    (tmp_path / "a.cfl").write_bytes(np.zeros(4, np.complex64).tobytes())
    with pytest.raises((ValueError, OSError)) as info:
        io.read_cfl(tmp_path / "a")
    assert str(info.value).startswith("mskjax.io.read_cfl:")


@pytest.mark.parametrize("bad", ["abc", None, {"a": 1}, np.array(["a"]), np.ones(3, object)],
                         ids=repr)
def test_write_cfl_wrong_types_give_a_clean_error(tmp_path, bad):
    with pytest.raises((ValueError, TypeError), match="^mskjax.io.write_cfl:"):
        io.write_cfl(tmp_path / "a", bad)
    assert not list(tmp_path.iterdir()), "write_cfl left a file behind after refusing"
