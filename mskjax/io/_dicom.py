"""DICOM MR images and series, read with pydicom (optional: ``pip install mskjax[dicom]``).

Conventions:

- One image is ``(rows, cols)``; a series is a stack ``(slices, rows, cols)``, slices in
  ascending position along the slice normal.
- Geometry is DICOM's patient coordinate system (LPS), in millimetres.
  ``orientation`` is ImageOrientationPatient: the direction cosines of a row (the direction in
  which the column index grows) followed by those of a column (the direction in which the row
  index grows). The slice normal is their cross product. ``position`` is
  ImagePositionPatient, the centre of the first transmitted pixel.
- ``pixel_spacing`` is ``(row spacing, column spacing)`` in mm: the distance between adjacent
  rows, then between adjacent columns (DICOM PixelSpacing, in that order).
- Times (echo, repetition, inversion; a spin-lock time is stored as the echo time by some
  vendors) are in milliseconds, the flip angle in degrees.
- Pixel values are float32 with RescaleSlope and RescaleIntercept applied, or the stored
  integers with ``rescale=False``.
- A tag that is absent or empty reads as ``None``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_INSTALL_HINT = "install it with `pip install mskjax[dicom]` (or `pip install pydicom`)"


def _pydicom(func: str):
    """Import pydicom on first use: it is an optional dependency."""
    try:
        import pydicom
        import pydicom.errors
    except ImportError as err:
        raise ImportError(f"{func}: reading DICOM needs pydicom, which is not installed; "
                          f"{_INSTALL_HINT}") from err
    return pydicom


@dataclass(frozen=True, eq=False)
class DicomImage:
    """One DICOM image and the acquisition parameters an MR analysis needs.

    Attributes:
        pixels: ``(rows, cols)`` float32 after RescaleSlope/RescaleIntercept, or the stored
            integer dtype when read with ``rescale=False``.
        pixel_spacing: ``(row spacing, column spacing)`` in mm.
        slice_thickness: SliceThickness in mm.
        position: ImagePositionPatient, ``(x, y, z)`` in mm (LPS).
        orientation: ImageOrientationPatient, 6 direction cosines (row, then column).
        echo_time: EchoTime in ms.
        repetition_time: RepetitionTime in ms.
        flip_angle: FlipAngle in degrees.
        inversion_time: InversionTime in ms.
        series_uid: SeriesInstanceUID.
        series_description: SeriesDescription.
        instance_number: InstanceNumber.
        path: the file that was read.
        dataset: the ``pydicom.Dataset``, for every other tag.
    """

    pixels: np.ndarray = field(repr=False)
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    echo_time: float | None
    repetition_time: float | None
    flip_angle: float | None
    inversion_time: float | None
    series_uid: str | None
    series_description: str | None
    instance_number: int | None
    path: Path
    dataset: object = field(repr=False)

    def __repr__(self) -> str:
        return (f"DicomImage(shape={self.pixels.shape}, dtype={self.pixels.dtype}, "
                f"pixel_spacing={self.pixel_spacing}, echo_time={self.echo_time}, "
                f"series_description={self.series_description!r}, "
                f"instance_number={self.instance_number}, path='{self.path}')")


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """The slices of one DICOM series, stacked in slice order.

    Attributes:
        volume: ``(slices, rows, cols)`` float32, each slice rescaled with its own
            RescaleSlope/RescaleIntercept.
        pixel_spacing: ``(row spacing, column spacing)`` in mm.
        slice_positions: ``(slices,)`` float64 position of each slice along the slice normal in
            mm (ascending), or ``None`` when the files carry no position/orientation.
        slice_spacing: median distance in mm between distinct adjacent slice positions, or
            ``None`` for a single slice position or without positions.
        echo_times: one EchoTime (ms) per slice, ``None`` where absent.
        orientation: ImageOrientationPatient shared by the slices, 6 direction cosines.
        series_uid: SeriesInstanceUID.
        description: SeriesDescription.
        files: the files in slice order.
        skipped: files of the folder that hold no image of any series: not DICOM (pydicom finds
            no DICOM file header in them, e.g. README, LICENSE) or DICOM without pixel data
            (e.g. DICOMDIR).
    """

    volume: np.ndarray = field(repr=False)
    pixel_spacing: tuple[float, float] | None
    slice_positions: np.ndarray | None = field(repr=False)
    slice_spacing: float | None
    echo_times: tuple[float | None, ...] = field(repr=False)
    orientation: tuple[float, ...] | None
    series_uid: str | None
    description: str | None
    files: tuple[Path, ...] = field(repr=False)
    skipped: tuple[Path, ...] = field(repr=False)

    def __repr__(self) -> str:
        return (f"DicomSeries(shape={self.volume.shape}, pixel_spacing={self.pixel_spacing}, "
                f"slice_spacing={self.slice_spacing}, description={self.description!r}, "
                f"series_uid={self.series_uid!r}, skipped={len(self.skipped)} files)")


@dataclass(frozen=True)
class DicomSeriesSummary:
    """What one series of a folder holds, without its pixel data.

    Attributes:
        series_uid: SeriesInstanceUID.
        description: SeriesDescription.
        series_number: SeriesNumber.
        files: its files, sorted by InstanceNumber, then name.
        echo_times: the distinct echo times (ms) of its files, ascending.
        shape: ``(rows, cols)`` of its first file.
    """

    series_uid: str | None
    description: str | None
    series_number: int | None
    files: tuple[Path, ...]
    echo_times: tuple[float, ...]
    shape: tuple[int, int] | None


# ---------------------------------------------------------------------------------------------
# Tags


def _value(ds, keyword):
    value = ds.get(keyword, None)
    if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0
                                        and not isinstance(value, str)):
        return None
    return value


def _float(ds, keyword, path, func):
    value = _value(ds, keyword)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{func}: {path}: {keyword} must be a number, got {value!r}") from err


def _floats(ds, keyword, count, path, func):
    value = _value(ds, keyword)
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in (value if hasattr(value, "__iter__")
                                          and not isinstance(value, str) else [value]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{func}: {path}: {keyword} must be {count} numbers, got "
                         f"{value!r}") from err
    if len(values) != count or not all(np.isfinite(values)):
        raise ValueError(f"{func}: {path}: {keyword} must be {count} finite numbers, got "
                         f"{value!r}")
    return values


def _int(ds, keyword, path, func):
    value = _float(ds, keyword, path, func)
    return None if value is None else int(value)


def _str(ds, keyword):
    value = _value(ds, keyword)
    return None if value is None else str(value)


def _has_pixels(ds) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _normal(orientation) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, col)


# ---------------------------------------------------------------------------------------------
# Files


def _dcmread(path: Path, func: str, *, lazy_pixels: bool = False):
    """Read one file; ``None`` if it is not DICOM (no DICOM file header)."""
    pydicom = _pydicom(func)
    try:
        if lazy_pixels:  # pixel data are read from the file when first used
            return pydicom.dcmread(path, defer_size="256 KB")
        return pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        return None
    except PermissionError:
        raise
    except Exception as err:  # pydicom raises many types for damaged files
        raise ValueError(f"{func}: {path}: cannot read the DICOM file; it may be truncated or "
                         f"corrupt ({type(err).__name__}: {err})") from err


def _image(ds, path: Path, func: str, *, rescale: bool) -> DicomImage:
    """Decode the pixels of a dataset and collect its MR parameters."""
    if not _has_pixels(ds):
        raise ValueError(f"{func}: {path}: the DICOM file holds no pixel data (it may be "
                         "truncated, or not an image: a DICOMDIR, report or presentation state)")
    frames = _int(ds, "NumberOfFrames", path, func)
    if frames is not None and frames > 1:
        raise ValueError(f"{func}: {path}: multi-frame DICOM ({frames} frames) is not supported; "
                         "expected one image per file")
    samples = _int(ds, "SamplesPerPixel", path, func)
    if samples is not None and samples != 1:
        raise ValueError(f"{func}: {path}: expected a grey-scale image (SamplesPerPixel 1), got "
                         f"SamplesPerPixel {samples}")
    try:
        raw = ds.pixel_array
    except Exception as err:  # decoders raise many types (missing plugin, short data, ...)
        raise ValueError(f"{func}: {path}: cannot decode the pixel data; the file may be "
                         f"truncated or use a compression without an installed decoder "
                         f"({type(err).__name__}: {err})") from err
    if raw.ndim != 2:
        raise ValueError(f"{func}: {path}: expected a (rows, cols) image, got pixel data of "
                         f"shape {raw.shape}")
    if rescale:
        slope = _float(ds, "RescaleSlope", path, func)
        intercept = _float(ds, "RescaleIntercept", path, func)
        pixels = raw.astype(np.float64)
        if slope is not None and slope != 1.0:
            pixels = pixels * slope
        if intercept is not None and intercept != 0.0:
            pixels = pixels + intercept
        pixels = pixels.astype(np.float32)
    else:
        pixels = raw
    return DicomImage(
        pixels=pixels,
        pixel_spacing=_floats(ds, "PixelSpacing", 2, path, func),
        slice_thickness=_float(ds, "SliceThickness", path, func),
        position=_floats(ds, "ImagePositionPatient", 3, path, func),
        orientation=_floats(ds, "ImageOrientationPatient", 6, path, func),
        echo_time=_float(ds, "EchoTime", path, func),
        repetition_time=_float(ds, "RepetitionTime", path, func),
        flip_angle=_float(ds, "FlipAngle", path, func),
        inversion_time=_float(ds, "InversionTime", path, func),
        series_uid=_str(ds, "SeriesInstanceUID"),
        series_description=_str(ds, "SeriesDescription"),
        instance_number=_int(ds, "InstanceNumber", path, func),
        path=path,
        dataset=ds,
    )


def read_dicom(path: str | os.PathLike, *, rescale: bool = True) -> DicomImage:
    """Read one single-frame DICOM image.

    Args:
        path: the file.
        rescale: apply RescaleSlope and RescaleIntercept and return float32 pixels (default);
            ``False`` returns the stored integers unchanged (keyword-only).

    Returns:
        A :class:`DicomImage` with ``pixels`` ``(rows, cols)``.

    Raises:
        ImportError: pydicom is not installed.
        FileNotFoundError: the file does not exist.
        ValueError: the file is not DICOM, holds no pixel data, is multi-frame, or its pixel data
            cannot be decoded.
    """
    func = "mskjax.io.read_dicom"
    _pydicom(func)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{func}: {path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{func}: {path}: is a folder; read a series with "
                                "mskjax.io.read_dicom_series")
    ds = _dcmread(path, func)
    if ds is None:
        raise ValueError(f"{func}: {path}: not a DICOM file (no DICOM file header: the 128-byte "
                         "preamble and 'DICM' prefix)")
    return _image(ds, path, func, rescale=rescale)


def _scan(folder, func: str):
    """Read the headers of every file in ``folder``: ``({series uid: [(path, ds)]}, skipped)``."""
    _pydicom(func)
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{func}: {folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{func}: {folder}: is not a folder; read one file with "
                                 "mskjax.io.read_dicom")
    series: dict[str | None, list] = {}
    skipped = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = _dcmread(path, func, lazy_pixels=True)
        if ds is None or not _has_pixels(ds):
            skipped.append(path)
            continue
        series.setdefault(_str(ds, "SeriesInstanceUID"), []).append((path, ds))
    return folder, series, tuple(skipped)


def _instance_key(item, func):
    path, ds = item
    number = _int(ds, "InstanceNumber", path, func)
    return (number is None, number if number is not None else 0, path.name)


def _summaries(series, func) -> tuple[DicomSeriesSummary, ...]:
    out = []
    for uid, items in series.items():
        items = sorted(items, key=lambda item: _instance_key(item, func))
        first_path, first = items[0]
        echoes = {_float(ds, "EchoTime", path, func) for path, ds in items}
        rows, cols = _int(first, "Rows", first_path, func), _int(first, "Columns", first_path,
                                                                 func)
        out.append(DicomSeriesSummary(
            series_uid=uid,
            description=_str(first, "SeriesDescription"),
            series_number=_int(first, "SeriesNumber", first_path, func),
            files=tuple(path for path, _ in items),
            echo_times=tuple(sorted(e for e in echoes if e is not None)),
            shape=None if rows is None or cols is None else (rows, cols),
        ))
    out.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid or ""))
    return tuple(out)


def list_dicom_series(folder: str | os.PathLike) -> tuple[DicomSeriesSummary, ...]:
    """Summarise the DICOM series in a folder (its files only, not subfolders).

    Files that are not DICOM, and DICOM files without pixel data, are ignored. Only headers
    are read.

    Returns:
        One :class:`DicomSeriesSummary` per SeriesInstanceUID, sorted by SeriesNumber, then UID.
    """
    func = "mskjax.io.list_dicom_series"
    _, series, _ = _scan(folder, func)
    return _summaries(series, func)


def _describe(summaries) -> str:
    return "\n".join(
        f"  {s.series_uid}  #{s.series_number}  {s.description!r}  "
        f"({len(s.files)} file{'s' if len(s.files) != 1 else ''}"
        + (f", TE {', '.join(f'{t:g}' for t in s.echo_times)} ms" if s.echo_times else "")
        + ")" for s in summaries)


def read_dicom_series(folder: str | os.PathLike, *,
                      series_uid: str | None = None) -> DicomSeries:
    """Read the slices of one DICOM series from a folder and stack them in slice order.

    Every file of the folder (not its subfolders) is tried. Files that pydicom cannot parse as
    DICOM (no DICOM file header, e.g. README or LICENSE) and DICOM files without pixel data
    (e.g. DICOMDIR) are skipped and listed in ``skipped``. The remaining files are grouped by
    SeriesInstanceUID.

    Slices are sorted by their ImagePositionPatient projected on the slice normal (the cross
    product of the row and column direction cosines), ties broken by InstanceNumber. If any
    slice lacks a position or orientation, they are sorted by InstanceNumber, then file name.

    Args:
        folder: the folder.
        series_uid: the SeriesInstanceUID to read (keyword-only). Required when the folder holds
            several series.

    Returns:
        A :class:`DicomSeries` with ``volume`` ``(slices, rows, cols)`` float32.

    Raises:
        ImportError: pydicom is not installed.
        FileNotFoundError: the folder does not exist.
        ValueError: no DICOM images; several series and no ``series_uid``; an unknown
            ``series_uid``; slices of different shapes, pixel spacings or orientations (the
            message names the file); or a file that cannot be decoded.
    """
    func = "mskjax.io.read_dicom_series"
    folder, series, skipped = _scan(folder, func)
    if not series:
        raise ValueError(f"{func}: {folder}: no DICOM images found ({len(skipped)} files "
                         "skipped: not DICOM or without pixel data)")
    summaries = _summaries(series, func)
    if series_uid is None:
        if len(series) > 1:
            raise ValueError(f"{func}: {folder}: holds {len(series)} series; pick one with "
                             f"series_uid=...:\n{_describe(summaries)}")
        series_uid = next(iter(series))
    elif series_uid not in series:
        raise ValueError(f"{func}: {folder}: no series with SeriesInstanceUID {series_uid!r}; "
                         f"the folder holds:\n{_describe(summaries)}")

    images = [_image(ds, path, func, rescale=True) for path, ds in series[series_uid]]
    first = images[0]
    for image in images[1:]:
        if image.pixels.shape != first.pixels.shape:
            raise ValueError(f"{func}: {image.path}: image shape {image.pixels.shape} differs "
                             f"from {first.pixels.shape} of {first.path.name} in the same series")
        if (image.pixel_spacing is None) != (first.pixel_spacing is None) or (
                image.pixel_spacing is not None
                and not np.allclose(image.pixel_spacing, first.pixel_spacing, rtol=1e-4)):
            raise ValueError(f"{func}: {image.path}: pixel spacing {image.pixel_spacing} differs "
                             f"from {first.pixel_spacing} of {first.path.name} in the same "
                             "series")

    has_geometry = all(im.position is not None and im.orientation is not None for im in images)
    positions = None
    if has_geometry:
        for image in images[1:]:
            if not np.allclose(image.orientation, first.orientation, atol=1e-4):
                raise ValueError(f"{func}: {image.path}: orientation {image.orientation} differs "
                                 f"from {first.orientation} of {first.path.name}; a series with "
                                 "several orientations (e.g. a localiser) cannot be stacked")
        normal = _normal(first.orientation)
        positions = np.array([np.dot(im.position, normal) for im in images])
        order = sorted(range(len(images)), key=lambda i: (
            positions[i], images[i].instance_number is None, images[i].instance_number or 0,
            images[i].path.name))
        positions = positions[order]
    else:
        order = sorted(range(len(images)), key=lambda i: (
            images[i].instance_number is None, images[i].instance_number or 0,
            images[i].path.name))
    images = [images[i] for i in order]

    spacing = None
    if positions is not None:
        distinct = np.diff(positions)
        distinct = distinct[distinct > 1e-4]
        spacing = float(np.median(distinct)) if distinct.size else None
    return DicomSeries(
        volume=np.stack([im.pixels for im in images]),
        pixel_spacing=first.pixel_spacing,
        slice_positions=positions,
        slice_spacing=spacing,
        echo_times=tuple(im.echo_time for im in images),
        orientation=first.orientation if has_geometry else None,
        series_uid=series_uid,
        description=first.series_description,
        files=tuple(im.path for im in images),
        skipped=skipped,
    )


# ---------------------------------------------------------------------------------------------
# GE qDESS header

#: GE's private creator of the acquisition group (0019,xx..) and the offsets in its block of
#: the qDESS spoiler's area ("User data 15", (0019,10B6)) and duration ("User data 16",
#: (0019,10B7), microseconds).
GE_ACQUISITION_CREATOR = "GEMS_ACQU_01"
GE_GL_AREA_OFFSET = 0xB6
GE_TG_OFFSET = 0xB7


@dataclass(frozen=True)
class QDessParameters:
    """The sequence parameters of a GE qDESS (double-echo steady state) acquisition.

    What :func:`mskjax.quant.qdess_t2` needs: ``qdess_t2(s_plus, s_minus, tr=p.tr, te=p.te,
    flip_angle=p.flip_angle, gl_area=p.gl_area, tg=p.tg)``.

    Attributes:
        tr: RepetitionTime in ms.
        te: the echo time of S+ (the first echo), in ms: the shortest EchoTime found.
        echo_times: the distinct EchoTimes of the files read, ascending, in ms (S+ then S- for
            a whole qDESS series).
        flip_angle: FlipAngle in degrees.
        gl_area: the spoiler gradient's area, GE private tag (0019,10B6).
        tg: the spoiler gradient's duration in microseconds, GE private tag (0019,10B7).
        files: the qDESS files whose headers were read.
    """

    tr: float
    te: float
    echo_times: tuple[float, ...]
    flip_angle: float
    gl_area: float
    tg: float
    files: tuple[Path, ...] = field(repr=False)


def _ge_private(ds, offset, what, path, func):
    """A GE private value of the GEMS_ACQU_01 block, wherever the block sits in (0019,xxxx)."""
    try:
        block = ds.private_block(0x0019, GE_ACQUISITION_CREATOR)
        element = block[offset]
    except KeyError:
        tag = f"(0019,10{offset:02X})"
        raise ValueError(f"{func}: {path}: not a GE qDESS file: no {what} {tag} in the GE "
                         f"private block {GE_ACQUISITION_CREATOR!r} (manufacturer "
                         f"{_str(ds, 'Manufacturer')!r})") from None
    try:
        value = float(element.value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{func}: {path}: the GE private {what} must be a number, got "
                         f"{element.value!r}") from err
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{func}: {path}: not a qDESS acquisition: the GE private {what} "
                         f"(0019,{element.tag.element:04X}) is {value:g}; a qDESS series has a "
                         "positive spoiler area and duration")
    return value


def _qdess_header(ds, path, func):
    values = {}
    for keyword, name in (("RepetitionTime", "tr"), ("EchoTime", "te"),
                          ("FlipAngle", "flip_angle")):
        value = _float(ds, keyword, path, func)
        if value is None:
            raise ValueError(f"{func}: {path}: the DICOM header has no {keyword}")
        values[name] = value
    values["gl_area"] = _ge_private(ds, GE_GL_AREA_OFFSET, "GL area", path, func)
    values["tg"] = _ge_private(ds, GE_TG_OFFSET, "TG (spoiler duration)", path, func)
    return values


def read_qdess_parameters(path: str | os.PathLike) -> QDessParameters:
    """Read TR, TE, flip angle and GE's spoiler area and duration from a qDESS file or folder.

    GE stores the area (GL area) and duration (TG, microseconds) of the qDESS spoiler gradient
    in the private tags (0019,10B6) and (0019,10B7) of the private block ``GEMS_ACQU_01``; the
    block is looked up by its private creator, so a block placed elsewhere in group 0019 is
    found too. Only headers are read.

    Args:
        path: one DICOM file, or a folder: every DICOM image in it (not its subfolders) that
            carries positive GE qDESS tags, TR, TE and flip angle is read (the two echoes may be
            one series or two), other files are ignored, and the qDESS files must agree on TR,
            flip angle, GL area and TG.

    Returns:
        A :class:`QDessParameters`; ``te`` is the shortest echo time (that of S+).

    Raises:
        ImportError: pydicom is not installed.
        FileNotFoundError: the path does not exist.
        ValueError: not DICOM; no GE qDESS tags (or zero: another GE sequence); no TR, TE or
            flip angle; files of a folder that disagree (the message names them).
    """
    func = "mskjax.io.read_qdess_parameters"
    _pydicom(func)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{func}: {path}: no such file or folder")
    if path.is_dir():
        _, series, _ = _scan(path, func)
        items = sorted((item for group in series.values() for item in group),
                       key=lambda item: item[0].name)
        headers, reasons = [], []
        for file, ds in items:
            try:
                headers.append((file, _qdess_header(ds, file, func)))
            except ValueError as err:
                reasons.append(str(err).removeprefix(f"{func}: "))
        if not headers:
            detail = f"; e.g. {reasons[0]}" if reasons else ""
            raise ValueError(f"{func}: {path}: no GE qDESS DICOM image in the folder "
                             f"({len(items)} DICOM images read){detail}")
    else:
        ds = _dcmread(path, func, lazy_pixels=True)
        if ds is None:
            raise ValueError(f"{func}: {path}: not a DICOM file (no DICOM file header)")
        headers = [(path, _qdess_header(ds, path, func))]
    first_file, first = headers[0]
    for file, values in headers[1:]:
        for name in ("tr", "flip_angle", "gl_area", "tg"):
            if not np.isclose(values[name], first[name], rtol=1e-6):
                raise ValueError(f"{func}: {file}: {name} {values[name]:g} differs from "
                                 f"{first[name]:g} of {first_file.name}; the folder holds more "
                                 "than one qDESS acquisition")
    echo_times = tuple(sorted({values["te"] for _, values in headers}))
    return QDessParameters(tr=first["tr"], te=echo_times[0], echo_times=echo_times,
                           flip_angle=first["flip_angle"], gl_area=first["gl_area"],
                           tg=first["tg"], files=tuple(file for file, _ in headers))
