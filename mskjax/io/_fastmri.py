"""fastMRI HDF5 files, read lazily and written exactly as the fastMRI data set lays them out.

One file holds one volume (the layout ``fastmri.data.mri_data.SliceDataset`` reads):

- ``kspace``: complex64 ``(slices, coils, rows, cols)`` (multi-coil) or ``(slices, rows, cols)``
  (single-coil). ``rows`` is the readout direction, ``cols`` the phase-encode direction, and the
  k-space is centred (DC at index ``n // 2``, as for the centred FFTs of :mod:`mskjax.fourier`).
- ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil): float32
  ``(slices, rows, cols)`` targets, ``(slices, 320, 320)`` in the published data; absent from
  the test and challenge sets. (Single-coil files may carry a ``reconstruction_rss`` as well.)
- ``ismrmrd_header``: the ISMRMRD XML header (namespace ``http://www.ismrm.org/ISMRMRD``) as
  bytes; its encoded and reconstructed matrix sizes, fields of view (mm) and the
  ``kspace_encoding_step_1`` limits are parsed into a :class:`FastMRIHeader`.
- ``mask`` (test set only): the sampled columns, a ``(cols,)`` vector (read back as bool).
- ``trajectory`` (non-Cartesian files only): float32 ``(*trajectory, ndim)``, shared by the
  slices, or ``(slices, *trajectory, ndim)``, one per slice: the k-space coordinates in cycles
  per field of view (the convention of :class:`mskjax.linop.NUFFT`: ``coords[..., a]`` along
  the ``a``-th image axis, ``-n/2 <= k <= n/2`` on an axis of ``n`` points), with the
  attributes ``units`` (``'cycles per field of view'``) and ``matrix_size`` (the image grid,
  ``ndim`` integers, also the header's encoded matrix ``(x, y, z)`` padded with 1). ``kspace``
  is then complex64 ``(slices, coils, *trajectory)`` (always with a coil axis) and a
  reconstruction ``(slices, *image)`` has ``ndim`` image axes. Such a file has no ``mask``.
- ``density`` (optional, with a trajectory): float32, the trajectory's shape without the
  coordinate axis: the density compensation of the samples in mskjax's scale (``NUFFT.H(d *
  NUFFT(x)) ~= x`` for a smooth image, 1 on a fully sampled Cartesian grid).
- File attributes: ``max`` and ``norm`` (the maximum and the L2 norm of the reconstruction
  volume), ``acquisition`` (e.g. ``'CORPD_FBK'``), ``patient_id``; test-set files add
  ``acceleration`` and ``num_low_frequency``.

:func:`read_fastmri` checks the layout when called and reads k-space and targets lazily:
indexing ``file.kspace[i]`` or ``file.kspace[a:b]`` reads those slices and nothing else. Used
as a context manager the file stays open; otherwise each access opens and closes it, so a
:class:`FastMRIFile` can be handed to data-loader workers. :func:`write_fastmri` writes to a
temporary name beside the target and renames it, so a failed write leaves nothing behind.
Errors name the function, the file, the key and the problem. Nothing is cast silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

try:
    import h5py
except ImportError as err:  # an optional dependency: pip install 'mskjax[io]'
    raise ImportError("mskjax.io needs h5py: pip install 'mskjax[io]'", name="h5py") from err
import numpy as np
from numpy.typing import ArrayLike

from ..linop import check_coords
from ._atomic import atomic_paths

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_NS = {"i": ISMRMRD_NAMESPACE}
_READ = "mskjax.io.read_fastmri"
_WRITE = "mskjax.io.write_fastmri"
_XML = "mskjax.io.ismrmrd_header_xml"
_PARSE = "mskjax.io.parse_ismrmrd_header"
_KSPACE_LAYOUT = "complex64 (slices, coils, rows, cols) or (slices, rows, cols)"
_NONCARTESIAN_LAYOUT = "complex64 (slices, coils, *trajectory) with a trajectory"
_UNITS = "cycles per field of view"
_TRAJECTORIES = ("cartesian", "epi", "radial", "goldenangle", "spiral", "other")
#: Proton resonance frequency at 3 T, the default of a header built from scratch.
_LARMOR_3T_HZ = 127_740_000


def _recon_keys(multicoil: bool) -> tuple[str, ...]:
    return ("reconstruction_rss",) if multicoil else ("reconstruction_esc", "reconstruction_rss")


# --------------------------------------------------------------------------- the header


@dataclasses.dataclass(frozen=True)
class FastMRIHeader:
    """The fields of an ISMRMRD header that fastMRI uses.

    Attributes:
        encoded_matrix: ``(x, y, z)`` encoded matrix size; for fastMRI ``x`` is the readout
            (k-space ``rows``), ``y`` the phase encodes (``cols``).
        recon_matrix: ``(x, y, z)`` reconstructed matrix size (``(320, 320, 1)`` for the knees).
        encoded_fov_mm: ``(x, y, z)`` encoded field of view in mm.
        recon_fov_mm: ``(x, y, z)`` reconstructed field of view in mm.
        enc_limits_center: ``center`` of ``encodingLimits/kspace_encoding_step_1``, or None.
        enc_limits_max: ``maximum + 1`` of the same limits (an exclusive end, as fastMRI's
            ``enc_limits_max``), or None.
    """

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    enc_limits_center: int | None = None
    enc_limits_max: int | None = None

    @property
    def padding_left(self) -> int | None:
        """First sampled phase-encode column, ``encoded_matrix[1] // 2 - enc_limits_center``."""
        if self.enc_limits_center is None:
            return None
        return self.encoded_matrix[1] // 2 - self.enc_limits_center

    @property
    def padding_right(self) -> int | None:
        """End of the sampled columns, ``padding_left + enc_limits_max`` (fastMRI's formula)."""
        if self.enc_limits_max is None or self.padding_left is None:
            return None
        return self.padding_left + self.enc_limits_max

    def to_xml(self, **kwargs) -> str:
        """This header as ISMRMRD XML (:func:`ismrmrd_header_xml`; keywords pass through)."""
        return ismrmrd_header_xml(
            encoded_matrix=self.encoded_matrix, recon_matrix=self.recon_matrix,
            encoded_fov_mm=self.encoded_fov_mm, recon_fov_mm=self.recon_fov_mm,
            enc_limits_center=self.enc_limits_center, enc_limits_max=self.enc_limits_max,
            **kwargs)


