"""``mskjax recon``: reconstruct every fastMRI file of a folder, the slices sharded over devices.

Input: the multi-coil Cartesian ``.h5`` files of ``--data`` (fastMRI's layout, read with
:func:`mskjax.io.read_fastmri`). A file with a ``mask`` dataset (fastMRI's test and challenge
files) holds undersampled k-space and is reconstructed as it is, with its
``num_low_frequency`` attribute (or, where absent, the width of the sampled block around the
centre column, as fastMRI's VarNet derives it). A fully sampled file is undersampled
retrospectively with fastMRI's mask for that file (seed ``tuple(map(ord, fname))``, as
fastMRI's data transforms and ``mskjax eval recon`` do), so the same command always draws the
same masks.

Output: one HDF5 file per input, with the input's file name, holding ``reconstruction``
float32 ``(slices, rows, cols)``: the magnitude image in the k-space's units, centre-cropped
(or zero-padded) to the recon matrix of the file's ISMRMRD header (320 x 320 for fastMRI's
knees): the layout ``fastmri.save_reconstructions`` writes and ``fastmri.evaluate`` reads.
Each file is written to a temporary name beside it and renamed when complete; a rerun skips
the files already in ``--out`` (``--overwrite`` redoes them). ``recon_summary.json`` records
the method, the settings and the seconds per file.

The slices of a volume go through :func:`mskjax.recon.map_slices` (one slice at a time on
each device, the slices split over the devices by ``jax.shard_map``, :func:`over_devices`) in
one jitted function per method and number of centre lines, which JAX compiles once per k-space shape and reuses for every file
of that shape.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

# The numerical modules (jax, h5py, mskjax's layers) are imported where they are used, so that
# `mskjax --help` and the other commands do not pay for them.

_FUNC = "mskjax recon"
#: ``--method`` names of the classical reconstructions and their names in ``classical_methods``.
CLASSICAL = {"zero-filled": "zero-filled", "cg-sense": "CG-SENSE", "l1-wavelet": "L1-wavelet"}
#: L1-wavelet's default lamda, in units of the zero-filled image's maximum (as the demo's).
L1_LAMDA = 0.002
SUMMARY = "recon_summary.json"
#: A temporary file of :func:`mskjax.io.atomic_path`: ``.<stem>.<12 hex>.tmp.h5``.
_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{12}\.tmp\.h5$")


def add_recon_parser(commands) -> None:
    """Add ``recon`` to the ``mskjax`` sub-commands."""
    p = commands.add_parser(
        "recon", help="reconstruct every fastMRI file of a folder (fastMRI's output layout)",
        description="Reconstruct every multi-coil fastMRI .h5 file of --data with a classical "
                    "method or a model trained by `mskjax train recon`, and write one file "
                    "per input into --out with a 'reconstruction' (slices, rows, cols) "
                    "dataset cropped to the header's recon matrix, as "
                    "fastmri.save_reconstructions does. Files with a 'mask' are used as they "
                    "are; fully sampled files are undersampled with fastMRI's mask for the "
                    "file name. The slices are split over the local devices. Files already "
                    "in --out are skipped, so an interrupted run resumes.")
    p.add_argument("--method", required=True,
                   help="zero-filled, cg-sense, l1-wavelet, or the --out folder (or "
                        "checkpoints/ folder) of `mskjax train recon`")
    p.add_argument("--data", required=True, help="a folder of fastMRI .h5 files")
    p.add_argument("--out", required=True, help="the output folder (created; resumed)")
    p.add_argument("--acceleration", type=int, default=4,
                   help="retrospective undersampling of fully sampled files (default 4)")
    p.add_argument("--center-fraction", type=float, default=0.08)
    p.add_argument("--mask", choices=["equispaced", "random"], default="equispaced")
    p.add_argument("--cg-lamda", type=float, default=0.01,
                   help="CG-SENSE's Tikhonov weight, relative to A^H A (default 0.01)")
    p.add_argument("--l1-lamda", type=float, default=L1_LAMDA,
                   help="L1-wavelet's weight in units of the zero-filled image's maximum "
                        f"(default {L1_LAMDA})")
    p.add_argument("--devices", type=int, default=None,
                   help="use the first N local devices (default all); on CPU start with "
                        "XLA_FLAGS=--xla_force_host_platform_device_count=N")
    p.add_argument("--overwrite", action="store_true",
                   help="reconstruct again the files already in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    from ._distributed import add_distributed_arguments

    # Several processes: each reconstructs its share of the sorted files on its own devices.
    add_distributed_arguments(p)


# --------------------------------------------------------------------------- methods


def _is_checkpoint(method: str) -> bool:
    return method not in CLASSICAL


def resolve_method(method: str, *, cg_lamda: float, l1_lamda: float,
                   func: str = _FUNC) -> tuple[Callable, dict]:
    """``(fn, description)``: ``fn(kspace (coils, rows, cols), mask (cols,), num_low) -> image
    (rows, cols)`` in the k-space's units, for a classical name or a ``train recon`` folder."""
    if not isinstance(method, str) or not method:
        raise ValueError(f"{func}: --method must be a name or a folder, got {method!r}")
    if method in CLASSICAL:
        from ._evaluate import classical_methods

        for name, value in (("--cg-lamda", cg_lamda), ("--l1-lamda", l1_lamda)):
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{func}: {name} must be a finite number >= 0, got {value!r}")
        fn = classical_methods(cg_lamda=cg_lamda, l1_lamda=l1_lamda)[CLASSICAL[method]]
        settings = {"zero-filled": {},
                    "cg-sense": {"lamda": cg_lamda, "max_iter": 30, "maps": "ESPIRiT"},
                    "l1-wavelet": {"lamda": l1_lamda, "max_iter": 50, "maps": "ESPIRiT",
                                   "wavelet": "db4"}}[method]
        return fn, {"method": method, "kind": "classical", **settings}
    path = Path(method)
    if not path.exists():
        raise ValueError(f"{func}: unknown method {method!r}; choose zero-filled, cg-sense, "
                         "l1-wavelet or the folder of a model trained by `mskjax train recon`")
    if not path.is_dir():
        raise ValueError(f"{func}: --method {method}: not a folder; give the --out folder of "
                         "`mskjax train recon`")
    from .. import train
    from ._run import checkpoint_folder
    from ._train_recon import learned_method, load_trained

    folder = checkpoint_folder(path, func, "mskjax train recon")
    config = train.read_checkpoint_config(folder)
    trained = config.get("train") if isinstance(config, dict) else None
    if not isinstance(trained, dict) or "acceleration" not in trained:
        name = (config.get("model") or {}).get("name") if isinstance(config, dict) else None
        raise ValueError(f"{func}: {method} holds a {name!r} model that is not a "
                         "reconstruction model (made by `mskjax train seg` or `train cls`?); "
                         "give the folder of `mskjax train recon`")
    name, net, config = load_trained(path, func)
    return learned_method(name, net), {
        "method": str(path.resolve()), "kind": "checkpoint", "model": name,
        "config": config.get("model", {}).get("kwargs"), "step": config.get("step"),
        "trained": config.get("train")}


