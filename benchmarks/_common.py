"""What the benchmark scripts share: the real-data folder and timing of JAX calls."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import jax

#: The checkout's parent: ``../shared/data`` is looked for beside the checkout.
CHECKOUT = Path(__file__).resolve().parents[1]


def data_folder() -> Path:
    """The real-data folder: ``$MSKJAX_DATA``, else ``../shared/data``; exits when missing."""
    env = os.environ.get("MSKJAX_DATA")
    for path in ([Path(env)] if env else []) + [CHECKOUT.parent / "shared" / "data"]:
        if path.is_dir():
            return path
    sys.exit("real data not found: set MSKJAX_DATA or put shared/data beside the checkout")


def median_time(fn, repeats):
    """Median wall time of ``repeats`` calls of ``fn`` (each waited for)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_and_steady(fn, repeats):
    """``(output, first call s (with compilation), steady median s)``."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start, median_time(fn, repeats)


def knee_kspace_set(out: Path, *, seed: int, name: str, log):
    """The multi-coil knee set of the learned-reconstruction benchmarks in ``out/kspace_set``
    (made once: the 16 real axial knees with 8 simulated birdcage coils and noise at 30 dB, 12
    training and 4 held-out subjects); logs the split and returns ``(manifest, train_files,
    val_files)``."""
    import json

    from mskjax.cli._evaluate import data_files
    from mskjax.io import make_kspace_set

    kset = out / "kspace_set"
    if not (kset / "manifest.json").exists():
        make_kspace_set(data_folder() / "knee_axial_rss" / "knee_axial_rss.npz", kset,
                        num_coils=8, snr_db=30.0, seed=seed, progress=False)
    manifest = json.loads((kset / "manifest.json").read_text())
    log(f"training subjects {manifest['splits']['train']}")
    log(f"held-out subjects {manifest['splits']['val']}")
    return manifest, data_files(kset, "train", name), data_files(kset, "val", name)