def _header_text(raw, where: str):
    """The XML held by an ``ismrmrd_header`` dataset, as bytes or str."""
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind in "SUO" and raw.size == 1:
            raw = raw.reshape(()).item()
        elif raw.dtype in (np.uint8, np.int8) and raw.ndim == 1:
            raw = raw.astype(np.uint8).tobytes()
    if isinstance(raw, np.bytes_):
        raw = bytes(raw)
    if not isinstance(raw, (bytes, str)):
        got = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"{where} must hold the ISMRMRD XML as a string, got {got}")
    return raw


def _parse(xml, where: str) -> FastMRIHeader:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise ValueError(f"{where} is not well-formed XML ({err})") from None
    encoding = root.find("i:encoding", _NS)
    if encoding is None:
        encoding = root.find(".//i:encoding", _NS)
    if encoding is None:
        raise ValueError(f"{where} has no <encoding> element in the ISMRMRD namespace "
                         f"{ISMRMRD_NAMESPACE} (root element <{root.tag}>)")

    def value(path: str, kind):
        node = encoding.find("/".join(f"i:{p}" for p in path.split("/")), _NS)
        if node is None or node.text is None or not node.text.strip():
            raise ValueError(f"{where} has no <encoding/{path}> value")
        text = node.text.strip()
        try:
            number = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"{where}: <encoding/{path}> must be {what}, got {text!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{where}: <encoding/{path}> must be finite and >= 0, got {text!r}")
        return number

    def triple(path: str, kind):
        return tuple(value(f"{path}/{axis}", kind) for axis in "xyz")

    encoded = triple("encodedSpace/matrixSize", int)
    recon = triple("reconSpace/matrixSize", int)
    for name, size in (("encodedSpace", encoded), ("reconSpace", recon)):
        if min(size) < 1:
            raise ValueError(f"{where}: <encoding/{name}/matrixSize> must be positive, got "
                             f"{size}")
    center = maximum = None
    if encoding.find("i:encodingLimits/i:kspace_encoding_step_1", _NS) is not None:
        center = value("encodingLimits/kspace_encoding_step_1/center", int)
        maximum = value("encodingLimits/kspace_encoding_step_1/maximum", int) + 1
    return FastMRIHeader(
        encoded_matrix=encoded, recon_matrix=recon,
        encoded_fov_mm=triple("encodedSpace/fieldOfView_mm", float),
        recon_fov_mm=triple("reconSpace/fieldOfView_mm", float),
        enc_limits_center=center, enc_limits_max=maximum)


def parse_ismrmrd_header(xml: str | bytes) -> FastMRIHeader:
    """Parse the fields fastMRI uses from an ISMRMRD XML header.

    The paths are those of ``fastmri.data.mri_data``: ``encoding/encodedSpace/matrixSize``,
    ``encoding/reconSpace/matrixSize``, the ``fieldOfView_mm`` of both, and
    ``encoding/encodingLimits/kspace_encoding_step_1`` (optional) in the ISMRMRD namespace.

    Raises:
        ValueError: the XML is malformed or a required element is missing or not a number.
    """
    return _parse(_header_text(xml, f"{_PARSE}: xml"), f"{_PARSE}: xml")


def _triple(values, name: str, kind, func: str):
    try:
        out = tuple(values)
    except TypeError:
        out = ()
    ok = len(out) == 3 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        and (v >= 1 if kind is int else v > 0) and (kind is float or float(v).is_integer())
        for v in out)
    if not ok:
        what = "positive integers" if kind is int else "positive finite numbers"
        raise ValueError(f"{func}: {name} must be three {what} (x, y, z), got {values!r}")
    return tuple(kind(v) for v in out)