def over_devices(fn: Callable, devices) -> Callable:
    """``mapped(kspace, mask)``: :func:`mskjax.recon.map_slices` of ``fn``, the slices split
    evenly over ``devices``."""
    from .. import recon

    return recon.map_slices(fn, devices=list(devices))


class SliceReconstructor:
    """Reconstruct a volume slice by slice on the devices (:func:`over_devices`), jitted.

    One jitted function per number of centre lines (a static argument of the maps), which
    JAX compiles once per k-space shape; ``traces`` counts the compilations.
    """

    def __init__(self, fn: Callable, *, devices):
        self.fn = fn
        self.devices = list(devices)
        self.traces = 0
        self._jitted: dict[int, Callable] = {}

    def __call__(self, kspace: np.ndarray, mask: np.ndarray, num_low: int) -> np.ndarray:
        """``kspace`` ``(slices, coils, rows, cols)``, ``mask`` ``(slices, cols)`` ->
        float32 ``(slices, rows, cols)``."""
        import jax

        if num_low not in self._jitted:
            def one(k, m, num_low=num_low):
                self.traces += 1  # runs when JAX traces, once per compilation
                return self.fn(k, m, num_low)

            self._jitted[num_low] = jax.jit(over_devices(one, self.devices))
        out = self._jitted[num_low](kspace, mask)
        return np.asarray(jax.block_until_ready(out), np.float32)


# --------------------------------------------------------------------------- files


