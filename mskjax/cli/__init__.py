"""The ``mskjax`` command."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ._distributed import add_distributed_arguments
from ._quant import add_quant_parser
from ._recon import add_recon_parser


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``mskjax: error: mskjax demo: ...``, exit 2)."""

    def error(self, message):
        self.exit(2, f"mskjax: error: {self.prog}: {' '.join(message.split())}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mskjax", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mskjax {__version__}")
    parser.add_argument("--debug", action="store_true", dest="global_debug",
                        help="show the traceback of an error instead of one line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="simulate 8-coil k-space, undersample 4x, reconstruct, score and plot",
        description="Simulate multi-coil k-space from an image (a slice of the simulated knee "
                    "phantom, or --data), undersample it with a fastMRI equispaced mask, "
                    "reconstruct it (zero-filled, CG-SENSE and L1-wavelet with ESPIRiT maps), "
                    "and write figure.png and metrics.json into --out. With --trajectory "
                    "radial or spiral the k-space is non-Cartesian (the NUFFT), the maps come "
                    "from ESPIRiT on its gridded centre, and the reconstructions are gridding, "
                    "NUFFT CG-SENSE and L1-wavelet, density compensated.")
    demo.add_argument("--data", help="a .npy or .npz image, or a (slices, rows, cols) stack "
                                     "such as knee_axial_rss.npz")
    demo.add_argument("--slice", type=int, default=None, dest="slice_index",
                      help="slice of a 3D stack (default: the middle one)")
    demo.add_argument("--out", default="mskjax-demo", help="output folder (default ./mskjax-demo)")
    demo.add_argument("--coils", type=int, default=8, dest="num_coils")
    demo.add_argument("--acceleration", type=int, default=None,
                      help="Cartesian undersampling (default 4)")
    demo.add_argument("--center-fraction", type=float, default=None,
                      help="Cartesian fully sampled centre (default 0.08)")
    demo.add_argument("--trajectory", choices=["cartesian", "radial", "spiral"],
                      default="cartesian",
                      help="k-space sampling (default cartesian; radial: golden-angle spokes; "
                           "spiral: variable-density interleaves)")
    demo.add_argument("--spokes", type=int, default=None,
                      help="radial: the number of spokes (default a quarter of the pi/2 x n "
                           "of the Nyquist rate, 4x undersampled)")
    demo.add_argument("--interleaves", type=int, default=None,
                      help="spiral: the number of interleaves (default 16, 4x undersampled "
                           "at the edge of k-space)")
    demo.add_argument("--density", choices=["ramp", "pipe-menon"], default=None,
                      help="non-Cartesian density compensation (default ramp for radial, "
                           "pipe-menon for spiral)")
    demo.add_argument("--snr-db", type=float, default=30.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--checkpoint", default=None,
                      help="also reconstruct with a model trained by `mskjax train recon`")
    demo.add_argument("--seg-steps", type=int, default=1000,
                      help="steps of the small segmentation U-Net trained by the demo "
                           "(0: no segmentation and T2 map)")
    demo.add_argument("--seg-checkpoint", default=None,
                      help="segment with a 2D model trained by `mskjax train seg` instead")
    demo.add_argument("--cls-steps", type=int, default=300,
                      help="steps of the small lesion classifier trained by the demo "
                           "(0: no detection)")
    demo.add_argument("--cls-checkpoint", default=None,
                      help="detect lesions with a binary 2D model trained by `mskjax train cls`")
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
    kset.add_argument("--out", required=True, help="output folder (new or empty)")
    kset.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty --out folder (as a whole, once the new set is complete)")
    kset.add_argument("--coils", type=int, default=8, dest="num_coils")
    kset.add_argument("--snr-db", type=float, default=30.0)
    kset.add_argument("--seed", type=int, default=0)
    kset.add_argument("--split", choices=["subject", "none"], default="subject")
    kset.add_argument("--val-fraction", type=float, default=0.25)
    kset.add_argument("--recon-size", type=int, nargs=2, default=[320, 320],
                      metavar=("ROWS", "COLS"))
    kset.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sset = data_commands.add_parser(
        "make-seg-set", help="simulate labelled knees as NIfTI image/label pairs",
        description="Draw simulated knees (mskjax.sim.segmentation_example: anatomy, "
                    "pathology, tissue jitter, elastic deformation and, unless --clean, partial "
                    "volume, receive bias, Gibbs ringing and Rician noise) and write each as a "
                    "NIfTI image and label pair into train/ and test/ (held-out subjects).")
    sset.add_argument("--out", required=True, help="output folder (new or empty)")
    sset.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty --out folder (as a whole, once the new set is complete)")
    sset.add_argument("--train-subjects", type=int, default=16)
    sset.add_argument("--test-subjects", type=int, default=4)
    sset.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128],
                      metavar=("LR", "SI", "AP"))
    sset.add_argument("--contrasts", default="pd_fs",
                      help="comma-separated: t1_spgr, pd_fs, qdess; one drawn per subject")
    sset.add_argument("--clean", action="store_true", help="the clean (not realistic) rendering")
    sset.add_argument("--seed", type=int, default=0)
    sset.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cset = data_commands.add_parser(
        "make-cls-set", help="simulate a labelled classification set, split by subject",
        description="Draw a labelled set for a detection or grading task and write train.npz, "
                    "test.npz and manifest.json (held-out subjects in test): 'radiograph' "
                    "(KL grade, ordinal), 'radiograph-jsw' (minimum joint-space width in mm, "
                    "regression), 'lesion' (cartilage lesion on a sagittal MR slice, binary, "
                    "graded conspicuity), 'tear' (meniscal tear on sagittal, coronal and axial "
                    "stacks, binary) or 'real-lesion' (lesions inserted into the real knee "
                    "images of --images, binary).")
    cset.add_argument("--source", required=True,
                      choices=["radiograph", "radiograph-jsw", "lesion", "tear", "real-lesion"])
    cset.add_argument("--out", required=True, help="output folder (new or empty)")
    cset.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty --out folder (as a whole, once the new set is complete)")
    cset.add_argument("--train-subjects", type=int, default=400)
    cset.add_argument("--test-subjects", type=int, default=200)
    cset.add_argument("--size", type=int, default=None,
                      help="image size in pixels (default by source)")
    cset.add_argument("--images", default=None,
                      help="real-lesion: an npz with 'images' and 'subject' (default "
                           "knee_axial_rss.npz from the data folder)")
    cset.add_argument("--per-image", type=int, default=8,
                      help="real-lesion: lesions (and as many shams) per image and kind")
    cset.add_argument("--conspicuity", type=float, nargs=2, default=[0.0, 1.0],
                      metavar=("LOW", "HIGH"), help="range the conspicuity is drawn from")
    cset.add_argument("--seed", type=int, default=0)
    cset.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    trainer = commands.add_parser("train", help="train learned models")
    train_commands = trainer.add_subparsers(dest="train_command", required=True)
    tr = train_commands.add_parser(
        "recon", help="train a learned reconstruction on a make-kspace-set folder",
        description="Train a reconstruction net (unet, e2e-varnet, varnet, modl, gancs) on the train/ "
                    "slices of a folder made by `mskjax data make-kspace-set`, with masks, "
                    "coils, phase, flips, scale and noise drawn on the device every step. "
                    "Checkpoints, metrics.jsonl and summary.json go into --out; running the "
                    "same command again resumes the run.")
    tr.add_argument("--model", required=True,
                    choices=["unet", "e2e-varnet", "varnet", "modl", "gancs"])
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
    tr.add_argument("--adversarial-weight", type=float, default=None,
                    help="gancs: weight of the LSGAN loss (default 0.01; 0: pixel loss only)")
    tr.add_argument("--discriminator-steps", type=int, default=None,
                    help="gancs: discriminator updates per generator step (default 1)")
    tr.add_argument("--pixel-loss", choices=["l1", "l2", "ssim"], default=None,
                    help="gancs: the pixel-wise loss (default l1)")
    tr.add_argument("--discriminator-config", nargs="*", metavar="KEY=VALUE",
                    help="gancs: PatchDiscriminator options (default chans=16 num_layers=3)")
    tr.add_argument("--checkpoint-every", type=int, default=100)
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_distributed_arguments(tr)

    ts = train_commands.add_parser(
        "seg", help="train a tissue segmentation net on a make-seg-set folder",
        description="Train a segmentation net (unet, segnet on sagittal slices; unet3d on 3D "
                    "patches; triplanar per voxel) on the train/ NIfTI pairs of --data with the "
                    "soft Dice + cross-entropy loss. Checkpoints, metrics.jsonl and "
                    "summary.json go into --out; the same command again resumes the run.")
    ts.add_argument("--model", required=True, choices=["unet", "segnet", "unet3d", "triplanar"])
    ts.add_argument("--data", required=True, help="a folder made by make-seg-set")
    ts.add_argument("--out", required=True, help="the run's folder (resumed if it holds one)")
    ts.add_argument("--config", nargs="*", metavar="KEY=VALUE",
                    help="model options, e.g. chans=32 num_pool_layers=4")
    ts.add_argument("--num-classes", type=int, default=16)
    ts.add_argument("--steps", type=int, default=2000, help="the last step (default 2000)")
    ts.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this many minutes of training")
    ts.add_argument("--batch-size", type=int, default=8)
    ts.add_argument("--lr", type=float, default=1e-3)
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument("--crop", type=int, default=None,
                    help="train the 2D models on random square crops of this many pixels")
    ts.add_argument("--checkpoint-every", type=int, default=200)
    ts.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_distributed_arguments(ts)

    tc = train_commands.add_parser(
        "cls", help="train a classifier on a make-cls-set folder",
        description="Train a classifier (ResNet, DenseNet, 3D CNN or the MRNet-layout "
                    "multi-view net) on the train split of --data with the loss of its task "
                    "(binary, multiclass, ordinal or regression), classes balanced. "
                    "Checkpoints, metrics.jsonl and summary.json go into --out; the same "
                    "command again resumes the run.")
    tc.add_argument("--model", required=True,
                    choices=["resnet18", "resnet34", "resnet50", "resnet-small", "densenet121",
                             "densenet-small", "cnn3d", "multiview"])
    tc.add_argument("--data", required=True, help="a folder made by make-cls-set")
    tc.add_argument("--out", required=True, help="the run's folder (resumed if it holds one)")
    tc.add_argument("--config", nargs="*", metavar="KEY=VALUE",
                    help="backbone options, e.g. width=32 norm=batch")
    tc.add_argument("--steps", type=int, default=2000, help="the last step (default 2000)")
    tc.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this many minutes of training")
    tc.add_argument("--batch-size", type=int, default=16)
    tc.add_argument("--lr", type=float, default=1e-3)
    tc.add_argument("--drop-prob", type=float, default=0.0)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--init-backbone", default=None,
                    help="start the backbone from this `train cls` run (transfer learning)")
    tc.add_argument("--backbone-lr", type=float, default=None,
                    help="with --init-backbone: the backbone's learning rate (0 freezes it)")
    tc.add_argument("--checkpoint-every", type=int, default=200)
    tc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_distributed_arguments(tc)

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
    es = eval_commands.add_parser(
        "seg", help="score a trained segmentation net on held-out subjects",
        description="Segment every test/ volume of --data with the checkpoint's model and "
                    "print Dice, HD95 and ASSD (mm) per tissue and their foreground means.")
    es.add_argument("--checkpoint", required=True, help="a `train seg` --out folder")
    es.add_argument("--data", required=True, help="a folder of NIfTI image/label pairs")
    es.add_argument("--split", default="test")
    es.add_argument("--no-clean-up", action="store_true",
                    help="skip the largest-connected-component clean-up")
    es.add_argument("--json", default=None, dest="json_path", help="write the scores here")
    es.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ec = eval_commands.add_parser(
        "cls", help="score a trained classifier on held-out subjects",
        description="Classify every example of the test split of --data and print the "
                    "statistics of its task with 95%% bootstrap intervals: ROC AUC, the Youden "
                    "point and the AUC per conspicuity bin (binary); accuracy, balanced "
                    "accuracy, quadratic kappa and the AUC of grade >= 2 (ordinal); RMSE and "
                    "MAE (regression).")
    ec.add_argument("--checkpoint", required=True, help="a `train cls` --out folder")
    ec.add_argument("--data", required=True, help="a folder made by make-cls-set")
    ec.add_argument("--split", default="test")
    ec.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    ec.add_argument("--json", default=None, dest="json_path", help="write the scores here")

    cl = commands.add_parser(
        "classify", help="classify an image with a trained classifier",
        description="Classify IMAGE (.npy, .npz, NIfTI or DICOM; a stack gives its middle "
                    "slice unless --slice) with a `train cls` checkpoint, print the class "
                    "probabilities, and write the Grad-CAM map over the image with --figure.")
    cl.add_argument("image", help="the image file")
    cl.add_argument("--checkpoint", required=True, help="a `train cls` --out folder")
    cl.add_argument("--figure", default=None, help="write the activation-map PNG here")
    cl.add_argument("--slice", type=int, default=None, dest="slice_index")

    sg = commands.add_parser(
        "segment", help="segment a NIfTI volume with a trained net (NIfTI out)",
        description="Segment IMAGE (NIfTI) with a `train seg` checkpoint and write the labels "
                    "as NIfTI with the input's affine; the volume is oriented and resampled to "
                    "the training grid and back.")
    sg.add_argument("image", help="a .nii or .nii.gz volume")
    sg.add_argument("--checkpoint", required=True, help="a `train seg` --out folder")
    sg.add_argument("--out", required=True, help="the labels file (.nii.gz)")
    sg.add_argument("--refine", action="store_true",
                    help="refine the probabilities towards image edges before the argmax")
    sg.add_argument("--preview", default=None, help="also write a PNG of the middle slice")
    add_quant_parser(commands)
    add_recon_parser(commands)
    return parser