def ismrmrd_header_xml(*, encoded_matrix: Sequence[int], recon_matrix: Sequence[int],
                       encoded_fov_mm: Sequence[float], recon_fov_mm: Sequence[float],
                       enc_limits_center: int | None = None, enc_limits_max: int | None = None,
                       num_coils: int | None = None,
                       h1_resonance_frequency_hz: int = _LARMOR_3T_HZ,
                       trajectory: str = "cartesian") -> str:
    """A minimal valid ISMRMRD XML header with the fields fastMRI reads.

    Args:
        encoded_matrix: ``(x, y, z)`` encoded matrix size; for fastMRI k-space
            ``(..., rows, cols)`` this is ``(rows, cols, 1)``.
        recon_matrix: ``(x, y, z)`` reconstructed matrix size.
        encoded_fov_mm: ``(x, y, z)`` encoded field of view in mm.
        recon_fov_mm: ``(x, y, z)`` reconstructed field of view in mm.
        enc_limits_center: ``center`` of ``kspace_encoding_step_1``; default
            ``encoded_matrix[1] // 2`` (a fully sampled, centred acquisition).
        enc_limits_max: the exclusive end of the phase encodes (written as ``maximum =
            enc_limits_max - 1``); default ``encoded_matrix[1]``. Give both limits or neither.
        num_coils: written as ``acquisitionSystemInformation/receiverChannels`` when given.
        h1_resonance_frequency_hz: ``experimentalConditions/H1resonanceFrequency_Hz`` (required
            by the ISMRMRD schema); default 127.74 MHz, protons at 3 T.
        trajectory: one of the ISMRMRD trajectories, default ``"cartesian"``.

    Returns:
        The XML document as a str (UTF-8 declaration included).
    """
    encoded = _triple(encoded_matrix, "encoded_matrix", int, _XML)
    recon = _triple(recon_matrix, "recon_matrix", int, _XML)
    encoded_fov = _triple(encoded_fov_mm, "encoded_fov_mm", float, _XML)
    recon_fov = _triple(recon_fov_mm, "recon_fov_mm", float, _XML)
    if (enc_limits_center is None) != (enc_limits_max is None):
        raise ValueError(f"{_XML}: give both enc_limits_center and enc_limits_max or neither, "
                         f"got {enc_limits_center!r} and {enc_limits_max!r}")
    if enc_limits_center is None:
        enc_limits_center, enc_limits_max = encoded[1] // 2, encoded[1]
    for name, v, low in (("enc_limits_center", enc_limits_center, 0),
                         ("enc_limits_max", enc_limits_max, 1),
                         ("h1_resonance_frequency_hz", h1_resonance_frequency_hz, 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
            raise ValueError(f"{_XML}: {name} must be an integer >= {low}, got {v!r}")
    if num_coils is not None and (isinstance(num_coils, bool)
                                  or not isinstance(num_coils, numbers.Integral)
                                  or num_coils < 1):
        raise ValueError(f"{_XML}: num_coils must be None or an integer >= 1, got {num_coils!r}")
    if trajectory not in _TRAJECTORIES:
        raise ValueError(f"{_XML}: trajectory must be one of {_TRAJECTORIES}, got "
                         f"{trajectory!r}")

    def space(name, matrix, fov):
        size = "".join(f"<{a}>{v}</{a}>" for a, v in zip("xyz", matrix))
        mm = "".join(f"<{a}>{v!r}</{a}>" for a, v in zip("xyz", fov))
        return (f"    <{name}>\n      <matrixSize>{size}</matrixSize>\n"
                f"      <fieldOfView_mm>{mm}</fieldOfView_mm>\n    </{name}>\n")

    system = ("" if num_coils is None else
              "  <acquisitionSystemInformation>\n"
              f"    <receiverChannels>{int(num_coils)}</receiverChannels>\n"
              "  </acquisitionSystemInformation>\n")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NAMESPACE}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{ISMRMRD_NAMESPACE} ismrmrd.xsd">\n'
        f"{system}"
        "  <experimentalConditions>\n"
        f"    <H1resonanceFrequency_Hz>{int(h1_resonance_frequency_hz)}</H1resonanceFrequency_Hz>\n"
        "  </experimentalConditions>\n"
        "  <encoding>\n"
        f"{space('encodedSpace', encoded, encoded_fov)}"
        f"{space('reconSpace', recon, recon_fov)}"
        "    <encodingLimits>\n      <kspace_encoding_step_1>"
        f"<minimum>0</minimum><maximum>{int(enc_limits_max) - 1}</maximum>"
        f"<center>{int(enc_limits_center)}</center></kspace_encoding_step_1>\n"
        "    </encodingLimits>\n"
        f"    <trajectory>{trajectory}</trajectory>\n"
        "  </encoding>\n"
        "</ismrmrdHeader>\n")


# --------------------------------------------------------------------------- trajectories


def _trajectory_form(kspace_shape, trajectory_shape, where: str) -> tuple[bool, int]:
    """``(per_slice, ndim)`` of a trajectory that fits k-space ``(slices, coils, *points)``."""
    slices, points = kspace_shape[0], tuple(kspace_shape[2:])
    ndim = trajectory_shape[-1] if len(trajectory_shape) else 0
    if 1 <= ndim <= 3:
        if tuple(trajectory_shape[:-1]) == points:
            return False, int(ndim)
        if tuple(trajectory_shape[:-1]) == (slices, *points):
            return True, int(ndim)
    raise ValueError(
        f"{where} must be float32 (*trajectory, ndim), ndim 1 to 3, with trajectory = "
        f"kspace.shape[2:] = {points} (shared by the slices), or ({slices}, *trajectory, ndim) "
        f"(one per slice), got shape {tuple(trajectory_shape)}")


def _matrix_size(value, ndim: int, where: str) -> tuple[int, ...]:
    values = np.asarray(value) if value is not None else np.zeros(0)
    ok = (values.ndim == 1 and values.shape[0] == ndim and values.dtype.kind in "iuf"
          and np.all(np.isfinite(values)) and np.all(values >= 1)
          and np.all(values == np.round(values)))
    if not ok:
        raise ValueError(f"{where} must be {ndim} positive integers (the image grid of the "
                         f"{ndim}D trajectory), got {value!r}")
    return tuple(int(v) for v in values)


