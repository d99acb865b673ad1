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
    demo.add_argument("--checkpoint", default=None,
                      help="also reconstruct with a model trained by `mskjax train recon`")
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
    trainer = commands.add_parser("train", help="train learned models")
    train_commands = trainer.add_subparsers(dest="train_command", required=True)
    tr = train_commands.add_parser(
        "recon", help="train a learned reconstruction on a make-kspace-set folder",
        description="Train a reconstruction net (unet, e2e-varnet, varnet, modl) on the train/ "
                    "slices of a folder made by `mskjax data make-kspace-set`, with masks, "
                    "coils, phase, flips, scale and noise drawn on the device every step. "
                    "Checkpoints, metrics.jsonl and summary.json go into --out; running the "
                    "same command again resumes the run.")
    tr.add_argument("--model", required=True, choices=["unet", "e2e-varnet", "varnet", "modl"])
    tr.add_argument("--data", required=True, help="a folder made by make-kspace-set")
    tr.add_argument("--out", required=True, help="the run's folder (resumed if it holds one)")
    tr.add_argument("--config", nargs="*", metavar="KEY=VALUE",
                    help="model options, e.g. num_cascades=4 chans=8")
    tr.add_argument("--acceleration", type=int, default=4)
    tr.add_argument("--center-fraction", type=float, default=0.08)
    tr.add_argument("--mask", choices=["equispaced", "random"], default="equispaced")
    tr.add_argument("--steps", type=int, default=1000, help="the last step (default 1000)")
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this many minutes of training")
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-augment", action="store_true", help="draw only the masks")
    tr.add_argument("--patch-rows", type=int, default=None,
                    help="train on random bands of this many image rows (readout axis)")
    tr.add_argument("--init", default=None, help="a checkpoint of the same model to start from")
    tr.add_argument("--checkpoint-every", type=int, default=100)
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluator = commands.add_parser("eval", help="evaluate trained models")
    eval_commands = evaluator.add_subparsers(dest="eval_command", required=True)
    ev = eval_commands.add_parser(
        "recon", help="score a trained reconstruction against zero-filled and CG-SENSE",
        description="Undersample every slice of the val/ files of --data (or of --data itself) "
                    "with fastMRI's mask for that file, reconstruct it with the checkpoint's "
                    "model, zero-filled and CG-SENSE (ESPIRiT maps), and print NMSE, PSNR and "
                    "SSIM (fastMRI's definitions) per volume and overall.")
    ev.add_argument("--checkpoint", required=True, help="a `train recon` --out folder")
    ev.add_argument("--data", required=True, help="a folder of fully sampled fastMRI files")
    ev.add_argument("--acceleration", type=int, default=4)
    ev.add_argument("--center-fraction", type=float, default=0.08)
    ev.add_argument("--mask", choices=["equispaced", "random"], default="equispaced")
    ev.add_argument("--cg-lamda", type=float, default=0.01)
    ev.add_argument("--l1-lamda", type=float, default=None,
                    help="also run L1-wavelet with this lamda")
    ev.add_argument("--json", default=None, dest="json_path", help="write the scores here")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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
                              seed=args.seed, checkpoint=args.checkpoint,
                              progress=not args.no_progress)
        except (ValueError, TypeError, OSError) as err:
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
    if args.command == "train" and args.train_command == "recon":
        try:
            from ._learned import parse_config
            from ._train_recon import train_recon
        except ImportError as err:
            return _missing(err)

        try:
            summary = train_recon(
                data=args.data, out=args.out, model=args.model,
                config=parse_config(args.config, "mskjax train recon"),
                acceleration=args.acceleration, center_fraction=args.center_fraction,
                mask=args.mask, steps=args.steps, max_minutes=args.max_minutes,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                augment=not args.no_augment, patch_rows=args.patch_rows, init=args.init,
                checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
        except (ValueError, TypeError, OSError) as err:
            print(f"mskjax: error: {err}", file=sys.stderr)
            return 2
        print(f"trained {summary['model']} to step {summary['steps']} "
              f"(stopped by {summary['stopped_by']}); final loss "
              f"{summary['final_loss_mean_of_last_20']:.4f}; wrote {args.out}")
    if args.command == "eval" and args.eval_command == "recon":
        try:
            from ._evaluate import format_table
            from ._train_recon import evaluate_recon
        except ImportError as err:
            return _missing(err)

        try:
            result = evaluate_recon(
                checkpoint=args.checkpoint, data=args.data, acceleration=args.acceleration,
                center_fraction=args.center_fraction, mask=args.mask, cg_lamda=args.cg_lamda,
                l1_lamda=args.l1_lamda, json_path=args.json_path,
                progress=not args.no_progress)
        except (ValueError, TypeError, OSError) as err:
            print(f"mskjax: error: {err}", file=sys.stderr)
            return 2
        print(format_table(result))
        if args.json_path:
            print(f"wrote {args.json_path}")
    return 0