def _missing(err: ImportError) -> int:
    """One line for a command whose optional dependencies are not installed."""
    print(f"mskjax: error: {err.name or err} is not installed; the command needs "
          "pip install 'mskjax[all]'", file=sys.stderr)
    return 1


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _describe(err: BaseException) -> str:
    """The error's one-line message; a file-system error names its file and the problem."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
        return f"{where}: {err.strerror.lower()}"
    return _one_line(err) or type(err).__name__


def _exit_code(err: BaseException) -> int:
    """2 for bad usage (a bad value, a missing input), 1 for a failure."""
    if isinstance(err, (ValueError, TypeError, FileNotFoundError, NotADirectoryError,
                        IsADirectoryError)):
        return 2
    return 1


def _check_not_empty(images, func: str) -> None:
    """ValueError when the ``images`` array of the npz ``images`` holds no slices (read from
    its header; anything unreadable is left to the command's own checks)."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(images) as archive, archive.open("images.npy") as member:
            read = (np.lib.format.read_array_header_1_0
                    if np.lib.format.read_magic(member) == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape = read(member)[0]
    except Exception:  # noqa: BLE001 - not this check's to report
        return
    if not shape or shape[0] == 0:
        raise ValueError(f"{func}: --images {images} holds no images (its 'images' array has "
                         f"shape {shape}); nothing to write")


def main(argv=None) -> int:
    """Entry point of the ``mskjax`` console script and of ``python -m mskjax``.

    Every error is one line on stderr, ``mskjax: error: ...``: exit status 2 for bad usage
    (a bad flag or value, a missing or unreadable input), 1 for a failure; Ctrl-C is
    ``mskjax: interrupted`` with status 130. ``mskjax --debug ...`` shows the traceback
    instead.
    """
    args = _parser().parse_args(argv)
    debug = args.global_debug or getattr(args, "debug", False)
    args.debug = debug
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("mskjax: interrupted", file=sys.stderr)
        return 130
    except ImportError as err:
        if debug:
            raise
        return _missing(err)
    except Exception as err:  # noqa: BLE001 - one line, not a traceback, unless --debug
        if debug:
            raise
        code = _exit_code(err)
        what = _describe(err)
        if code == 1 and not isinstance(err, OSError):
            what = f"{type(err).__name__}: {what}"
        print(f"mskjax: error: {what}", file=sys.stderr)
        return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        try:
            from ._demo import run_demo
        except ImportError as err:
            return _missing(err)

        report = run_demo(data=args.data, slice_index=args.slice_index, out=args.out,
                          num_coils=args.num_coils, acceleration=args.acceleration,
                          center_fraction=args.center_fraction, snr_db=args.snr_db,
                          seed=args.seed, checkpoint=args.checkpoint,
                          seg_steps=args.seg_steps, seg_checkpoint=args.seg_checkpoint,
                          cls_steps=args.cls_steps, cls_checkpoint=args.cls_checkpoint,
                          progress=not args.no_progress, trajectory=args.trajectory,
                          spokes=args.spokes, interleaves=args.interleaves,
                          density=args.density)
        if "trajectory" in report:
            print(f"{report['input']}, {report['trajectory']['summary']}, "
                  f"{report['density']['method']} density:")
        else:
            print(f"{report['input']}, {report['mask']['acceleration']}x:")
        for name, scores in report["metrics"].items():
            print(f"  {name:<12} NMSE {scores['nmse']:.4f}  PSNR {scores['psnr_db']:.2f} dB  "
                  f"SSIM {scores['ssim']:.4f}")
        if "segmentation_t2" in report:
            seg = report["segmentation_t2"]
            dice = seg["segmentation"]["dice_per_tissue"]
            t2 = seg["t2_femoral_cartilage"]
            print(f"  segmentation Dice: femur {dice['femur']:.3f}, tibia {dice['tibia']:.3f}, "
                  f"femoral cartilage {dice['femoral_cartilage']:.3f}; femoral cartilage T2 "
                  f"{t2['predicted_mask_ms']:.1f} ms (true {t2['true_ms']:.0f} ms)")
        if "detection" in report:
            auc = report["detection"]["roc_auc"]
            print(f"  cartilage lesion detection on {report['detection']['held_out_subjects']} "
                  f"held-out slices: ROC AUC {auc['estimate']:.3f} (95% CI {auc['low']:.3f}-"
                  f"{auc['high']:.3f})")
        written = ["figure.png"] + (["segmentation_t2.png"] if "segmentation_t2" in report
                                    else []) + (["detection.png"] if "detection" in report
                                                else [])
        print(f"wrote {', '.join(f'{args.out}/{w}' for w in written)} and {args.out}/"
              "metrics.json")
    if args.command == "data" and args.data_command == "make-kspace-set":
        try:
            from ..io import make_kspace_set
        except ImportError as err:
            return _missing(err)

        _check_not_empty(args.images, "mskjax data make-kspace-set")
        manifest = make_kspace_set(
            args.images, args.out, num_coils=args.num_coils, snr_db=args.snr_db,
            seed=args.seed, split=None if args.split == "none" else "subject",
            val_fraction=args.val_fraction, recon_size=tuple(args.recon_size),
            progress=not args.no_progress, overwrite=args.overwrite)
        counts = ", ".join(f"{name}: {len(subjects)} subjects"
                           for name, subjects in manifest["splits"].items())
        print(f"wrote {len(manifest['files'])} files to {args.out} ({counts})")
    if args.command == "train" and args.train_command == "recon":
        try:
            from ._distributed import start_distributed
            from ._learned import parse_config
            from ._train_recon import train_recon
        except ImportError as err:
            return _missing(err)

        processes = start_distributed(args, "mskjax train recon")
        summary = train_recon(
            data=args.data, out=args.out, model=args.model,
            config=parse_config(args.config, "mskjax train recon"),
            acceleration=args.acceleration, center_fraction=args.center_fraction,
            mask=args.mask, steps=args.steps, max_minutes=args.max_minutes,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            augment=not args.no_augment, patch_rows=args.patch_rows, init=args.init,
            checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
            adversarial_weight=args.adversarial_weight,
            discriminator_steps=args.discriminator_steps, pixel_loss=args.pixel_loss,
            discriminator_config=(None if args.discriminator_config is None else parse_config(
                args.discriminator_config, "mskjax train recon")),
            processes=processes)
        if processes.process_id == 0:
            print(f"trained {summary['model']} to step {summary['steps']} "
                  f"(stopped by {summary['stopped_by']}); final loss "
                  f"{summary['final_loss_mean_of_last_20']:.4f}; wrote {args.out}")
    if args.command == "eval" and args.eval_command == "recon":
        try:
            from ._evaluate import format_table
            from ._train_recon import evaluate_recon
        except ImportError as err:
            return _missing(err)

        result = evaluate_recon(
            checkpoint=args.checkpoint, data=args.data, acceleration=args.acceleration,
            center_fraction=args.center_fraction, mask=args.mask, cg_lamda=args.cg_lamda,
            l1_lamda=args.l1_lamda, json_path=args.json_path,
            progress=not args.no_progress)
        print(format_table(result))
        if args.json_path:
            print(f"wrote {args.json_path}")
    if args.command == "data" and args.data_command == "make-seg-set":
        try:
            from ..io import make_segmentation_set
        except ImportError as err:
            return _missing(err)

        manifest = make_segmentation_set(
            args.out, train_subjects=args.train_subjects, test_subjects=args.test_subjects,
            shape=tuple(args.shape), contrasts=args.contrasts, realistic=not args.clean,
            seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite)
        print(f"wrote {len(manifest['subjects'])} subjects to {args.out} (train: "
              f"{len(manifest['splits']['train'])}, test: {len(manifest['splits']['test'])})")
    if args.command == "train" and args.train_command == "seg":
        try:
            from ._distributed import start_distributed
            from ._learned import parse_config
            from ._train_seg import train_seg
        except ImportError as err:
            return _missing(err)

        processes = start_distributed(args, "mskjax train seg")
        summary = train_seg(
            data=args.data, out=args.out, model=args.model,
            config=parse_config(args.config, "mskjax train seg"),
            num_classes=args.num_classes, steps=args.steps, max_minutes=args.max_minutes,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, crop=args.crop,
            checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
            processes=processes)
        if processes.process_id == 0:
            print(f"trained {summary['model']} to step {summary['steps']} "
                  f"(stopped by {summary['stopped_by']}); final loss "
                  f"{summary['final_loss_mean_of_last_20']:.4f}; wrote {args.out}")
    if args.command == "eval" and args.eval_command == "seg":
        try:
            from ._train_seg import evaluate_seg, format_seg_table
        except ImportError as err:
            return _missing(err)

        result = evaluate_seg(checkpoint=args.checkpoint, data=args.data, split=args.split,
                              clean_up=not args.no_clean_up, json_path=args.json_path,
                              progress=not args.no_progress)
        print(format_seg_table(result))
        if args.json_path:
            print(f"wrote {args.json_path}")
    if args.command == "segment":
        try:
            from ._segment import segment_file
        except ImportError as err:
            return _missing(err)

        report = segment_file(args.image, checkpoint=args.checkpoint, out=args.out,
                              refine=args.refine, preview=args.preview)
        print(f"segmented {report['input']} with {report['model']} in {report['seconds']:.1f} s;"
              f" wrote {report['output']}")
    if args.command == "data" and args.data_command == "make-cls-set":
        try:
            from ..io import make_classification_set
        except ImportError as err:
            return _missing(err)

        manifest = make_classification_set(
            args.out, source=args.source, train_subjects=args.train_subjects,
            test_subjects=args.test_subjects, size=args.size, images=args.images,
            seed=args.seed, per_image=args.per_image, conspicuity=tuple(args.conspicuity),
            progress=not args.no_progress, overwrite=args.overwrite)
        counts = ", ".join(f"{name}: {split['examples']} examples"
                           for name, split in manifest["splits"].items())
        print(f"wrote a {manifest['task']} set to {args.out} ({counts})")
    if args.command == "train" and args.train_command == "cls":
        try:
            from ._distributed import start_distributed
            from ._learned import parse_config
            from ._train_cls import train_cls
        except ImportError as err:
            return _missing(err)

        processes = start_distributed(args, "mskjax train cls")
        summary = train_cls(
            data=args.data, out=args.out, model=args.model,
            config=parse_config(args.config, "mskjax train cls"), steps=args.steps,
            max_minutes=args.max_minutes, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, drop_prob=args.drop_prob, init_backbone=args.init_backbone,
            backbone_lr=args.backbone_lr, checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress, processes=processes)
        if processes.process_id == 0:
            print(f"trained {summary['model']} to step {summary['steps']} "
                  f"(stopped by {summary['stopped_by']}); final loss "
                  f"{summary['final_loss_mean_of_last_20']:.4f}; wrote {args.out}")
    if args.command == "eval" and args.eval_command == "cls":
        try:
            from ._train_cls import evaluate_cls, format_cls_table
        except ImportError as err:
            return _missing(err)

        result = evaluate_cls(checkpoint=args.checkpoint, data=args.data, split=args.split,
                              json_path=args.json_path, num_samples=args.bootstrap)
        print(format_cls_table(result))
        if args.json_path:
            print(f"wrote {args.json_path}")
    if args.command == "classify":
        try:
            from ._train_cls import classify_file
        except ImportError as err:
            return _missing(err)

        report = classify_file(args.image, checkpoint=args.checkpoint, figure=args.figure,
                               slice_index=args.slice_index)
        probs = report.get("probabilities")
        listed = ", ".join(f"{k}: {v:.3f}" for k, v in probs.items()) if probs else ""
        print(f"{report['input']}: {report['model']} predicts {report['prediction']}"
              + (f" ({listed})" if listed else ""))
        if "figure" in report:
            print(f"wrote {report['figure']}")
    if args.command == "recon":
        try:
            from ._recon import run_recon_command
        except ImportError as err:
            return _missing(err)
        return run_recon_command(args)
    if args.command == "quant":
        try:
            from ._quant import run_quant_command
        except ImportError as err:
            return _missing(err)
        return run_quant_command(args)
    return 0