def _padded(matrix_size) -> tuple[int, int, int]:
    return tuple(matrix_size) + (1,) * (3 - len(matrix_size))


def _check_coords(coords: np.ndarray, matrix_size, where: str) -> None:
    check_coords(coords, tuple(matrix_size), where)  # finite, inside the grid


def _check_density_layout(density, trajectory_shape, where: str, dtype_error) -> None:
    want = f"float32 {tuple(trajectory_shape)}, one value per trajectory point"
    if density.dtype != np.float32:
        raise dtype_error(f"{where} must be {want}, got {density.dtype} {density.shape}")
    if tuple(density.shape) != tuple(trajectory_shape):
        raise ValueError(f"{where} must be {want}, got {density.dtype} {density.shape}")


def _check_density(density: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(density)):
        raise ValueError(f"{where} must be finite, got "
                         f"{int(np.sum(~np.isfinite(density)))} NaN or infinite values")
    if np.any(density < 0):
        raise ValueError(f"{where} must be non-negative, got a minimum of "
                         f"{float(density.min()):g}")


# --------------------------------------------------------------------------- reading


def _python_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _as_mask(mask: np.ndarray, cols: int, where: str) -> np.ndarray:
    got = f"{mask.dtype} {mask.shape}"
    if mask.ndim != 1 or mask.shape[0] != cols:
        raise ValueError(f"{where} must be a ({cols},) vector over the k-space columns, got {got}")
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind not in "iuf" or not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{where} must be bool or hold only 0 and 1, got {got}")
    return mask.astype(bool)


class SliceView:
    """A lazy ``(slices, ...)`` dataset of a fastMRI file.

    ``view[i]`` (an int) reads slice ``i``, ``view[a:b:s]`` the slices of that range, and a tuple
    ``view[i, ...]`` reads the slices named by its first entry and indexes the rest in memory.
    Only the requested slices are read from disk. ``np.asarray(view)`` reads them all.
    """

    def __init__(self, owner: FastMRIFile, key: str, shape: tuple[int, ...], dtype):
        self._owner = owner
        self.key = key
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"SliceView({str(self._owner.path)!r}, key={self.key!r}, shape={self.shape}, "
                f"dtype={self.dtype})")

    def _selection(self, index):
        n = self.shape[0]
        if isinstance(index, (numbers.Integral, np.integer)) and not isinstance(index, bool):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"{_READ}: {self._owner.path}: key '{self.key}' has {n} "
                                 f"slices, got index {i}")
            return i % n, False
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step > 0:
                return slice(start, max(start, stop), step), False
            picked = range(start, stop, step)
            if len(picked) == 0:
                return slice(0, 0), False
            return slice(picked[-1], picked[0] + 1, -step), True
        if index is Ellipsis:
            return slice(0, n), False
        raise TypeError(f"{_READ}: {self._owner.path}: key '{self.key}' is indexed by slice: "
                        f"an int, a slice or a tuple starting with one, got {index!r}")

    def __getitem__(self, index):
        rest = ()
        if isinstance(index, tuple):
            if len(index) == 0:
                index = Ellipsis
            else:
                index, rest = index[0], index[1:]
        selection, reverse = self._selection(index)
        with self._owner._file() as f:
            try:
                data = f[self.key][selection]
            except OSError as err:
                raise ValueError(f"{_READ}: {self._owner.path}: key '{self.key}': cannot read "
                                 f"slices {index!r}, the file is corrupt ({err})") from err
        if reverse:
            data = data[::-1]
        if rest:
            data = data[(slice(None),) + rest] if isinstance(selection, slice) else data[rest]
        return data

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype)


