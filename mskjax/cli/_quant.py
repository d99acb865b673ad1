"""``mskjax quant t2`` and ``mskjax quant t1rho``: relaxation maps from DICOM or npz, written as
NIfTI, PNG and JSON.

Inputs:

- DICOM: one or more folders (every DICOM image in each; not subfolders) or files. Images are
  grouped by EchoTime (GE's CubeQuant stores the spin-lock time there) and each group is
  stacked along the slice normal; the groups must cover the same slice positions.
- ``.npz``: ``images`` ``(echoes, slices, rows, cols)`` or ``(echoes, rows, cols)`` (the layout
  of a DICOM stack) and ``times`` (ms); other key names with ``--images-key``/``--times-key``.
  Optional keys: ``affine`` (4x4, for the NIfTI files), and for qDESS ``tr``, ``te``,
  ``flip_angle``, ``gl_area``, ``tg``.

``quant t2`` computes the qDESS T2 (:func:`mskjax.quant.qdess_t2`) when the DICOM files carry
GE's qDESS tags (or with ``--sequence qdess``) and fits a mono-exponential decay
(:func:`mskjax.quant.fit_relaxation`) to the echoes otherwise; ``quant t1rho`` always fits.

Outputs in ``--out``: ``<map>.nii.gz`` (float32, ms; 0 where not valid), ``<map>_valid.nii.gz``
(uint8), ``<map>.png`` (the middle slice) and ``<map>.json`` (what was done, and counts). The
NIfTI arrays are ``(cols, rows, slices)`` with a RAS affine from the DICOM geometry (from the
npz's ``affine``, else the identity). All four are written to a temporary folder first and
moved into place together, so a failure leaves no partial output and no stale mix.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

#: DOSMA's closed interval of valid qDESS T2 (ms).
QDESS_T2_RANGE = (0.0, 100.0)
_QDESS_KEYS = ("tr", "te", "flip_angle", "gl_area", "tg")


def add_quant_parser(commands) -> None:
    """Add ``quant t2`` and ``quant t1rho`` to the ``mskjax`` sub-commands."""
    quant = commands.add_parser("quant", help="quantitative maps: T2 (qDESS or multi-echo), "
                                              "T1rho")
    kinds = quant.add_subparsers(dest="quant_command", required=True)
    for kind, text in (("t2", "a T2 map from a GE qDESS series (analytic, as DOSMA) or a "
                              "multi-echo series (mono-exponential fit)"),
                       ("t1rho", "a T1rho map from spin-lock images (mono-exponential fit)")):
        p = kinds.add_parser(kind, help=text, description=(
            f"Write {kind}.nii.gz, {kind}_valid.nii.gz, {kind}.png and {kind}.json into --out "
            f"from {text}. INPUT: DICOM folders or files, or one .npz."))
        p.add_argument("inputs", nargs="+", metavar="INPUT")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--mask", default=None,
                       help="voxels to map: a NIfTI on the output grid or a .npy of the "
                            "images' (slices, rows, cols) shape; nonzero = inside")
        if kind == "t2":
            p.add_argument("--sequence", choices=["auto", "qdess", "multi-echo"],
                           default="auto", help="auto: qDESS where the files carry GE's "
                                                "qDESS tags (default)")
        p.add_argument("--method", choices=["nonlinear", "log_linear"], default="nonlinear",
                       help="fit method (multi-echo and T1rho)")
        p.add_argument("--times", type=float, nargs="+", default=None,
                       help="echo or spin-lock times (ms) of the echo groups in ascending "
                            "EchoTime order (default: the files' EchoTime)")
        p.add_argument("--noise-floor", type=float, default=None,
                       help="leave echoes at or below this signal out of the fit")
        p.add_argument("--range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                       dest="value_range",
                       help="valid map values in ms (qDESS default 0 100, as DOSMA; fits: "
                            "0 to 10x the longest time)")
        p.add_argument("--min-r2", type=float, default=None,
                       help="flag fits whose r2 is below this (DOSMA uses 0.9 for T1rho)")
        p.add_argument("--images-key", default="images", help="npz key of the images")
        p.add_argument("--times-key", default="times", help="npz key of the times")
        if kind == "t2":
            for name, unit in (("tr", "ms"), ("te", "ms, of S+"), ("flip-angle", "degrees"),
                               ("gl-area", "GE (0019,10B6)"), ("tg", "us, GE (0019,10B7)")):
                p.add_argument(f"--{name}", type=float, default=None,
                               help=f"qDESS {name} ({unit}); default from the header")
            p.add_argument("--t1", type=float, default=1200.0,
                           help="qDESS: assumed T1 in ms (default 1200, DOSMA's femoral "
                                "cartilage)")
            p.add_argument("--diffusivity", type=float, default=1.25e-9,
                           help="qDESS: assumed diffusivity in m^2/s (default 1.25e-9)")
            p.add_argument("--suppress-fat", action="store_true",
                           help="qDESS: flag S+ <= 0.15 max(S+) (DOSMA's option)")
            p.add_argument("--suppress-fluid", action="store_true",
                           help="qDESS: flag S+ - 1.2 S- <= 0.1 max(S+ - 1.2 S-)")
        p.add_argument("--debug", action="store_true", help="show tracebacks")


# ---------------------------------------------------------------------------------------------
# Reading


def _dicom_images(paths, func):
    from .. import io

    images = []
    for path in paths:
        if path.is_dir():
            files = [f for s in io.list_dicom_series(path) for f in s.files]
            if not files:
                raise ValueError(f"{func}: {path}: no DICOM images in the folder")
        else:
            files = [path]
        images += [io.read_dicom(f) for f in files]
    return images


def _dicom_stack(images, func):
    """``(volume (echoes, slices, rows, cols), echo times, RAS affine of (cols, rows, slices))``."""
    first = images[0]
    for im in images[1:]:
        if im.pixels.shape != first.pixels.shape:
            raise ValueError(f"{func}: {im.path}: image shape {im.pixels.shape} differs from "
                             f"{first.pixels.shape} of {first.path.name}")
        if (im.pixel_spacing is None) != (first.pixel_spacing is None) or (
                im.pixel_spacing is not None
                and not np.allclose(im.pixel_spacing, first.pixel_spacing, rtol=1e-4)):
            raise ValueError(f"{func}: {im.path}: pixel spacing {im.pixel_spacing} differs "
                             f"from {first.pixel_spacing} of {first.path.name}")
    no_echo = [im.path for im in images if im.echo_time is None]
    if no_echo:
        raise ValueError(f"{func}: {no_echo[0]}: the DICOM header has no EchoTime, so the "
                         "images cannot be grouped by echo")
    geometry = all(im.position is not None and im.orientation is not None for im in images)
    if geometry:
        for im in images[1:]:
            if not np.allclose(im.orientation, first.orientation, atol=1e-4):
                raise ValueError(f"{func}: {im.path}: orientation {im.orientation} differs from "
                                 f"{first.orientation} of {first.path.name}")
        normal = np.cross(first.orientation[:3], first.orientation[3:])
        key = lambda im: float(np.dot(im.position, normal))  # noqa: E731
    else:
        key = lambda im: (im.instance_number or 0, im.path.name)  # noqa: E731
    groups: dict[float, list] = {}
    for im in images:
        groups.setdefault(round(im.echo_time, 6), []).append(im)
    times = sorted(groups)
    stacks = [sorted(groups[t], key=key) for t in times]
    reference = stacks[0]
    for t, stack in zip(times, stacks):
        if len(stack) != len(reference) or (geometry and not np.allclose(
                [key(im) for im in stack], [key(im) for im in reference], atol=1e-3)):
            where = ", ".join(f"{key(im):.4g}" for im in stack) if geometry else len(stack)
            ref = (", ".join(f"{key(im):.4g}" for im in reference) if geometry
                   else len(reference))
            raise ValueError(f"{func}: the images of echo time {t:g} ms do not cover the slices "
                             f"of echo time {times[0]:g} ms (slice positions {where} against "
                             f"{ref} mm); give the files of one acquisition")
        if geometry and len(stack) > 1 and np.min(np.diff([key(im) for im in stack])) < 1e-3:
            raise ValueError(f"{func}: two images of echo time {t:g} ms share a slice position "
                             f"({stack[0].path.name}, ...): give the files of one acquisition")
    volume = np.stack([np.stack([im.pixels for im in stack]) for stack in stacks])
    return volume, tuple(times), _affine(reference, geometry)


def _affine(stack, geometry):
    """RAS affine of the ``(cols, rows, slices)`` array of a DICOM stack."""
    first = stack[0]
    row_spacing, col_spacing = first.pixel_spacing or (1.0, 1.0)
    affine = np.eye(4)
    if not geometry:
        thickness = first.slice_thickness or 1.0
        affine[:3, :3] = np.diag([col_spacing, row_spacing, thickness])
        return affine
    row_dir = np.asarray(first.orientation[:3])  # the direction in which the column index grows
    col_dir = np.asarray(first.orientation[3:])
    if len(stack) > 1:
        step = (np.asarray(stack[-1].position) - np.asarray(first.position)) / (len(stack) - 1)
    else:
        step = np.cross(row_dir, col_dir) * (first.slice_thickness or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _npz(path, images_key, times_key, func):
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {k: archive[k] for k in archive.files}
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{func}: {path}: cannot read the npz file ({err})") from err
    if images_key not in content:
        raise ValueError(f"{func}: {path}: no array named {images_key!r} (found "
                         f"{sorted(content)}); name it with --images-key")
    images = content[images_key]
    if images.ndim not in (3, 4):
        raise ValueError(f"{func}: {path}: {images_key!r} must be (echoes, rows, cols) or "
                         f"(echoes, slices, rows, cols), got shape {images.shape}")
    if images.ndim == 3:
        images = images[:, None]
    times = content.get(times_key)
    affine = content.get("affine")
    if affine is None:
        affine = np.eye(4)
    elif np.shape(affine) != (4, 4):
        raise ValueError(f"{func}: {path}: 'affine' must be 4x4, got shape {np.shape(affine)}")
    header = {k: float(content[k]) for k in _QDESS_KEYS if k in content}
    return images, times, np.asarray(affine, np.float64), header


def _mask(path, spatial, affine, func):
    """The mask as ``(slices, rows, cols)`` bool."""
    from .. import io

    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        volume = io.read_labels(path)
        array = volume.array
        if array.ndim == 2:
            array = array[..., None]
        expected = (spatial[2], spatial[1], spatial[0])
        if array.shape != expected:
            raise ValueError(f"{func}: --mask {path}: shape {array.shape} differs from the "
                             f"map's NIfTI shape {expected} (cols, rows, slices)")
        if not np.allclose(volume.affine, affine, atol=1e-3):
            raise ValueError(f"{func}: --mask {path}: its affine "
                             f"{np.round(volume.affine, 4).tolist()} differs from the images' "
                             f"{np.round(affine, 4).tolist()} (the mask is not on the map's "
                             "grid)")
        return np.transpose(array != 0, (2, 1, 0))
    if path.suffix == ".npy":
        if not path.exists():
            raise FileNotFoundError(f"{func}: --mask {path}: no such file")
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2:
            array = array[None]
        if array.shape != tuple(spatial):
            raise ValueError(f"{func}: --mask {path}: shape {array.shape} differs from the "
                             f"images' (slices, rows, cols) shape {tuple(spatial)}")
        return array != 0
    raise ValueError(f"{func}: --mask {path}: expected a .nii, .nii.gz or .npy file")


# ---------------------------------------------------------------------------------------------
# Computing and writing


def _qdess_parameters(header, args, images, func):
    """Flags first, then the npz keys or GE header, then the standard DICOM tags."""
    values = dict(header)
    if images is not None:  # DICOM
        firsts = sorted(images, key=lambda im: im.echo_time)
        values.setdefault("tr", firsts[0].repetition_time)
        values.setdefault("te", firsts[0].echo_time)
        values.setdefault("flip_angle", firsts[0].flip_angle)
    for name in _QDESS_KEYS:
        flag = getattr(args, name)
        if flag is not None:
            values[name] = flag
    missing = [name for name in _QDESS_KEYS if values.get(name) is None]
    if missing:
        flags = ", ".join(f"--{m.replace('_', '-')}" for m in missing)
        raise ValueError(f"{func}: qDESS needs {', '.join(missing)}, which the input does not "
                         f"carry (GE private tags (0019,10B6) GL area, (0019,10B7) TG); give "
                         f"{flags}")
    return values


def _figure(path, background, values, valid, *, title, label, vmax):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), constrained_layout=True)
    axes[0].imshow(background, cmap="gray", vmin=0,
                   vmax=float(np.percentile(background, 99.5)) or 1.0)
    axes[0].set_title("first image (shortest time)", fontsize=9)
    shown = np.ma.masked_where(~valid, values)
    axes[1].imshow(background, cmap="gray", vmin=0,
                   vmax=float(np.percentile(background, 99.5)) or 1.0)
    image = axes[1].imshow(shown, cmap="magma", vmin=0, vmax=vmax)
    axes[1].set_title(f"{label} (valid voxels; {valid.mean():.1%} of the slice)", fontsize=9)
    fig.colorbar(image, ax=axes[1], shrink=0.8, label=f"{label} (ms)")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def run_quant(kind, inputs, out, args) -> dict:
    """Compute the map of ``kind`` (``"t2"`` or ``"t1rho"``) and write it into ``out``."""
    import jax

    from .. import __version__, io, quant
    from ._files import write_json

    func = f"mskjax quant {kind}"
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{func}: {path}: no such file or folder")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{func}: --out {out}: exists and is not a folder")

    sequence = getattr(args, "sequence", "multi-echo") if kind == "t2" else "multi-echo"
    dicom_images = None
    header: dict = {}
    times_from_file = None
    if len(paths) == 1 and paths[0].suffix == ".npz":
        volume, times_from_file, affine, header = _npz(paths[0], args.images_key,
                                                       args.times_key, func)
        source = f"{paths[0].name}['{args.images_key}']"
        if sequence == "auto":
            sequence = "qdess" if "gl_area" in header else "multi-echo"
    else:
        if any(p.suffix == ".npz" for p in paths):
            raise ValueError(f"{func}: give one .npz file, or DICOM folders and files")
        dicom_images = _dicom_images(paths, func)
        qdess_files = set()
        if sequence in ("auto", "qdess"):
            for path in paths:
                try:
                    params = io.read_qdess_parameters(path)
                except ValueError:
                    continue
                qdess_files |= {Path(f) for f in params.files}
                header = {"gl_area": params.gl_area, "tg": params.tg}
            if qdess_files:
                dicom_images = [im for im in dicom_images if Path(im.path) in qdess_files]
                sequence = "qdess"
            elif sequence == "auto":
                sequence = "multi-echo"
        volume, times_from_file, affine = _dicom_stack(dicom_images, func)
        source = (f"{len(dicom_images)} DICOM images from "
                  + ", ".join(p.name for p in paths))

    times = args.times if args.times is not None else times_from_file
    spatial = volume.shape[1:]
    mask = None if args.mask is None else _mask(args.mask, spatial, affine, func)
    value_range = tuple(args.value_range) if args.value_range is not None else None
    report = {"kind": kind, "input": source, "shape": list(spatial)}
    if sequence == "qdess":
        if volume.shape[0] != 2:
            raise ValueError(f"{func}: qDESS needs exactly 2 echoes (S+, S-), got "
                             f"{volume.shape[0]}")
        params = _qdess_parameters(header, args, dicom_images, func)
        result = quant.qdess_t2(volume[0], volume[1], **params, t1=args.t1,
                                diffusivity=args.diffusivity,
                                t2_range=value_range or QDESS_T2_RANGE,
                                suppress_fat=args.suppress_fat,
                                suppress_fluid=args.suppress_fluid, mask=mask)
        values, valid = np.asarray(result.t2), np.asarray(result.valid)
        report["method"] = ("qDESS analytic T2 (Sveinsson et al. 2017, as DOSMA 0.1.2), "
                            f"T1 {args.t1} ms, diffusivity {args.diffusivity} m^2/s")
        report["parameters"] = params
        report["range_ms"] = list(value_range or QDESS_T2_RANGE)
        vmax = (value_range or QDESS_T2_RANGE)[1]
    else:
        if times is None:
            raise ValueError(f"{func}: the input carries no times; give --times")
        fit = quant.fit_relaxation(volume, np.asarray(times, np.float64), method=args.method,
                                   mask=mask, noise_floor=args.noise_floor,
                                   time_constant_range=value_range, min_r2=args.min_r2)
        values, valid = np.asarray(fit.time_constant), np.asarray(fit.valid)
        status = np.asarray(fit.status)
        report["method"] = f"mono-exponential fit, {args.method}"
        report["times_ms"] = [float(t) for t in np.asarray(times).ravel()]
        report["status_counts"] = {code.name: int(np.sum(status == code))
                                   for code in quant.FitStatus}
        vmax = float(np.percentile(values[valid], 99)) if valid.any() else 1.0
    report["valid_voxels"] = int(valid.sum())
    report["median_valid_ms"] = float(np.median(values[valid])) if valid.any() else None
    report["outputs"] = [f"{kind}.nii.gz", f"{kind}_valid.nii.gz", f"{kind}.png",
                         f"{kind}.json"]
    report["nifti_layout"] = "(cols, rows, slices), RAS affine"
    report["versions"] = {"mskjax": __version__, "jax": jax.__version__}

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=out))
    try:
        nifti = np.transpose(values.astype(np.float32), (2, 1, 0))
        io.write_nifti(staging / f"{kind}.nii.gz", nifti, affine=affine)
        io.write_nifti(staging / f"{kind}_valid.nii.gz",
                       np.transpose(valid, (2, 1, 0)).astype(np.uint8), affine=affine)
        middle = spatial[0] // 2
        label = "T2" if kind == "t2" else "T1rho"
        _figure(staging / f"{kind}.png", np.asarray(volume[0, middle], np.float32),
                values[middle], valid[middle], label=label, vmax=vmax,
                title=f"{label}: {source}, slice {middle + 1} of {spatial[0]}")
        write_json(staging / f"{kind}.json", report)
        for name in report["outputs"]:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _one_line(err) -> str:
    return " ".join(str(err).split())


def run_quant_command(args: argparse.Namespace) -> int:
    """Run a parsed ``mskjax quant`` command; one line per error (exit 2 bad input, 1 failure)."""
    kind = args.quant_command
    try:
        report = run_quant(kind, args.inputs, args.out, args)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError,
            IsADirectoryError) as err:
        if args.debug:
            raise
        print(f"mskjax: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one line, not a traceback, unless --debug
        if args.debug:
            raise
        print(f"mskjax: error: mskjax quant {kind}: {type(err).__name__}: {_one_line(err)}",
              file=sys.stderr)
        return 1
    median = report["median_valid_ms"]
    print(f"{kind}: {report['method']}; {report['valid_voxels']} valid voxels"
          + (f", median {median:.2f} ms" if median is not None else "")
          + f"; wrote {', '.join(report['outputs'])} to {args.out}")
    return 0