def input_files(data, func: str = _FUNC) -> list[Path]:
    """The sorted ``.h5`` files of ``data`` (hidden files left out); only those a set's
    ``manifest.json`` (in ``data`` or its parent, :func:`mskjax.io.make_kspace_set`) lists
    when there is one."""
    folder = Path(data)
    if not folder.exists():
        raise FileNotFoundError(f"{func}: --data {folder}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"{func}: --data {folder}: not a folder")
    from ..io import manifest_files

    try:
        manifest, listed = manifest_files(folder)
    except ValueError as err:
        raise ValueError(f"{func}: --data {folder}: {err}") from err
    if manifest is not None:  # a set's manifest: only the files it lists (as every reader)
        missing = [p.name for p in listed if not p.is_file()]
        if missing:
            raise ValueError(f"{func}: {manifest} lists {missing[:3]}, which are missing; the "
                             "set is incomplete")
        return listed
    files = sorted(p for p in folder.glob("*.h5") if not p.name.startswith(".") and p.is_file())
    if not files:
        subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.h5")))
        hint = f"; its subfolders {subs} hold some, pass one of them" if subs else ""
        raise ValueError(f"{func}: --data {folder}: no fastMRI .h5 files{hint}")
    return files


def check_file(path: Path, func: str = _FUNC) -> dict:
    """The facts about one input needed before reconstructing it, checked early."""
    from ..io import read_fastmri

    try:
        with read_fastmri(path) as f:
            if f.noncartesian:
                raise ValueError(f"{func}: {path}: non-Cartesian k-space (a trajectory); this "
                                 "command reconstructs Cartesian files")
            if not f.multicoil:
                raise ValueError(f"{func}: {path}: single-coil k-space (slices, rows, cols); "
                                 "the reconstructions need multi-coil data (slices, coils, "
                                 "rows, cols)")
            rows, cols = (int(n) for n in f.header.recon_matrix[:2])
            return {"slices": f.num_slices, "shape": tuple(f.kspace.shape),
                    "recon_size": (rows, cols), "undersampled": f.mask is not None}
    except ValueError as err:
        if str(err).startswith(func):
            raise
        raise ValueError(f"{func}: {err}") from err


def low_frequencies_of(mask: np.ndarray) -> int:
    """The number of sampled centre columns of a ``(cols,)`` mask, as fastMRI's VarNet derives
    it: twice the distance from the centre column to the nearer unsampled one (at least 1)."""
    mask = np.asarray(mask, bool)
    centre = mask.shape[-1] // 2
    left = np.argmin(mask[:centre][::-1]) if not mask[:centre].all() else centre
    right = np.argmin(mask[centre:]) if not mask[centre:].all() else mask.shape[-1] - centre
    return max(2 * int(min(left, right)), 1)


def read_volume(path: Path, *, acceleration: int, center_fraction: float, mask: str,
                func: str = _FUNC) -> tuple[np.ndarray, np.ndarray, int, str]:
    """``(kspace (slices, coils, rows, cols), mask (slices, cols), num_low, sampling)``.

    A file with a ``mask`` is used as it is; a fully sampled one is undersampled with
    fastMRI's mask for its name (the same for every slice, as fastMRI's transforms draw it).
    """
    from ..io import read_fastmri
    from ..sampling import equispaced_mask, random_mask

    with read_fastmri(path) as f:
        kspace = np.asarray(f.kspace[...])
        sampled = None if f.mask is None else np.asarray(f.mask, bool)
        attrs = f.attrs
    if not np.all(np.isfinite(kspace)):
        raise ValueError(f"{func}: {path}: k-space holds NaN or infinity")
    if sampled is not None:
        num_low = attrs.get("num_low_frequency")
        if num_low is None or int(num_low) <= 0:
            num_low = low_frequencies_of(sampled)
        sampling = "file"
    else:
        make = equispaced_mask if mask == "equispaced" else random_mask
        drawn, num_low = make(kspace.shape[1:], center_fraction=center_fraction,
                              acceleration=acceleration, seed=tuple(map(ord, path.name)))
        sampled = np.broadcast_to(np.asarray(drawn, bool), kspace.shape[1:])[0, 0]
        kspace = np.where(sampled, kspace, np.zeros((), kspace.dtype))
        sampling = "retrospective"
    masks = np.broadcast_to(sampled, (kspace.shape[0], kspace.shape[-1]))
    return kspace, np.ascontiguousarray(masks), int(num_low), sampling


def write_reconstruction(path: Path, image: np.ndarray) -> None:
    """``image`` as the ``reconstruction`` dataset of a new HDF5 file, atomically."""
    import h5py

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=np.asarray(image, np.float32))


