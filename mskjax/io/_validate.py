"""Check data files against the machine-readable specs in ``data_specs/``.

A spec is a JSON object (see the files in ``data_specs/``):

- ``name``, ``description`` and free documentation fields (``source``, ``location``,
  ``documented``, ``unconfirmed``, ``notes``); ``path``: for the shared real data, the file's
  path under the data folder (``$MSKJAX_DATA``, else ``../shared/data``).
- ``format``: ``"hdf5"``, ``"npz"``, ``"npy"``, ``"cfl"`` (BART), ``"nifti"``, ``"mhd"``
  (MetaImage) or ``"mat"`` (MATLAB v5), or a list of these, chosen by the file's suffix.
- ``arrays``: ``{key: {shape, dtype, axes, units, ...}}``. ``shape`` lists one entry per axis:
  an int (that size), ``null`` (any size) or a name (any size, but the same size wherever the
  name appears in the file, e.g. ``"slices"`` for k-space and its reconstruction). ``dtype`` is
  a numpy name (``"complex64"``), a kind (``"int"``, ``"float"``, ``"complex"``, ``"number"``,
  ``"str"``, ``"bytes"``), a list of those, or ``null`` where the layout is not documented
  (not checked). ``axes`` names each axis. Optional entries: ``optional`` (may be absent),
  ``labels`` (``{"value": "name"}``: the values the array may hold), ``channels`` (names along
  the last axis of a one-hot array), ``content`` (``"ismrmrd_xml"``: the value must parse as an
  ISMRMRD header). HDF5 keys are paths (``"stats/echo1/mean"``). Formats holding one array
  (npy, cfl, nifti, mhd) have one entry, whose key names it in reports.
- ``attributes`` (HDF5 only): ``{name: {dtype, shape (default []: a scalar), optional}}``.
- ``allow_extra_keys`` (default false): whether keys or attributes the spec does not list are
  accepted; when false each is reported.

Shapes are the shapes a reader returns: numpy's for npz/npy/HDF5, ``scipy.io.loadmat``'s for
MATLAB (dtypes are the MATLAB classes, ``loadmat(..., mat_dtype=True)``), the header
dimensions for BART and ``(x, y, z)`` voxel order for NIfTI (nibabel) and MetaImage.
:func:`validate` reports every mismatch it finds, each naming the file, the key and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import zipfile
import zlib
from pathlib import Path

import h5py  # mskjax.io's __init__ imports _fastmri first, which names the extra if missing
import numpy as np

from . import _cfl
from ._fastmri import _header_text, _parse

_FUNC = "mskjax.io.validate"
_LOAD = "mskjax.io.load_spec"
#: The folder of the specs that ship with the project.
SPEC_DIR = Path(__file__).resolve().parents[2] / "data_specs"
FORMATS = ("hdf5", "npz", "npy", "cfl", "nifti", "mhd", "mat")
_SUFFIXES = {"hdf5": (".h5", ".hdf5", ".hdf"), "npz": (".npz",), "npy": (".npy",),
             "cfl": (".cfl", ".hdr", ""), "nifti": (".nii", ".nii.gz"), "mhd": (".mhd", ".mha"),
             "mat": (".mat",)}
_SINGLE = ("npy", "cfl", "nifti", "mhd")
_KINDS = {"int": "iu", "float": "f", "complex": "c", "number": "iufc"}
_STRINGS = ("str", "bytes")
_CONTENTS = ("ismrmrd_xml",)


# --------------------------------------------------------------------------- reports


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One way a file differs from its spec.

    ``where`` is ``"key"`` (an array or dataset), ``"attribute"`` (an HDF5 attribute) or
    ``"file"`` (the file as a whole; ``key`` is then empty).
    """

    file: str
    key: str
    problem: str
    where: str = "key"

    def __str__(self) -> str:
        if self.where == "file":
            return f"{self.file}: {self.problem}"
        return f"{self.file}: {self.where} '{self.key}': {self.problem}"


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate`: every mismatch between a file and a spec."""

    file: str
    spec: str
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def keys(self) -> list[str]:
        """The keys (and attribute names) with at least one mismatch, in order."""
        return list(dict.fromkeys(m.key for m in self.mismatches))

    def __str__(self) -> str:
        if self.ok:
            return f"{self.file} matches spec '{self.spec}'"
        lines = "\n".join(f"  {m}" for m in self.mismatches)
        n = len(self.mismatches)
        return (f"{self.file} does not match spec '{self.spec}' ({n} mismatch"
                f"{'es' if n > 1 else ''}):\n{lines}")


# --------------------------------------------------------------------------- specs


def spec_names() -> list[str]:
    """The names of the specs in :data:`SPEC_DIR`."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.json"))


def _dtype_word_ok(word) -> bool:
    if word in _KINDS or word in _STRINGS:
        return True
    try:
        np.dtype(word)
    except TypeError:
        return False
    return isinstance(word, str)


def _spec_problems(spec) -> list[str]:
    if not isinstance(spec, dict):
        return [f"must be a JSON object, got {type(spec).__name__}"]
    problems = []
    formats = spec.get("format")
    formats = formats if isinstance(formats, list) else [formats]
    if not formats or any(f not in FORMATS for f in formats):
        problems.append(f"'format' must be one of {FORMATS} or a list of them, got "
                        f"{spec.get('format')!r}")
    arrays = spec.get("arrays")
    if not isinstance(arrays, dict) or not arrays:
        problems.append("'arrays' must be a non-empty object {key: {shape, dtype, axes, ...}}")
        arrays = {}
    if any(f in _SINGLE for f in formats) and len(arrays) != 1:
        problems.append(f"a {'/'.join(formats)} file holds one array, so 'arrays' must have one "
                        f"entry, got {len(arrays)}")
    for key, entry in arrays.items():
        where = f"arrays['{key}']"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be an object")
            continue
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
                s is None or isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool)
                                                    and s >= 0) for s in shape):
            problems.append(f"{where}['shape'] must be a list of ints, nulls and dimension "
                            f"names, got {shape!r}")
            shape = None
        dtype = entry.get("dtype", "<missing>")
        words = dtype if isinstance(dtype, list) else [dtype]
        if dtype is not None and (not words or not all(_dtype_word_ok(w) for w in words)):
            problems.append(f"{where}['dtype'] must be a numpy dtype name, one of "
                            f"{tuple(_KINDS) + _STRINGS}, a list of those, or null, got "
                            f"{dtype!r}")
        axes = entry.get("axes")
        if not isinstance(axes, list) or (shape is not None and len(axes) != len(shape)):
            problems.append(f"{where}['axes'] must name each of the {len(shape or [])} axes, "
                            f"got {axes!r}")
        labels = entry.get("labels")
        if labels is not None and (not isinstance(labels, dict) or not all(
                k.lstrip("-").isdigit() for k in labels)):
            problems.append(f"{where}['labels'] must map integer values (as strings) to names")
        if entry.get("content") is not None and entry["content"] not in _CONTENTS:
            problems.append(f"{where}['content'] must be one of {_CONTENTS}")
    attributes = spec.get("attributes", {})
    if not isinstance(attributes, dict):
        problems.append("'attributes' must be an object {name: {dtype, ...}}")
        attributes = {}
    if attributes and formats != ["hdf5"]:
        problems.append("'attributes' apply to HDF5 files only")
    for name, entry in attributes.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else "<missing>"
        words = dtype if isinstance(dtype, list) else [dtype]
        if not isinstance(entry, dict) or (dtype is not None and not all(
                _dtype_word_ok(w) for w in words)):
            problems.append(f"attributes['{name}'] must be an object with a valid 'dtype'")
    return problems


def load_spec(spec: dict | str | Path) -> dict:
    """A checked spec from a dict, a path to a JSON file, or a name in :data:`SPEC_DIR`.

    Raises:
        ValueError: an unknown name, a file that is not JSON, or a spec whose structure is
            wrong (all the problems are listed).
    """
    origin = "spec"
    if isinstance(spec, dict):
        data = spec
        origin = f"spec '{spec.get('name', '<unnamed>')}'"
    elif isinstance(spec, (str, Path)):
        path = Path(spec)
        if path.suffix != ".json" and path.parent == Path(".") and not path.exists():
            path = SPEC_DIR / f"{spec}.json"
            if not path.is_file():
                raise ValueError(f"{_LOAD}: no spec named '{spec}' in {SPEC_DIR}; the specs are "
                                 f"{spec_names()}")
        if not path.is_file():
            raise FileNotFoundError(f"{_LOAD}: {path}: no such spec file")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{_LOAD}: {path}: not valid JSON ({err})") from err
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
        origin = str(path)
    else:
        raise TypeError(f"{_LOAD}: spec must be a dict, a path to a JSON spec or a spec name, "
                        f"got {type(spec).__name__}")
    problems = _spec_problems(data)
    if problems:
        raise ValueError(f"{_LOAD}: {origin} is not a valid spec:\n  " + "\n  ".join(problems))
    return data


# --------------------------------------------------------------------------- inventories


@dataclasses.dataclass
class _Found:
    shape: tuple[int, ...]
    dtype: np.dtype
    load: object  # () -> np.ndarray


class _Unreadable(Exception):
    pass


def _dtype_name(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "S":
        return "bytes"
    if dtype.kind == "U":
        return "str"
    if dtype.kind == "O":
        info = h5py.check_string_dtype(dtype)
        if info is not None:
            return "str" if info.encoding == "utf-8" else "bytes"
        return "object"
    return dtype.name


def _dtype_ok(dtype: np.dtype, want) -> bool:
    words = want if isinstance(want, list) else [want]
    name = _dtype_name(dtype)
    for word in words:
        if word in _KINDS:
            if name not in ("bool", "object") and np.dtype(dtype).kind in _KINDS[word]:
                return True
        elif word in _STRINGS:
            if name == word:
                return True
        elif name == np.dtype(word).name:
            return True
    return False


@contextlib.contextmanager
def _hdf5(path: Path):
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise _Unreadable(f"cannot be read as HDF5 ({err})") from err
    try:
        found = {}

        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                found[name] = _Found(tuple(node.shape), node.dtype, lambda n=node: n[()])

        f.visititems(visit)
        attrs = {k: f.attrs[k] for k in f.attrs}
        yield found, attrs
    finally:
        f.close()


def _npy_header(fp):
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    return None


@contextlib.contextmanager
def _npz(path: Path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _Unreadable(f"cannot be read as npz, a zip of .npy files ({err})") from err
    with archive:
        found = {}
        for member in archive.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            try:
                with archive.open(member) as fp:
                    header = _npy_header(fp)
                if header is None:
                    with archive.open(member) as fp:
                        array = np.load(fp, allow_pickle=False)
                    header = (array.shape, False, array.dtype)
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                raise _Unreadable(f"member '{member}' cannot be read as .npy ({err})") from err
            shape, _, dtype = header

            def load(m=member):
                with archive.open(m) as fp:
                    return np.load(fp, allow_pickle=False)

            found[key] = _Found(tuple(shape), np.dtype(dtype), load)
        yield found, None


@contextlib.contextmanager
def _npy(path: Path, key: str):
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise _Unreadable(f"cannot be read as .npy ({err})") from err
    if not isinstance(array, np.ndarray):
        raise _Unreadable("holds an npz archive, not a single .npy array")
    yield {key: _Found(array.shape, array.dtype, lambda: np.asarray(array))}, None


@contextlib.contextmanager
def _cfl_pair(path: Path, key: str):
    try:
        dims = _cfl.cfl_dims(path, func=_FUNC)
        _cfl._checked_size(_cfl._base(path), dims, _FUNC)
    except (FileNotFoundError, ValueError) as err:
        raise _Unreadable(str(err).split(": ", 1)[-1]) from err
    yield {key: _Found(dims, np.dtype(np.complex64), lambda: _cfl.read_cfl(path))}, None


@contextlib.contextmanager
def _nifti(path: Path, key: str):
    import nibabel

    try:
        image = nibabel.load(path)
    except Exception as err:  # nibabel raises several unrelated types for bad files
        raise _Unreadable(f"cannot be read as NIfTI ({type(err).__name__}: {err})") from err
    yield {key: _Found(tuple(image.shape), image.get_data_dtype(),
                       lambda: np.asanyarray(image.dataobj))}, None


_MET_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
              "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
              "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


@contextlib.contextmanager
def _mhd(path: Path, key: str):
    raw = path.read_bytes()
    fields, offset = {}, 0
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        text = line.decode("latin-1").strip()
        if not text or text.startswith("#"):
            continue
        if "=" not in text:
            raise _Unreadable(f"not a MetaImage header, line {text[:40]!r} has no '='")
        name, value = (s.strip() for s in text.split("=", 1))
        fields[name] = value
        if name == "ElementDataFile":
            break
    missing = [k for k in ("NDims", "DimSize", "ElementType", "ElementDataFile")
               if k not in fields]
    if missing:
        raise _Unreadable(f"MetaImage header lacks {missing}")
    try:
        dims = tuple(int(v) for v in fields["DimSize"].split())
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError as err:
        raise _Unreadable(f"MetaImage DimSize is not a list of integers ({err})") from err
    if fields["ElementType"] not in _MET_TYPES:
        raise _Unreadable(f"unknown MetaImage ElementType {fields['ElementType']!r}")
    order = ">" if fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB",
                                                                   "False")) == "True" else "<"
    dtype = np.dtype(order + _MET_TYPES[fields["ElementType"]])
    shape = dims + ((channels,) if channels > 1 else ())

    def load():
        if fields["ElementDataFile"] == "LOCAL":
            data = raw[offset:]
        else:
            data_path = path.parent / fields["ElementDataFile"]
            if not data_path.is_file():
                raise _Unreadable(f"its data file {data_path} does not exist")
            data = data_path.read_bytes()
        if fields.get("CompressedData", "False") == "True":
            try:
                data = zlib.decompress(data)
            except zlib.error as err:
                raise _Unreadable(f"its compressed data cannot be inflated ({err})") from err
        want = int(np.prod(shape)) * dtype.itemsize
        if len(data) != want:
            raise _Unreadable(f"its data has {len(data)} bytes, the header implies {want}")
        values = np.frombuffer(data, dtype=dtype)
        if channels > 1:
            return values.reshape((channels,) + dims, order="F").transpose(
                tuple(range(1, len(dims) + 1)) + (0,))
        return values.reshape(dims, order="F")

    load()  # a size mismatch makes the file unreadable, not only its labels
    yield {key: _Found(shape, np.dtype(dtype.newbyteorder("=")), load)}, None


_MAT_CLASSES = {"double": "float64", "single": "float32", "logical": "bool", "char": "str",
                "int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16",
                "int32": "int32", "uint32": "uint32", "int64": "int64", "uint64": "uint64",
                "cell": "object", "struct": "object", "sparse": "float64"}


@contextlib.contextmanager
def _mat(path: Path):
    import scipy.io

    try:
        variables = scipy.io.whosmat(path)
    except NotImplementedError as err:
        raise _Unreadable(f"is a MATLAB v7.3 file, an HDF5 file: validate it as hdf5 ({err})")
    except Exception as err:  # scipy raises several unrelated types for bad files
        raise _Unreadable(f"cannot be read as a MATLAB file ({type(err).__name__}: "
                          f"{err})") from err
    found = {}
    for name, shape, cls in variables:
        def load(n=name):
            return scipy.io.loadmat(path, variable_names=[n], mat_dtype=True)[n]

        found[name] = _Found(tuple(shape), np.dtype(_MAT_CLASSES.get(cls, "object")), load)
    yield found, None


def _inventory(path: Path, fmt: str, key: str):
    if fmt == "hdf5":
        return _hdf5(path)
    if fmt == "npz":
        return _npz(path)
    if fmt == "mat":
        return _mat(path)
    return {"npy": _npy, "cfl": _cfl_pair, "nifti": _nifti, "mhd": _mhd}[fmt](path, key)


# --------------------------------------------------------------------------- checks


def _axis(entry: dict, i: int) -> str:
    axes = entry.get("axes") or []
    return f"{i} ({axes[i]})" if i < len(axes) else str(i)


def _check_array(key, entry, found: _Found, named: dict, add) -> None:
    want_dtype = entry.get("dtype")
    if want_dtype is not None and not _dtype_ok(found.dtype, want_dtype):
        words = want_dtype if isinstance(want_dtype, list) else [want_dtype]
        add(key, f"dtype must be {' or '.join(words)}, got {_dtype_name(found.dtype)}")
    want = entry["shape"]
    layout = f"({', '.join(str(a) for a in entry.get('axes', []))})"
    if len(found.shape) != len(want):
        add(key, f"must have {len(want)} axes {layout}, got shape {found.shape}")
        return
    for i, (size, spec_size) in enumerate(zip(found.shape, want)):
        if isinstance(spec_size, int) and size != spec_size:
            add(key, f"axis {_axis(entry, i)} must have size {spec_size}, got {size} (shape "
                     f"{found.shape})")
        elif isinstance(spec_size, str):
            if spec_size in named and named[spec_size][0] != size:
                other_size, other_key = named[spec_size]
                add(key, f"axis {_axis(entry, i)} has size {size}, but '{spec_size}' is "
                         f"{other_size} in key '{other_key}'")
            named.setdefault(spec_size, (size, key))


def _check_values(key, entry, found: _Found, add) -> None:
    labels, content = entry.get("labels"), entry.get("content")
    if labels is None and content is None:
        return
    value = found.load()
    if content == "ismrmrd_xml":
        try:
            _parse(_header_text(value, "the value"), "the value")
        except ValueError as err:
            add(key, f"must hold an ISMRMRD XML header: {err}")
    if labels is not None:
        values = np.unique(np.asarray(value))
        if values.dtype.kind not in "biuf":
            add(key, f"holds {values.dtype} values, expected integer labels")
            return
        allowed = {int(k) for k in labels}
        bad = [v.item() for v in values if not float(v).is_integer() or int(v) not in allowed]
        if bad:
            shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
            add(key, f"holds values {shown} that are not labels; the labels are "
                     f"{ {int(k): v for k, v in labels.items()} }")


def _check_attribute(name, entry, value, add) -> None:
    array = np.asarray(value)
    want = entry.get("dtype")
    if want is not None and not _dtype_ok(array.dtype, want):
        words = want if isinstance(want, list) else [want]
        add(name, f"dtype must be {' or '.join(words)}, got {_dtype_name(array.dtype)} "
                  f"({value!r})")
    shape = tuple(entry.get("shape", []))
    if array.shape != shape:
        what = "a scalar" if shape == () else f"of shape {shape}"
        add(name, f"must be {what}, got shape {array.shape}")


def _format_for(path: Path, formats: list[str]) -> str | None:
    if len(formats) == 1:
        return formats[0]
    name = path.name.lower()
    for fmt in formats:
        if any(name.endswith(s) for s in _SUFFIXES[fmt] if s):
            return fmt
    return None


def validate(path: str | os.PathLike, spec: dict | str | Path, *,
             strict: bool = False) -> ValidationReport:
    """Check a data file against a spec and report every mismatch.

    Args:
        path: the file (for BART, the name with or without ``.cfl``/``.hdr``).
        spec: a spec dict, a path to a JSON spec, or the name of a spec in ``data_specs/``.
        strict: raise instead of returning a report with mismatches.

    Returns:
        A :class:`ValidationReport`; ``report.ok`` is True when the file matches. Each
        mismatch names the file, the key (or attribute) and the problem: a missing or extra
        key, a wrong dtype, rank or size, a named dimension whose size differs between keys,
        values outside the labels, a header that does not parse, or a file that cannot be read.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: with ``strict=True``, when there is any mismatch (all are listed); or a
            spec that is not valid.
    """
    spec = load_spec(spec)
    path = Path(path)
    formats = spec["format"] if isinstance(spec["format"], list) else [spec["format"]]
    exists = (_cfl._with(_cfl._base(path), ".hdr").exists()
              or _cfl._with(_cfl._base(path), ".cfl").exists()) if formats == ["cfl"] else (
        path.exists())
    if not exists:
        raise FileNotFoundError(f"{_FUNC}: {path}: no such file")
    mismatches: list[Mismatch] = []
    file = str(path)

    def add(key, problem, where="key"):
        mismatches.append(Mismatch(file, key, problem, where))

    arrays = spec["arrays"]
    fmt = _format_for(path, formats)
    if fmt is None:
        add("", f"is not a {' or '.join(formats)} file (expected a name ending in "
                f"{[s for f in formats for s in _SUFFIXES[f] if s]})", "file")
    else:
        try:
            with _inventory(path, fmt, next(iter(arrays))) as (found, attrs):
                named: dict = {}
                for key, entry in arrays.items():
                    if key not in found:
                        if not entry.get("optional", False):
                            add(key, "is missing" + (f" (the file has keys {sorted(found)})"
                                                     if fmt not in _SINGLE else ""))
                        continue
                    _check_array(key, entry, found[key], named, add)
                    try:
                        _check_values(key, entry, found[key], add)
                    except (OSError, ValueError) as err:
                        add(key, f"cannot be read ({err})")
                if not spec.get("allow_extra_keys", False) and fmt not in _SINGLE:
                    for key in found:
                        if key not in arrays:
                            add(key, "is not in the spec")
                if fmt == "hdf5":
                    want_attrs = spec.get("attributes", {})
                    for name, entry in want_attrs.items():
                        if name not in attrs:
                            if not entry.get("optional", False):
                                add(name, "is missing", "attribute")
                            continue
                        _check_attribute(name, entry, attrs[name],
                                         lambda k, p: add(k, p, "attribute"))
                    if not spec.get("allow_extra_keys", False):
                        for name in attrs:
                            if name not in want_attrs:
                                add(name, "is not in the spec", "attribute")
        except _Unreadable as err:
            add("", str(err), "file")
    report = ValidationReport(file, str(spec.get("name", "<unnamed>")), tuple(mismatches))
    if strict and not report.ok:
        raise ValueError(f"{_FUNC}: {report}")
    return report
