"""BART ``.cfl``/``.hdr`` pairs: complex64 arrays in Fortran order.

A BART array named ``name`` is two files: ``name.hdr``, a text header whose line
``# Dimensions`` is followed by the sizes of the dimensions, and ``name.cfl``, the raw
little-endian complex64 samples with the first dimension varying fastest (Fortran order).
:func:`read_cfl` returns the array with exactly the header's dimensions (BART usually writes
16, trailing ones included), read with ``order="F"``; ``squeeze=True`` drops the trailing
singleton dimensions only, so BART's dimension positions (``READ_DIM``, ``PHS1_DIM``, ...,
``COIL_DIM`` = 3, ``MAPS_DIM`` = 4) keep their meaning. The returned array is a Fortran-ordered
numpy array (no copy); ``np.ascontiguousarray`` makes it C-ordered.

:func:`write_cfl` writes both files to temporary names and renames them only once both are
complete. It writes complex64; real and complex64 inputs are converted exactly, while
complex128 and float64 must be converted by the caller (nothing is rounded silently).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ._atomic import atomic_paths

_READ = "mskjax.io.read_cfl"
_WRITE = "mskjax.io.write_cfl"
_SAMPLE = np.dtype("<c8")
#: Real dtypes that complex64 represents exactly.
_EXACT = tuple(np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16,
                                     np.float16, np.float32, np.complex64))


def _base(name) -> Path:
    path = Path(name)
    if path.suffix in (".cfl", ".hdr"):
        path = path.with_suffix("")
    return path


def _with(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def cfl_dims(name: str | os.PathLike, *, func: str = _READ) -> tuple[int, ...]:
    """The dimensions in the BART header ``name.hdr`` (``name`` with or without extension).

    Raises:
        FileNotFoundError: no ``.hdr`` file.
        ValueError: no ``# Dimensions`` line, or sizes that are not positive integers.
    """
    hdr = _with(_base(name), ".hdr")
    if not hdr.is_file():
        raise FileNotFoundError(f"{func}: {hdr}: no such header file (a BART array is a "
                                ".hdr/.cfl pair)")
    try:
        lines = hdr.read_text(encoding="ascii").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{func}: {hdr}: cannot read the header as text ({err})") from err
    for i, line in enumerate(lines):
        if line.strip() == "# Dimensions":
            if i + 1 >= len(lines) or not lines[i + 1].split():
                raise ValueError(f"{func}: {hdr}: the '# Dimensions' line is not followed by "
                                 "the dimensions")
            fields = lines[i + 1].split()
            try:
                dims = tuple(int(v) for v in fields)
            except ValueError:
                raise ValueError(f"{func}: {hdr}: dimensions must be positive integers, got "
                                 f"{lines[i + 1].strip()!r}") from None
            if min(dims) < 1:
                raise ValueError(f"{func}: {hdr}: dimensions must be positive integers, got "
                                 f"{dims}")
            return dims
    raise ValueError(f"{func}: {hdr}: not a BART header, it has no '# Dimensions' line")


def _checked_size(base: Path, dims: tuple[int, ...], func: str) -> Path:
    cfl = _with(base, ".cfl")
    if not cfl.is_file():
        raise FileNotFoundError(f"{func}: {cfl}: no such data file (a BART array is a "
                                ".hdr/.cfl pair)")
    want = math.prod(dims) * _SAMPLE.itemsize
    got = cfl.stat().st_size
    if got != want:
        what = "truncated" if got < want else "longer than its header says"
        raise ValueError(f"{func}: {cfl}: {what}: the header gives dimensions {dims}, "
                         f"{want} bytes of complex64, but the file has {got} bytes")
    return cfl


def _drop_trailing_ones(dims: tuple[int, ...]) -> tuple[int, ...]:
    end = len(dims)
    while end > 1 and dims[end - 1] == 1:
        end -= 1
    return dims[:end]


def read_cfl(name: str | os.PathLike, *, squeeze: bool = False) -> np.ndarray:
    """Read a BART array.

    Args:
        name: the array's name, with or without ``.cfl``/``.hdr``.
        squeeze: drop trailing singleton dimensions (``1 230 180 8 1 ... 1`` becomes
            ``(1, 230, 180, 8)``); leading and inner ones stay. Default: the header's dims.

    Returns:
        complex64 array of shape ``dims`` (Fortran-ordered in memory).

    Raises:
        FileNotFoundError: the ``.hdr`` or ``.cfl`` is missing.
        ValueError: a header without valid dimensions, or a ``.cfl`` whose size does not match
            them (truncated or too long).
    """
    base = _base(name)
    dims = cfl_dims(base, func=_READ)
    cfl = _checked_size(base, dims, _READ)
    try:
        data = np.fromfile(cfl, dtype=_SAMPLE)
    except OSError as err:
        raise ValueError(f"{_READ}: {cfl}: cannot read the file ({err})") from err
    if squeeze:
        dims = _drop_trailing_ones(dims)
    return data.astype(np.complex64, copy=False).reshape(dims, order="F")


def write_cfl(name: str | os.PathLike, array: ArrayLike) -> Path:
    """Write ``array`` as the BART pair ``name.hdr``/``name.cfl``, atomically.

    Args:
        name: the array's name, with or without ``.cfl``/``.hdr``; its folder must exist.
        array: any shape (a 0-d array is written with dimensions ``1``), numpy or JAX;
            complex64, or a real or integer dtype that complex64 holds exactly.

    Returns:
        The ``.cfl`` path.
    """
    base = _base(name)
    if isinstance(array, (list, tuple)) or not hasattr(array, "__array__"):
        raise TypeError(f"{_WRITE}: array must be an array, got {type(array).__name__}")
    array = np.asarray(array)
    if array.dtype not in _EXACT:
        hint = ("; convert explicitly, e.g. array.astype(np.complex64)"
                if array.dtype.kind in "fc" else "")
        raise TypeError(f"{_WRITE}: array must be complex64 or a dtype complex64 holds "
                        f"exactly ({', '.join(str(t) for t in _EXACT[:-1])}), got "
                        f"{array.dtype}{hint}")
    if array.size == 0:
        raise ValueError(f"{_WRITE}: array must not be empty (BART dimensions are >= 1), got "
                         f"shape {array.shape}")
    if not base.parent.is_dir():
        raise FileNotFoundError(f"{_WRITE}: {base}: the folder {base.parent} does not exist")
    dims = array.shape or (1,)
    header = "# Dimensions\n" + " ".join(str(d) for d in dims) + " \n"
    cfl, hdr = _with(base, ".cfl"), _with(base, ".hdr")
    with atomic_paths(cfl, hdr) as (tmp_cfl, tmp_hdr):
        array.astype(_SAMPLE).ravel(order="F").tofile(tmp_cfl)
        tmp_hdr.write_text(header, encoding="ascii")
    return cfl