def remove_stale_temporaries(out: Path, names: set[str]) -> list[str]:
    """Remove the temporary files an interrupted (killed) run left for ``names`` in ``out``."""
    removed = []
    for tmp in out.glob(".*.tmp.h5"):
        found = _TEMPORARY.match(tmp.name)
        if found and f"{found['stem']}.h5" in names:
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def _check_out(out, data: Path, func: str) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{func}: --out {out} exists and is a file")
    if out.exists() and out.resolve() == data.resolve():
        raise ValueError(f"{func}: --out {out} is the --data folder; the outputs have the "
                         "inputs' names, choose another folder")
    return out


def pick_devices(count: int | None, func: str = _FUNC) -> list:
    """The first ``count`` local devices (all when None)."""
    import jax

    devices = jax.local_devices()
    if count is None:
        return devices
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{func}: --devices must be a positive integer, got {count!r}")
    if count > len(devices):
        raise ValueError(f"{func}: --devices {count}: only {len(devices)} local device(s); on "
                         f"CPU start with XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{count}")
    return devices[:count]


# --------------------------------------------------------------------------- the command


def reconstruct_folder(*, method: str, data, out, acceleration: int = 4,
                       center_fraction: float = 0.08, mask: str = "equispaced",
                       cg_lamda: float = 0.01, l1_lamda: float = L1_LAMDA,
                       devices: int | None = None, overwrite: bool = False,
                       progress: bool = True, processes=None,
                       echo: Callable[[str], None] | None = print) -> dict:
    """Reconstruct every file of ``data`` into ``out`` (module docstring); return the summary.

    ``processes``: the :class:`mskjax.train.ProcessSet` of a multi-process run, started by
    :func:`mskjax.cli._distributed.start_distributed` (None: one process). Each process
    reconstructs its share of the sorted files (:func:`mskjax.train.process_shard`) with its
    own local devices and writes its part of the summary; after a barrier process 0 merges
    the parts into ``recon_summary.json``.
    """
    from tqdm.auto import tqdm

    from ..io import centre_crop_or_pad
    from ._files import write_json

    func = _FUNC
    files = input_files(data, func)
    out = _check_out(out, Path(data), func)
    if mask not in ("equispaced", "random"):
        raise ValueError(f"{func}: --mask must be equispaced or random, got {mask!r}")
    if isinstance(acceleration, bool) or not isinstance(acceleration, int) or acceleration < 1:
        raise ValueError(f"{func}: --acceleration must be an integer >= 1, got {acceleration!r}")
    if not (0 < center_fraction < 1):
        raise ValueError(f"{func}: --center-fraction must be in (0, 1), got {center_fraction!r}")
    chosen = pick_devices(devices, func)
    num_processes = 1 if processes is None else processes.num_processes
    process_id = 0 if processes is None else processes.process_id
    mine = files[process_id::num_processes]
    facts = {path: check_file(path, func) for path in mine}
    fn, description = resolve_method(method, cg_lamda=cg_lamda, l1_lamda=l1_lamda, func=func)
    settings = {"acceleration": acceleration, "center_fraction": center_fraction,
                "mask": mask, "data": str(Path(data).resolve())}
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_summary(out)
    done = {p for p in mine if (out / p.name).is_file()} if not overwrite else set()
    as_stored = json.loads(json.dumps({"method": description, "settings": settings}))
    if done and previous is not None and any(previous.get(k) != v for k, v in as_stored.items()):
        raise ValueError(f"{func}: {out} holds reconstructions made with another method or "
                         "other settings (its recon_summary.json); pass --overwrite or choose "
                         "another --out")
    removed = remove_stale_temporaries(out, {p.name for p in mine})
    if echo is not None and done:
        echo(f"skipping {len(done)} file(s) already in {out} (--overwrite redoes them)")
    if echo is not None and removed:
        echo(f"removed {len(removed)} temporary file(s) of an interrupted run")

    todo = [p for p in mine if p not in done]
    runner = SliceReconstructor(fn, devices=chosen)
    per_file: dict[str, dict] = {}
    bar = tqdm(total=sum(facts[p]["slices"] for p in todo), unit="slice",
               desc=f"recon {description.get('model', method)}", disable=not progress)
    tick = time.perf_counter()
    for path in todo:
        start = time.perf_counter()
        kspace, masks, num_low, sampling = read_volume(
            path, acceleration=acceleration, center_fraction=center_fraction, mask=mask,
            func=func)
        traces = runner.traces
        image = runner(kspace, masks, num_low)
        if not np.all(np.isfinite(image)):
            raise RuntimeError(f"{func}: {path}: the reconstruction holds NaN or infinity; "
                               "nothing written for this file")
        image = centre_crop_or_pad(image, facts[path]["recon_size"])
        write_reconstruction(out / path.name, image)
        per_file[path.name] = {"slices": int(kspace.shape[0]), "shape": list(kspace.shape),
                               "sampling": sampling, "num_low_frequencies": num_low,
                               "compiled": runner.traces > traces,
                               "seconds": time.perf_counter() - start}
        bar.update(kspace.shape[0])
    bar.close()
    seconds = time.perf_counter() - tick
    part = {"files": per_file, "skipped": sorted(p.name for p in done), "seconds": seconds,
            "devices": [str(d) for d in chosen], "process_id": process_id}
    carried = (previous or {}).get("files", {})
    summary = {"method": description, "settings": settings,
               "num_processes": num_processes, "processes": [part],
               "files": {**{k: v for k, v in carried.items() if k in part["skipped"]},
                         **per_file}}
    summary["totals"] = _totals(summary, [part])
    if num_processes == 1:
        write_json(out / SUMMARY, summary)
        return summary
    return _merge_parts(out, part, summary, carried, num_processes, process_id)


