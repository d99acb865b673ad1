"""The ``mskjax`` command."""

from __future__ import annotations

import argparse
import sys

from .. import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mskjax", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mskjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="simulate 8-coil k-space, undersample 4x, reconstruct, score and plot",
        description="Simulate multi-coil k-space from an image (a slice of the simulated knee "
                    "phantom, or --data), undersample it with a fastMRI equispaced mask, "
                    "reconstruct it (zero-filled, CG-SENSE and L1-wavelet with ESPIRiT maps), "
                    "and write figure.png and metrics.json into --out.")
    demo.add_argument("--data", help="a .npy or .npz image, or a (slices, rows, cols) stack "
                                     "such as knee_axial_rss.npz")
    demo.add_argument("--slice", type=int, default=None, dest="slice_index",
                      help="slice of a 3D stack (default: the middle one)")
    demo.add_argument("--out", default="mskjax-demo", help="output folder (default ./mskjax-demo)")
    demo.add_argument("--coils", type=int, default=8, dest="num_coils")
    demo.add_argument("--acceleration", type=int, default=4)
    demo.add_argument("--center-fraction", type=float, default=0.08)
    demo.add_argument("--snr-db", type=float, default=30.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    data = commands.add_parser("data", help="build data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    kset = data_commands.add_parser(
        "make-kspace-set", help="simulate a fastMRI-format multi-coil set from an npz of images",
        description="Turn an npz of images (an 'images' (slices, rows, cols) array and a "
                    "'subject' array, like knee_axial_rss.npz) into fastMRI HDF5 files with "
                    "simulated multi-coil k-space, one file per subject, split by subject into "
                    "train/ and val/ (or one folder with --split none).")
    kset.add_argument("--images", required=True, help="input .npz with 'images' and 'subject'")
    kset.add_argument("--out", required=True, help="output folder")
    kset.add_argument("--coils", type=int, default=8, dest="num_coils")
    kset.add_argument("--snr-db", type=float, default=30.0)
    kset.add_argument("--seed", type=int, default=0)
    kset.add_argument("--split", choices=["subject", "none"], default="subject")
    kset.add_argument("--val-fraction", type=float, default=0.25)
    kset.add_argument("--recon-size", type=int, nargs=2, default=[320, 320],
                      metavar=("ROWS", "COLS"))
    kset.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _missing(err: ImportError) -> int:
    """One line for a command whose optional dependencies are not installed."""
    print(f"mskjax: error: {err.name or err} is not installed; the command needs "
          "pip install 'mskjax[all]'", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    """Entry point of the ``mskjax`` console script and of ``python -m mskjax``."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        try:
            from ._demo import run_demo
        except ImportError as err:
            return _missing(err)

        try:
            report = run_demo(data=args.data, slice_index=args.slice_index, out=args.out,
                              num_coils=args.num_coils, acceleration=args.acceleration,
                              center_fraction=args.center_fraction, snr_db=args.snr_db,
                              seed=args.seed, progress=not args.no_progress)
        except (ValueError, TypeError, FileNotFoundError) as err:
            print(f"mskjax: error: {err}", file=sys.stderr)
            return 2
        print(f"{report['input']}, {args.acceleration}x:")
        for name, scores in report["metrics"].items():
            print(f"  {name:<12} NMSE {scores['nmse']:.4f}  PSNR {scores['psnr_db']:.2f} dB  "
                  f"SSIM {scores['ssim']:.4f}")
        print(f"wrote {args.out}/figure.png and {args.out}/metrics.json")
    if args.command == "data" and args.data_command == "make-kspace-set":
        try:
            from ..io import make_kspace_set
        except ImportError as err:
            return _missing(err)

        try:
            manifest = make_kspace_set(
                args.images, args.out, num_coils=args.num_coils, snr_db=args.snr_db,
                seed=args.seed, split=None if args.split == "none" else "subject",
                val_fraction=args.val_fraction, recon_size=tuple(args.recon_size),
                progress=not args.no_progress)
        except (ValueError, TypeError, FileNotFoundError) as err:
            print(f"mskjax: error: {err}", file=sys.stderr)
            return 2
        counts = ", ".join(f"{name}: {len(subjects)} subjects"
                           for name, subjects in manifest["splits"].items())
        print(f"wrote {len(manifest['files'])} files to {args.out} ({counts})")
    return 0