class FastMRIFile:
    """An open-on-demand fastMRI file; made by :func:`read_fastmri`.

    Attributes:
        path: the file.
        kspace: :class:`SliceView` of k-space, ``(slices, coils, rows, cols)`` or
            ``(slices, rows, cols)`` complex64.
        reconstruction: :class:`SliceView` of the target ``(slices, rows, cols)`` float32, or
            None (test sets).
        reconstruction_key: ``'reconstruction_rss'``, ``'reconstruction_esc'`` or None.
        header: the parsed :class:`FastMRIHeader`; ``header_xml`` is the XML as stored.
        attrs: the file attributes as Python values (``max``, ``norm``, ``acquisition``,
            ``patient_id``, ``acceleration``, ``num_low_frequency`` where present).
        mask: ``(cols,)`` bool, or None where the file has no ``mask``.
        trajectory: None (Cartesian k-space); for non-Cartesian k-space ``(slices, coils,
            *trajectory)`` the float32 coordinates in cycles per field of view: a numpy array
            ``(*trajectory, ndim)`` shared by the slices (read and checked when the file is
            opened), or a :class:`SliceView` ``(slices, *trajectory, ndim)``, one per slice.
            :meth:`trajectory_at` gives slice ``i``'s either way.
        density: None, or the float32 density compensation: ``(*trajectory)`` numpy array or
            :class:`SliceView` ``(slices, *trajectory)``, as the trajectory.
        matrix_size: the image grid ``(ndim,)`` of the trajectory's units (the ``shape`` of
            :class:`mskjax.linop.NUFFT`), or None for Cartesian k-space.
        multicoil: whether k-space has a coil axis; num_slices: ``len(kspace)``;
        noncartesian: whether the file has a trajectory.
    """

    def __init__(self, path: Path, *, kspace_shape, recon_key, recon_shape, header, header_xml,
                 attrs, mask, trajectory=None, density=None, matrix_size=None):
        self.path = path
        self.kspace = SliceView(self, "kspace", kspace_shape, np.complex64)
        self.reconstruction_key = recon_key
        self.reconstruction = (None if recon_key is None
                               else SliceView(self, recon_key, recon_shape, np.float32))
        self.header = header
        self.header_xml = header_xml
        self.attrs = attrs
        self.mask = mask
        self.trajectory = trajectory
        self.density = density
        self.matrix_size = matrix_size
        self._handle: h5py.File | None = None

    @property
    def multicoil(self) -> bool:
        return self.trajectory is not None or self.kspace.ndim == 4

    @property
    def noncartesian(self) -> bool:
        return self.trajectory is not None

    def trajectory_at(self, index: int) -> np.ndarray:
        """The coordinates ``(*trajectory, ndim)`` of slice ``index`` (float32, cycles per
        field of view), shared or per slice; a ValueError for a Cartesian file."""
        return self._per_slice(self.trajectory, "trajectory", index)

    def density_at(self, index: int) -> np.ndarray | None:
        """The density compensation ``(*trajectory)`` of slice ``index``, or None."""
        if self.density is None:
            return None
        return self._per_slice(self.density, "density", index)

    def _per_slice(self, value, key, index):
        if value is None:
            raise ValueError(f"{_READ}: {self.path}: the file has no '{key}' (Cartesian "
                             "k-space)")
        if isinstance(value, SliceView):
            return value[index]
        self.kspace._selection(index)  # the same IndexError as the k-space for a bad index
        return value

    @property
    def num_slices(self) -> int:
        return self.kspace.shape[0]

    def __repr__(self) -> str:
        trajectory = ("" if self.trajectory is None
                      else f", trajectory={tuple(self.trajectory.shape)}")
        return (f"FastMRIFile({str(self.path)!r}, kspace={self.kspace.shape}, "
                f"reconstruction={self.reconstruction_key!r}{trajectory})")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    @contextlib.contextmanager
    def _file(self):
        if self._handle is not None:
            yield self._handle
            return
        handle = _open(self.path, _READ)
        try:
            yield handle
        finally:
            handle.close()

    def __enter__(self) -> FastMRIFile:
        if self._handle is None:
            self._handle = _open(self.path, _READ)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file if a ``with`` block opened it (reading again reopens it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _open(path: Path, func: str) -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"{func}: {path}: no such file")
    if path.is_dir():
        raise ValueError(f"{func}: {path}: is a folder, expected an HDF5 file")
    try:
        with open(path, "rb") as handle:
            handle.read(8)
    except PermissionError as err:
        raise PermissionError(f"{func}: {path}: permission denied; the file exists but cannot "
                              "be read by this user") from err
    except OSError as err:
        raise ValueError(f"{func}: {path}: cannot read the file ({err.strerror or err})") from err
    try:
        signature = h5py.is_hdf5(path)
    except PermissionError as err:
        raise PermissionError(f"{func}: {path}: permission denied; the file exists but cannot "
                              "be read by this user") from err
    except OSError:
        signature = False
    if not signature:
        raise ValueError(f"{func}: {path}: not an HDF5 file (no HDF5 signature); fastMRI "
                         "files are HDF5")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{func}: {path}: cannot open the HDF5 file, it is truncated or "
                         f"corrupt ({err})") from err


def _dataset(f: h5py.File, key: str, path: Path, required: bool = True):
    if key not in f:
        if not required:
            return None
        raise ValueError(f"{_READ}: {path}: key '{key}' is missing (the file has keys "
                         f"{sorted(f.keys())})")
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{_READ}: {path}: key '{key}' must be a dataset, got a group")
    return node