def _merge_parts(out: Path, part: dict, summary: dict, carried: dict, num_processes: int,
                 process_id: int) -> dict:
    """Each process writes its part; after a barrier process 0 writes the whole summary."""
    from jax.experimental import multihost_utils

    from ._files import write_json

    def part_path(i):
        return out / f".recon_summary.process{i}.json"

    write_json(part_path(process_id), part)
    multihost_utils.sync_global_devices("mskjax recon: every process has written its files")
    if process_id != 0:
        return summary
    parts = [json.loads(part_path(i).read_text()) for i in range(num_processes)]
    skipped = {name for p in parts for name in p["skipped"]}
    summary = {**summary, "processes": parts,
               "files": {**{k: v for k, v in carried.items() if k in skipped},
                         **{k: v for p in parts for k, v in p["files"].items()}}}
    summary["totals"] = _totals(summary, parts)
    write_json(out / SUMMARY, summary)
    for i in range(num_processes):
        part_path(i).unlink(missing_ok=True)
    return summary


def _previous_summary(out: Path) -> dict | None:
    try:
        return json.loads((out / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def _totals(summary: dict, parts: list[dict]) -> dict:
    done = sum(len(p["files"]) for p in parts)
    slices = sum(f["slices"] for p in parts for f in p["files"].values())
    seconds = max((p["seconds"] for p in parts), default=0.0)
    return {"files_done": done, "files_skipped": sum(len(p["skipped"]) for p in parts),
            "slices": slices, "seconds": seconds,
            "slices_per_second": slices / seconds if seconds > 0 else None}


def summary_line(summary: dict, out) -> str:
    """``reconstructed 3 files (1 skipped), 24 slices in 5.1 s (4.7 slices/s); wrote OUT``."""
    t = summary["totals"]
    rate = f"{t['slices_per_second']:.2f} slices/s" if t["slices_per_second"] else "-"
    return (f"reconstructed {t['files_done']} file(s) ({t['files_skipped']} skipped), "
            f"{t['slices']} slices in {t['seconds']:.1f} s ({rate}); wrote {out}")


def run_recon_command(args: argparse.Namespace) -> int:
    """Run a parsed ``mskjax recon``; errors propagate to :func:`mskjax.cli.main`."""
    from ._distributed import start_distributed

    _check_out(args.out, Path(args.data), _FUNC)
    input_files(args.data)  # before meeting the other processes
    processes = start_distributed(args, _FUNC)
    summary = reconstruct_folder(
        method=args.method, data=args.data, out=args.out, acceleration=args.acceleration,
        center_fraction=args.center_fraction, mask=args.mask, cg_lamda=args.cg_lamda,
        l1_lamda=args.l1_lamda, devices=args.devices, overwrite=args.overwrite,
        progress=not args.no_progress,
        processes=processes if processes.num_processes > 1 else None)
    line = summary_line(summary, args.out)
    if processes.num_processes > 1:
        line = f"process {processes.process_id} of {processes.num_processes}: {line}"
    print(line)
    return 0

