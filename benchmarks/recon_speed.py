"""Speed of classical reconstruction: mskjax against sigpy and BART on the same inputs.

Cases (all complex64, the same arrays for every implementation in one run):

(a) ``brain``: the real 8-channel 230 x 180 brain of the sigpy tutorial (Poisson disc, 12 %).
(b) ``knee``: a simulated 15-coil 640 x 368 knee slice (the fastMRI multi-coil size): the
    built-in knee section with normalised birdcage maps, noise at 30 dB and a fastMRI 4x
    equispaced mask (simulated data, stated in the output).
(c) ``volume``: 32 slices of 8 coils at 230 x 180 (the brain with fresh noise per slice);
    mskjax reconstructs all slices in one vmapped call, sigpy and BART slice by slice.

Methods: CG-SENSE (``lamda`` 0.01, 30 iterations), L1-wavelet (db4, ``lamda`` 0.005,
30 iterations) and ESPIRiT calibration (24 calibration lines, kernel 6, one set of maps;
``bart ecalib -t`` thresholds the squared singular values, so ``thresh=0.02`` is ``-t 0.0004``). The
same sensitivity maps (sigpy's ESPIRiT) feed every reconstruction. BART runs as the ``bart``
command (``pics -l2``, ``pics -l1``, ``ecalib``); its times include starting the process and
reading and writing its files, which is reported separately as BART's overhead (``pics -i 1``
minus one iteration's share is not subtracted; the table says what was timed).

Timing: compilation (first call) and the steady state (median of ``--repeats`` runs with
``block_until_ready``) are separate. The per-iteration time of CG-SENSE is compared with the
time of the FFTs one iteration needs (a forward and an inverse FFT of all coil images), the
floor no implementation can beat. With a 1D mask (the knee) the normal operator skips the
FFTs along the fully sampled readout (see ``mskjax.recon._sense_problem``); the floor reported
is still the full 2D FFT pair. Prints a table and writes
``benchmarks/results/recon_speed.json``.

    python benchmarks/recon_speed.py [--repeats 5] [--cases brain,knee,volume]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import sigpy
import sigpy.mri

from mskjax import coils, recon, sampling
from mskjax.io import read_cfl, write_cfl
from mskjax.sim import knee_section
from mskjax.sim._kspace import simulate_kspace

ITERATIONS = 30
CG_LAMDA = 0.01
L1_LAMDA = 0.005


def data_dir() -> Path:
    env = os.environ.get("MSKJAX_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_jax(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    return {"compile_s": first, "steady_s": median_time(fn, repeats)}


def brain_case():
    kspace = np.load(data_dir() / "brain_8ch_sigpy" / "cartesian_ksp.npy").astype(np.complex64)
    return {"kspace": kspace, "description": "real 8-channel brain, 230 x 180, Poisson 12 %"}


def knee_case():
    image = np.asarray(knee_section((640, 368)))
    kspace = np.asarray(simulate_kspace(image, jax.random.key(0), num_coils=15,
                                        snr_db=30.0).kspace)
    mask, _ = sampling.equispaced_mask(kspace.shape, center_fraction=0.08, acceleration=4, seed=0)
    return {"kspace": np.where(mask, kspace, 0).astype(np.complex64), "mask": mask,
            "description": "simulated 15-coil knee slice, 640 x 368, fastMRI equispaced 4x "
                           "(the (368,) mask vector is passed to mskjax)"}


def volume_case(slices=32):
    base = brain_case()["kspace"]
    rng = np.random.default_rng(0)
    sampled = base != 0
    scale = 0.01 * np.abs(base[sampled]).mean()
    noise = scale * (rng.standard_normal((slices, *base.shape))
                     + 1j * rng.standard_normal((slices, *base.shape)))
    volume = np.where(sampled, base[None] + noise, 0).astype(np.complex64)
    return {"kspace": volume, "description": f"{slices} slices of the 8-channel brain with "
                                             "fresh noise per slice"}


def to_bart(kspace):
    """(coils, y, x) -> BART (y, x, 1, coils)."""
    return np.ascontiguousarray(np.moveaxis(kspace, 0, -1)[:, :, None, :])


def bart_run(args, inputs, repeats):
    """Time ``bart args...`` (median wall time) with the given cfl inputs; return (time, out)."""
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, array in enumerate(inputs):
            name = os.path.join(tmp, f"in{i}")
            write_cfl(name, array)
            names.append(name)
        out = os.path.join(tmp, "out")
        command = ["bart", *args, *names, out]
        env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - start)
        return statistics.median(times), read_cfl(out, squeeze=True)


def fft_floor(shape, repeats):
    x = jnp.asarray((np.random.default_rng(0).standard_normal(shape)
                     + 1j * np.random.default_rng(1).standard_normal(shape)).astype(np.complex64))
    axes = tuple(range(1, len(shape)))
    pair = jax.jit(lambda v: jnp.fft.ifftn(jnp.fft.fftn(v, axes=axes, norm="ortho"), axes=axes,
                                           norm="ortho"))
    return timed_jax(lambda: pair(x), repeats)["steady_s"]


def run_single(case, repeats, use_bart):
    kspace, mask = case["kspace"], case.get("mask")
    maps = sigpy.mri.app.EspiritCalib(kspace, calib_width=24, kernel_width=6, thresh=0.02,
                                      crop=0.95, show_pbar=False).run().astype(np.complex64)
    k, m = jnp.asarray(kspace), jnp.asarray(maps)
    rows = {}

    cg = jax.jit(lambda k, m: recon.cg_sense(k, m, mask=mask, lamda=CG_LAMDA,
                                             max_iter=ITERATIONS).image)
    cg2 = jax.jit(lambda k, m: recon.cg_sense(k, m, mask=mask, lamda=CG_LAMDA,
                                              max_iter=2 * ITERATIONS).image)
    ours = timed_jax(lambda: cg(k, m), repeats)
    twice = timed_jax(lambda: cg2(k, m), repeats)["steady_s"]
    per_iteration = (twice - ours["steady_s"]) / ITERATIONS
    floor = fft_floor(kspace.shape, repeats)
    sig = median_time(lambda: sigpy.mri.app.SenseRecon(kspace, maps, lamda=CG_LAMDA,
                                                       max_iter=ITERATIONS,
                                                       show_pbar=False).run(), repeats)
    rows["cg_sense"] = {**ours, "sigpy_s": sig, "per_iteration_s": per_iteration,
                        "fft_pair_s": floor, "per_iteration_over_fft": per_iteration / floor}

    l1 = jax.jit(lambda k, m: recon.l1_wavelet(k, m, mask=mask, lamda=L1_LAMDA,
                                               max_iter=ITERATIONS).image)
    ours = timed_jax(lambda: l1(k, m), repeats)
    sig = median_time(lambda: sigpy.mri.app.L1WaveletRecon(kspace, maps, lamda=L1_LAMDA,
                                                           max_iter=ITERATIONS,
                                                           show_pbar=False).run(), repeats)
    rows["l1_wavelet"] = {**ours, "sigpy_s": sig}

    esp = jax.jit(lambda k: coils.espirit(k, calib_width=24, kernel_width=6, thresh=0.02,
                                          crop=0.95))
    ours = timed_jax(lambda: esp(k), repeats)
    sig = median_time(lambda: sigpy.mri.app.EspiritCalib(kspace, calib_width=24, kernel_width=6,
                                                         thresh=0.02, crop=0.95,
                                                         show_pbar=False).run(), repeats)
    rows["espirit"] = {**ours, "sigpy_s": sig}

    if use_bart:
        bk, bm = to_bart(kspace), to_bart(maps)
        rows["cg_sense"]["bart_s"], _ = bart_run(
            ["pics", "-S", "-l2", "-r", str(CG_LAMDA), "-i", str(ITERATIONS)], [bk, bm], repeats)
        rows["l1_wavelet"]["bart_s"], _ = bart_run(
            ["pics", "-S", "-l1", "-r", str(L1_LAMDA), "-i", str(ITERATIONS)], [bk, bm],
            repeats)
        rows["espirit"]["bart_s"], _ = bart_run(
            ["ecalib", "-r", "24", "-k", "6", "-t", "0.0004", "-c", "0.95", "-m", "1"], [bk],
            repeats)
        rows["bart_overhead_s"], _ = bart_run(["pics", "-S", "-l2", "-i", "1"], [bk, bm],
                                              repeats)
    return rows


def run_volume(case, repeats, use_bart):
    volume = case["kspace"]
    maps = sigpy.mri.app.EspiritCalib(volume[0], show_pbar=False).run().astype(np.complex64)
    maps = np.broadcast_to(maps, volume.shape).copy()
    k, m = jnp.asarray(volume), jnp.asarray(maps)
    batched = jax.jit(jax.vmap(lambda k, m: recon.cg_sense(k, m, lamda=CG_LAMDA,
                                                           max_iter=ITERATIONS).image))
    ours = timed_jax(lambda: batched(k, m), repeats)

    def sigpy_loop():
        return [sigpy.mri.app.SenseRecon(v, s, lamda=CG_LAMDA, max_iter=ITERATIONS,
                                         show_pbar=False).run() for v, s in zip(volume, maps)]

    rows = {"cg_sense": {**ours, "sigpy_s": median_time(sigpy_loop, max(1, repeats // 2))}}
    if use_bart:
        total = 0.0
        for v, s in zip(volume, maps):
            t, _ = bart_run(["pics", "-S", "-l2", "-r", str(CG_LAMDA), "-i", str(ITERATIONS)],
                            [to_bart(v), to_bart(s)], 1)
            total += t
        rows["cg_sense"]["bart_s"] = total
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="brain,knee,volume")
    args = parser.parse_args()
    use_bart = shutil.which("bart") is not None
    cases = args.cases.split(",")
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()]},
        "versions": {"jax": jax.__version__, "sigpy": sigpy.__version__,
                     "numpy": np.__version__,
                     "bart": subprocess.run(["bart", "version"], capture_output=True,
                                            text=True).stdout.strip() if use_bart else None},
        "settings": {"repeats": args.repeats, "iterations": ITERATIONS, "cg_lamda": CG_LAMDA,
                     "l1_lamda": L1_LAMDA, "wavelet": "db4", "dtype": "complex64"},
        "cases": {},
    }
    builders = {"brain": brain_case, "knee": knee_case, "volume": volume_case}
    header = (f"{'case':<8}{'method':<12}{'compile s':>10}{'mskjax s':>10}{'sigpy s':>9}"
              f"{'bart s':>9}{'sigpy/ours':>11}{'bart/ours':>10}")
    print(header)
    print("-" * len(header))
    for name in cases:
        case = builders[name]()
        rows = (run_volume if name == "volume" else run_single)(case, args.repeats, use_bart)
        results["cases"][name] = {"description": case["description"], **rows}
        for method, r in rows.items():
            if not isinstance(r, dict):
                continue
            r["sigpy_over_mskjax"] = r["sigpy_s"] / r["steady_s"]
            if "bart_s" in r:
                r["bart_over_mskjax"] = r["bart_s"] / r["steady_s"]
            print(f"{name:<8}{method:<12}{r['compile_s']:>10.2f}{r['steady_s']:>10.3f}"
                  f"{r['sigpy_s']:>9.3f}{r.get('bart_s', float('nan')):>9.3f}"
                  f"{r['sigpy_over_mskjax']:>10.1f}x{r.get('bart_over_mskjax', float('nan')):>9.1f}x")
        if "cg_sense" in rows and "per_iteration_s" in rows["cg_sense"]:
            r = rows["cg_sense"]
            print(f"{name:<8}CG iteration {1e3 * r['per_iteration_s']:.2f} ms vs FFT pair "
                  f"{1e3 * r['fft_pair_s']:.2f} ms: {r['per_iteration_over_fft']:.2f}x the floor")
        if "bart_overhead_s" in rows:
            print(f"{name:<8}bart process start + file I/O + setup (pics -i 1): "
                  f"{rows['bart_overhead_s']:.3f} s")
    path = Path(__file__).parent / "results" / "recon_speed.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