def _inspect(f: h5py.File, path: Path) -> FastMRIFile:
    kspace = _dataset(f, "kspace", path)
    trajectory = _dataset(f, "trajectory", path, required=False)
    layout = _KSPACE_LAYOUT if trajectory is None else _NONCARTESIAN_LAYOUT
    got = f"got {kspace.dtype} {kspace.shape}"
    if kspace.dtype != np.complex64:
        raise TypeError(f"{_READ}: {path}: key 'kspace' must be {layout}, {got}")
    if trajectory is None and kspace.ndim not in (3, 4) or kspace.ndim < 3 or (
            0 in kspace.shape):
        raise ValueError(f"{_READ}: {path}: key 'kspace' must be {layout}, {got}")
    multicoil = trajectory is not None or kspace.ndim == 4

    header_where = f"{_READ}: {path}: key 'ismrmrd_header'"
    header_xml = _header_text(_dataset(f, "ismrmrd_header", path)[()], header_where)
    header = _parse(header_xml, header_where)
    if isinstance(header_xml, bytes):
        header_xml = header_xml.decode("utf-8", errors="replace")

    per_slice, ndim, matrix_size, density = False, 2, None, None
    if trajectory is not None:
        where = f"{_READ}: {path}: key 'trajectory'"
        if trajectory.dtype != np.float32:
            raise TypeError(f"{where} must be float32 coordinates, got {trajectory.dtype} "
                            f"{trajectory.shape}")
        per_slice, ndim = _trajectory_form(kspace.shape, trajectory.shape, where)
        units = _python_value(trajectory.attrs.get("units"))
        if units != _UNITS:
            raise ValueError(f"{where} must have the attribute units = {_UNITS!r}, got "
                             f"{units!r}")
        matrix_size = _matrix_size(trajectory.attrs.get("matrix_size"), ndim,
                                   f"{where}: attribute 'matrix_size'")
        if header.encoded_matrix != _padded(matrix_size):
            raise ValueError(f"{where}: attribute matrix_size {matrix_size} disagrees with the "
                             f"header's encoded matrix {header.encoded_matrix}; they must "
                             f"match as {_padded(matrix_size)}")
        if not per_slice:
            trajectory = np.asarray(trajectory[()])
            _check_coords(trajectory, matrix_size, where)
        density = _dataset(f, "density", path, required=False)
        if density is not None:
            where = f"{_READ}: {path}: key 'density'"
            _check_density_layout(density, trajectory.shape[:-1], where, TypeError)
            if not per_slice:
                density = np.asarray(density[()])
                _check_density(density, where)
        if _dataset(f, "mask", path, required=False) is not None:
            raise ValueError(f"{_READ}: {path}: key 'mask' must be absent from a non-Cartesian "
                             "file (its trajectory is the sampling), but the file has both "
                             "'mask' and 'trajectory'")
    elif _dataset(f, "density", path, required=False) is not None:
        raise ValueError(f"{_READ}: {path}: key 'density' needs a 'trajectory' (density "
                         "compensation is for non-Cartesian k-space), but the file has none")

    recon_key, recon_shape = None, None
    for key in _recon_keys(multicoil):
        recon = _dataset(f, key, path, required=False)
        if recon is None:
            continue
        want = (f"float32 ({kspace.shape[0]}, rows, cols), one image per k-space slice"
                if ndim == 2 else f"float32 ({kspace.shape[0]}, *image) with {ndim} image "
                                  "axes, one image per k-space slice")
        if recon.dtype != np.float32:
            raise TypeError(f"{_READ}: {path}: key '{key}' must be {want}, got {recon.dtype} "
                            f"{recon.shape}")
        if recon.ndim != ndim + 1 or recon.shape[0] != kspace.shape[0] or 0 in recon.shape:
            raise ValueError(f"{_READ}: {path}: key '{key}' must be {want}, got {recon.dtype} "
                             f"{recon.shape}")
        recon_key, recon_shape = key, recon.shape
        break

    mask = _dataset(f, "mask", path, required=False)
    if mask is not None:
        mask = _as_mask(np.asarray(mask[()]), kspace.shape[-1], f"{_READ}: {path}: key 'mask'")
    attrs = {key: _python_value(value) for key, value in f.attrs.items()}
    file = FastMRIFile(path, kspace_shape=kspace.shape, recon_key=recon_key,
                       recon_shape=recon_shape, header=header, header_xml=header_xml,
                       attrs=attrs, mask=mask, matrix_size=matrix_size)
    if per_slice:
        trajectory = SliceView(file, "trajectory", trajectory.shape, np.float32)
        if density is not None:
            density = SliceView(file, "density", density.shape, np.float32)
    file.trajectory, file.density = trajectory, density
    return file


def read_fastmri(path: str | os.PathLike) -> FastMRIFile:
    """Open a fastMRI HDF5 file, check its layout and return a lazy :class:`FastMRIFile`.

    The layout, header and mask are checked now; k-space and the reconstruction are read when
    indexed (``file.kspace[i]`` is one ``(coils, rows, cols)`` slice). Use ``with
    read_fastmri(path) as file:`` to keep the file open over many reads. A non-Cartesian file
    (one with a ``trajectory``) has ``file.trajectory``, ``file.density`` and
    ``file.matrix_size``; a trajectory shared by the slices is read and checked (finite, inside
    the grid) now, one per slice when indexed (``file.trajectory_at(i)``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not HDF5, truncated or corrupt; ``kspace`` or ``ismrmrd_header`` missing;
            wrong rank; malformed header; a reconstruction or mask that does not fit k-space;
            a trajectory or density that does not fit k-space, a trajectory without its
            ``units`` and ``matrix_size`` or with coordinates outside the grid.
        TypeError: ``kspace`` is not complex64, the reconstruction, trajectory or density not
            float32.
    """
    path = Path(path)
    with _open(path, _READ) as f:
        try:
            return _inspect(f, path)
        except OSError as err:
            raise ValueError(f"{_READ}: {path}: cannot read the file, it is truncated or "
                             f"corrupt ({err})") from err


# --------------------------------------------------------------------------- writing


def _host_array(x, name: str):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        raise TypeError(f"{_WRITE}: {name} must be an array, got {type(x).__name__}; pass "
                        "np.asarray(...) with an explicit dtype")
    if not hasattr(x, "__array__") or isinstance(x, (str, bytes)):
        raise TypeError(f"{_WRITE}: {name} must be an array, got {type(x).__name__}")
    return np.asarray(x)


def _finite_number(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating)) or not (
            math.isfinite(value)):
        raise ValueError(f"{_WRITE}: {name} must be None or a finite real number, got {value!r}")
    return value


def _optional_str(value, name: str):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{_WRITE}: {name} must be None or a str, got {type(value).__name__}")
    return value


def write_fastmri(path: str | os.PathLike, kspace: ArrayLike, *,
                  reconstruction: ArrayLike | None = None,
                  header: str | bytes | FastMRIHeader | None = None,
                  fov_mm: Sequence[float] | None = None,
                  acquisition: str | None = None, patient_id: str | None = None,
                  max_value: float | None = None, norm: float | None = None,
                  mask: ArrayLike | None = None,
                  acceleration: float | None = None,
                  num_low_frequency: int | None = None,
                  trajectory: ArrayLike | None = None, density: ArrayLike | None = None,
                  matrix_size: Sequence[int] | None = None) -> Path:
    """Write one volume as a fastMRI HDF5 file, atomically.

    Args:
        path: the output file (its folder must exist); an existing file is replaced only when
            the new one is complete.
        kspace: complex64 ``(slices, coils, rows, cols)`` (multi-coil) or ``(slices, rows,
            cols)`` (single-coil), numpy or JAX.
        reconstruction: float32 ``(slices, rows, cols)`` target, written as
            ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil).
        header: ISMRMRD XML (str or bytes) or a :class:`FastMRIHeader`. None builds a minimal
            one with :func:`ismrmrd_header_xml`: encoded matrix ``(rows, cols, 1)``, recon
            matrix the reconstruction's ``(rows, cols, 1)`` (else k-space's), and fields of
            view ``fov_mm``.
        fov_mm: ``(x, y, z)`` field of view in mm for a built header (encoded and recon);
            default 1 mm per k-space sample, ``(rows, cols, 1)``. Only with ``header=None``.
        acquisition, patient_id: str attributes (e.g. ``'CORPD_FBK'``), written when given.
        max_value, norm: the ``max`` and ``norm`` attributes; with a reconstruction they
            default to its maximum and its L2 norm (over the whole volume), as in fastMRI.
        mask: ``(cols,)`` sampled columns (bool, or 0/1 values), as in the test set.
        acceleration, num_low_frequency: test-set attributes, written when given.
        trajectory: float32 coordinates in cycles per field of view for non-Cartesian k-space
            ``(slices, coils, *trajectory)``: ``(*trajectory, ndim)`` shared by the slices or
            ``(slices, *trajectory, ndim)`` one per slice, ``ndim`` 1 to 3, every coordinate
            inside the grid (``|k_a| <= matrix_size[a] / 2``). A reconstruction then has
            ``ndim`` image axes. No ``mask`` with a trajectory.
        density: float32 density compensation with the trajectory's shape less its last axis
            (requires ``trajectory``), finite and non-negative.
        matrix_size: the image grid ``(ndim,)`` of the coordinates (the ``shape`` of
            :class:`mskjax.linop.NUFFT`), written as the trajectory's ``matrix_size``
            attribute and as the built header's encoded matrix. Required with a trajectory
            unless ``header`` is given, whose encoded matrix then sets it (and must agree).

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    path = Path(path)
    kspace = _host_array(kspace, "kspace")
    if kspace is None:
        raise TypeError(f"{_WRITE}: kspace must be an array, got None")
    trajectory = _host_array(trajectory, "trajectory")
    density = _host_array(density, "density")
    noncartesian = trajectory is not None
    layout = _NONCARTESIAN_LAYOUT if noncartesian else _KSPACE_LAYOUT
    got = f"got {kspace.dtype} {kspace.shape}"
    if kspace.dtype != np.complex64:
        hint = ("; convert explicitly with kspace.astype(np.complex64)"
                if kspace.dtype.kind == "c" else "")
        raise TypeError(f"{_WRITE}: kspace must be {layout}, {got}{hint}")
    if (kspace.ndim < 3 if noncartesian else kspace.ndim not in (3, 4)) or 0 in kspace.shape:
        raise ValueError(f"{_WRITE}: kspace must be {layout}, {got}")
    multicoil = noncartesian or kspace.ndim == 4
    slices, rows, cols = kspace.shape[0], kspace.shape[-2], kspace.shape[-1]
    image_ndim = 2
    if noncartesian:
        if trajectory.dtype != np.float32:
            hint = ("; convert explicitly with trajectory.astype(np.float32)"
                    if trajectory.dtype.kind in "iuf" else "")
            raise TypeError(f"{_WRITE}: trajectory must be float32 coordinates in cycles per "
                            f"field of view, got {trajectory.dtype}{hint}")
        _, image_ndim = _trajectory_form(kspace.shape, trajectory.shape,
                                         f"{_WRITE}: trajectory")
    elif density is not None:
        raise ValueError(f"{_WRITE}: density needs a trajectory (density compensation is for "
                         "non-Cartesian k-space)")
    elif matrix_size is not None:
        raise ValueError(f"{_WRITE}: matrix_size needs a trajectory (the image grid of "
                         "non-Cartesian coordinates); Cartesian k-space sets its own")

    reconstruction = _host_array(reconstruction, "reconstruction")
    recon_key = None
    if reconstruction is not None:
        recon_key = _recon_keys(multicoil)[0]
        want = (f"float32 ({slices}, rows, cols), one image per k-space slice" if image_ndim == 2
                else f"float32 ({slices}, *image) with {image_ndim} image axes, one image per "
                     "k-space slice")
        got = f"got {reconstruction.dtype} {reconstruction.shape}"
        if reconstruction.dtype != np.float32:
            hint = ("; convert explicitly with reconstruction.astype(np.float32)"
                    if reconstruction.dtype.kind == "f" else "")
            raise TypeError(f"{_WRITE}: reconstruction must be {want}, {got}{hint}")
        if reconstruction.ndim != image_ndim + 1 or reconstruction.shape[0] != slices or (
                0 in reconstruction.shape):
            raise ValueError(f"{_WRITE}: reconstruction must be {want}, {got}")

    if noncartesian and matrix_size is not None:
        matrix_size = _matrix_size(matrix_size, image_ndim, f"{_WRITE}: matrix_size")
    if header is None:
        if noncartesian and matrix_size is None:
            raise ValueError(f"{_WRITE}: a trajectory needs matrix_size (the image grid of its "
                             f"{image_ndim} coordinates) or a header whose encoded matrix gives "
                             "it")
        encoded = _padded(matrix_size) if noncartesian else (rows, cols, 1)
        fov = tuple(float(n) for n in encoded) if fov_mm is None else _triple(
            fov_mm, "fov_mm", float, _WRITE)
        recon_matrix = _padded(reconstruction.shape[1:]) if (
            reconstruction is not None) else encoded
        header_xml = ismrmrd_header_xml(
            encoded_matrix=encoded, recon_matrix=recon_matrix, encoded_fov_mm=fov,
            recon_fov_mm=fov, num_coils=kspace.shape[1] if multicoil else None,
            trajectory="other" if noncartesian else "cartesian")
    else:
        if fov_mm is not None:
            raise ValueError(f"{_WRITE}: fov_mm only applies to a built header (header=None); "
                             "put the field of view in the header instead")
        if isinstance(header, FastMRIHeader):
            parsed = header
            header_xml = header.to_xml(num_coils=kspace.shape[1] if multicoil else None,
                                       trajectory="other" if noncartesian else "cartesian")
        elif isinstance(header, (str, bytes)):
            header_xml = header
            parsed = _parse(header_xml, f"{_WRITE}: header")
        else:
            raise TypeError(f"{_WRITE}: header must be None, ISMRMRD XML (str or bytes) or a "
                            f"FastMRIHeader, got {type(header).__name__}")
        if noncartesian:
            encoded = parsed.encoded_matrix
            if matrix_size is None:
                matrix_size = encoded[:image_ndim]
            if encoded != _padded(matrix_size):
                raise ValueError(
                    f"{_WRITE}: the header's encoded matrix {encoded} must be matrix_size "
                    f"{matrix_size} padded with 1, {_padded(matrix_size)}")
    header_bytes = header_xml.encode("utf-8") if isinstance(header_xml, str) else header_xml

    if noncartesian:
        _check_coords(trajectory, matrix_size, f"{_WRITE}: trajectory")
        if density is not None:
            _check_density_layout(density, trajectory.shape[:-1], f"{_WRITE}: density",
                                  TypeError)
            _check_density(density, f"{_WRITE}: density")
    mask = _host_array(mask, "mask")
    if mask is not None and noncartesian:
        raise ValueError(f"{_WRITE}: mask applies to Cartesian k-space only; non-Cartesian "
                         "k-space is sampled where its trajectory says")
    if mask is not None:
        mask = _as_mask(mask, cols, f"{_WRITE}: mask")
    acquisition = _optional_str(acquisition, "acquisition")
    patient_id = _optional_str(patient_id, "patient_id")
    max_value = _finite_number(max_value, "max_value")
    norm = _finite_number(norm, "norm")
    acceleration = _finite_number(acceleration, "acceleration")
    if acceleration is not None and acceleration < 1:
        raise ValueError(f"{_WRITE}: acceleration must be >= 1, got {acceleration!r}")
    if num_low_frequency is not None and (
            isinstance(num_low_frequency, bool)
            or not isinstance(num_low_frequency, numbers.Integral) or num_low_frequency < 0):
        raise ValueError(f"{_WRITE}: num_low_frequency must be None or an integer >= 0, got "
                         f"{num_low_frequency!r}")
    if reconstruction is not None:
        if max_value is None:
            max_value = float(reconstruction.max())
        if norm is None:
            norm = float(np.linalg.norm(reconstruction.astype(np.float64).ravel()))

    if path.is_dir():
        raise ValueError(f"{_WRITE}: {path}: is a folder, expected a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{_WRITE}: {path}: the folder {path.parent} does not exist")
    attrs = {"max": max_value, "norm": norm, "acquisition": acquisition,
             "patient_id": patient_id, "acceleration": acceleration,
             "num_low_frequency": num_low_frequency}
    with atomic_paths(path, func=_WRITE) as (tmp,):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace)
            if reconstruction is not None:
                f.create_dataset(recon_key, data=reconstruction)
            f.create_dataset("ismrmrd_header", data=np.bytes_(header_bytes))
            if mask is not None:
                f.create_dataset("mask", data=mask)
            if noncartesian:
                node = f.create_dataset("trajectory", data=trajectory)
                node.attrs["units"] = _UNITS
                node.attrs["matrix_size"] = np.asarray(matrix_size, np.int64)
                if density is not None:
                    f.create_dataset("density", data=density)
            for key, value in attrs.items():
                if value is None:
                    continue
                if key in ("max", "norm"):
                    value = np.float64(value)
                elif key == "num_low_frequency":
                    value = np.int64(value)
                elif key == "acceleration":
                    value = np.int64(value) if float(value).is_integer() else np.float64(value)
                f.attrs[key] = value
    return path
