"""Speed of classical reconstruction: mskjax against sigpy and BART on the same inputs.

Cases (all complex64, the same arrays for every implementation in one run):

(a) ``brain``: the real 8-channel 230 x 180 brain of the sigpy tutorial (Poisson disc, 12 %).
(b) ``knee``: a simulated 15-coil 640 x 368 knee slice (the fastMRI multi-coil size): the
    built-in knee section with normalised birdcage maps, noise at 30 dB and a fastMRI 4x
    equispaced mask (simulated data, stated in the output).
(c) ``volume``: 32 slices of 8 coils at 230 x 180 (the brain with fresh noise per slice);
    mskjax reconstructs all slices in one jitted call under several batching rules (``vmap``
    over all slices, ``lax.map`` one slice at a time, chunks of 4, and
    ``recon.map_slices``: ``lax.map`` on each device, the slices sharded over the devices),
    sigpy and BART slice by slice.

Methods: CG-SENSE (``lamda`` 0.01, 30 iterations), the generic ``solvers.cg`` over
``linop.Sense(maps, mask=mask).N + lamda I`` (the same problem, built by hand), L1-wavelet (db4,
``lamda`` 0.005, 30 iterations), total variation (``lamda`` 0.005, 100 iterations; sigpy's
``TotalVariationRecon`` runs the primal-dual hybrid gradient, BART ``pics -R T``, with the
same iteration count: the table compares time, not convergence) and ESPIRiT calibration (24
calibration lines, kernel 6, one set of maps; ``bart ecalib -t`` thresholds the squared
singular values, so ``thresh=0.02`` is ``-t 0.0004``). The same sensitivity maps (sigpy's
ESPIRiT) feed every reconstruction. BART runs as the ``bart`` command; its times include
starting the process and reading and writing its files, reported separately as BART's
overhead.

Timing: compilation (first call) and the steady state (median of ``--repeats`` runs with
``block_until_ready``) are separate. The per-iteration time of CG-SENSE is compared with the
time of the FFTs one iteration needs (a forward and an inverse FFT of all coil images), the
floor no implementation can beat with full 2D FFTs; with a 1D mask (the knee) the normal
operator transforms only the phase-encode axis and goes below that floor.

``--baseline REF`` also times mskjax's reconstructions as they were at the git revision REF
(checked out into a temporary worktree and run in a subprocess with this script, on the same
machine in the same run) and reports after/before ratios.

Devices: JAX on CPU runs one device unless told otherwise; this script asks for one CPU device
per core (``XLA_FLAGS=--xla_force_host_platform_device_count``) unless ``XLA_FLAGS`` is set.
Single-slice timings run on one device either way; only ``map_slices`` uses them all.

Memory: the temporary memory XLA plans for a reverse-mode gradient through 10 and 100 CG
iterations on the brain (``compiled.memory_analysis()``), implicit and unrolled.

Prints tables and writes ``benchmarks/results/recon_speed.json``.

    python benchmarks/recon_speed.py [--repeats 5] [--cases brain,knee,volume] [--baseline REF]
"""

from __future__ import annotations

import os

if "XLA_FLAGS" not in os.environ:  # one CPU device per core (see the docstring); before jax
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()}"

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
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
from mskjax.sim import knee_section, simulate_kspace
from _common import median_time

ITERATIONS = 30
TV_ITERATIONS = 100
CG_LAMDA = 0.01
L1_LAMDA = 0.005
TV_LAMDA = 0.005


def data_dir() -> Path:
    env = os.environ.get("MSKJAX_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


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


def espirit_maps(kspace):
    return sigpy.mri.app.EspiritCalib(kspace, calib_width=24, kernel_width=6, thresh=0.02,
                                      crop=0.95, show_pbar=False).run().astype(np.complex64)


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


# -- mskjax's reconstructions: only the recon API, so that the baseline revision runs it too --

def recon_functions(mask):
    return {
        "cg_sense": jax.jit(lambda k, m: recon.cg_sense(k, m, mask=mask, lamda=CG_LAMDA,
                                                        max_iter=ITERATIONS).image),
        "l1_wavelet": jax.jit(lambda k, m: recon.l1_wavelet(k, m, mask=mask, lamda=L1_LAMDA,
                                                            max_iter=ITERATIONS).image),
        "total_variation": jax.jit(lambda k, m: recon.total_variation(
            k, m, mask=mask, lamda=TV_LAMDA, max_iter=TV_ITERATIONS).image),
    }


def time_recons(case, maps, repeats):
    k, m = jnp.asarray(case["kspace"]), jnp.asarray(maps)
    return {name: timed_jax(lambda fn=fn: fn(k, m), repeats)
            for name, fn in recon_functions(case.get("mask")).items()}


# -- what only the current revision has -------------------------------------------------

def time_generic_cg(case, maps, repeats):
    from mskjax import linop, solvers

    kspace, mask = case["kspace"], case.get("mask")
    if mask is None:
        mask = np.any(kspace != 0, axis=0)

    @jax.jit
    def generic(k, m):
        A = linop.Sense(m, mask=mask)
        normal = A.N + CG_LAMDA * linop.Identity(A.ishape)
        return solvers.cg(normal, A.H(k), max_iter=ITERATIONS).x

    k, m = jnp.asarray(kspace), jnp.asarray(maps)
    rows = {"cg_generic": timed_jax(lambda: generic(k, m), repeats)}
    if case.get("mask") is not None:
        # mask=None: inferred from the k-space; reduced to 1D when the k-space is concrete
        # (closed over), 2D when it is a traced argument of jit.
        concrete = jax.jit(lambda m: recon.cg_sense(kspace, m, lamda=CG_LAMDA,
                                                    max_iter=ITERATIONS).image)
        traced = jax.jit(lambda k, m: recon.cg_sense(k, m, lamda=CG_LAMDA,
                                                     max_iter=ITERATIONS).image)
        rows["cg_sense_mask_inferred"] = timed_jax(lambda: concrete(m), repeats)
        rows["cg_sense_mask_inferred_traced"] = timed_jax(lambda: traced(k, m), repeats)
    return rows


def time_peers(case, maps, repeats, use_bart):
    kspace = case["kspace"]
    rows = {
        "cg_sense": {"sigpy_s": median_time(lambda: sigpy.mri.app.SenseRecon(
            kspace, maps, lamda=CG_LAMDA, max_iter=ITERATIONS, show_pbar=False).run(),
            repeats)},
        "l1_wavelet": {"sigpy_s": median_time(lambda: sigpy.mri.app.L1WaveletRecon(
            kspace, maps, lamda=L1_LAMDA, max_iter=ITERATIONS, show_pbar=False).run(),
            repeats)},
        "total_variation": {"sigpy_s": median_time(lambda: sigpy.mri.app.TotalVariationRecon(
            kspace, maps, lamda=TV_LAMDA, max_iter=TV_ITERATIONS, show_pbar=False).run(),
            max(1, repeats // 2))},
    }
    k = jnp.asarray(kspace)
    esp = jax.jit(lambda k: coils.espirit(k, calib_width=24, kernel_width=6, thresh=0.02,
                                          crop=0.95))
    rows["espirit"] = {**timed_jax(lambda: esp(k), repeats),
                       "sigpy_s": median_time(lambda: espirit_maps(kspace), repeats)}
    if use_bart:
        bk, bm = to_bart(kspace), to_bart(maps)
        rows["cg_sense"]["bart_s"], _ = bart_run(
            ["pics", "-S", "-l2", "-r", str(CG_LAMDA), "-i", str(ITERATIONS)], [bk, bm], repeats)
        rows["l1_wavelet"]["bart_s"], _ = bart_run(
            ["pics", "-S", "-l1", "-r", str(L1_LAMDA), "-i", str(ITERATIONS)], [bk, bm],
            repeats)
        rows["total_variation"]["bart_s"], _ = bart_run(
            ["pics", "-S", "-R", f"T:3:0:{TV_LAMDA}", "-i", str(TV_ITERATIONS)], [bk, bm],
            repeats)
        rows["espirit"]["bart_s"], _ = bart_run(
            ["ecalib", "-r", "24", "-k", "6", "-t", "0.0004", "-c", "0.95", "-m", "1"], [bk],
            repeats)
        rows["bart_overhead_s"], _ = bart_run(["pics", "-S", "-l2", "-i", "1"], [bk, bm],
                                              repeats)
    return rows


def run_single(case, repeats, use_bart):
    maps = espirit_maps(case["kspace"])
    rows = {name: dict(r) for name, r in time_recons(case, maps, repeats).items()}
    rows.update(time_generic_cg(case, maps, repeats))
    for name, r in time_peers(case, maps, repeats, use_bart).items():
        rows[name] = {**rows.get(name, {}), **r} if isinstance(r, dict) else r
    k, m = jnp.asarray(case["kspace"]), jnp.asarray(maps)
    cg2 = jax.jit(lambda k, m: recon.cg_sense(k, m, mask=case.get("mask"), lamda=CG_LAMDA,
                                              max_iter=2 * ITERATIONS).image)
    twice = timed_jax(lambda: cg2(k, m), repeats)["steady_s"]
    per_iteration = (twice - rows["cg_sense"]["steady_s"]) / ITERATIONS
    floor = fft_floor(case["kspace"].shape, repeats)
    rows["cg_sense"].update(per_iteration_s=per_iteration, fft_pair_s=floor,
                            per_iteration_over_fft=per_iteration / floor)
    rows["cg_generic"]["generic_over_cg_sense"] = (rows["cg_generic"]["steady_s"]
                                                   / rows["cg_sense"]["steady_s"])
    return rows


def volume_rules(case, maps):
    """The batching rules for a stack of slices, each a jitted function of (kspace, maps)."""
    def one(k, m):
        return recon.cg_sense(k, m, lamda=CG_LAMDA, max_iter=ITERATIONS).image

    rules = {
        "vmap": jax.jit(jax.vmap(one)),
        "lax.map": jax.jit(lambda K, M: jax.lax.map(lambda a: one(*a), (K, M))),
        "lax.map chunks of 4": jax.jit(lambda K, M: jax.lax.map(lambda a: one(*a), (K, M),
                                                                batch_size=4)),
    }
    if hasattr(recon, "map_slices"):
        rules[f"map_slices ({len(jax.devices())} devices)"] = jax.jit(recon.map_slices(one))
    return rules


def run_volume(case, repeats, use_bart, *, peers=True):
    volume = case["kspace"]
    maps = espirit_maps(volume[0])
    maps = np.broadcast_to(maps, volume.shape).copy()
    k, m = jnp.asarray(volume), jnp.asarray(maps)
    single = jax.jit(lambda k, m: recon.cg_sense(k, m, lamda=CG_LAMDA,
                                                 max_iter=ITERATIONS).image)
    rows = {"single calls": timed_jax(lambda: [single(k[i], m[i]) for i in range(len(k))],
                                      max(1, repeats // 2))}
    for name, fn in volume_rules(case, maps).items():
        rows[name] = timed_jax(lambda fn=fn: fn(k, m), max(1, repeats // 2))
    if not peers:
        return rows

    def sigpy_loop():
        return [sigpy.mri.app.SenseRecon(v, s, lamda=CG_LAMDA, max_iter=ITERATIONS,
                                         show_pbar=False).run() for v, s in zip(volume, maps)]

    peer = {"sigpy_s": median_time(sigpy_loop, max(1, repeats // 2))}
    if use_bart:
        total = 0.0
        for v, s in zip(volume, maps):
            t, _ = bart_run(["pics", "-S", "-l2", "-r", str(CG_LAMDA), "-i", str(ITERATIONS)],
                            [to_bart(v), to_bart(s)], 1)
            total += t
        peer["bart_s"] = total
    for r in rows.values():
        r.update(peer)
    return rows


def gradient_memory():
    """XLA's planned temporary memory for grad through CG, 10 and 100 iterations (brain)."""
    from mskjax import linop, solvers

    kspace = brain_case()["kspace"]
    maps = jnp.asarray(espirit_maps(kspace))
    mask = np.any(kspace != 0, axis=0)
    y = jnp.asarray(kspace)
    out = {}
    for implicit in (True, False):
        for max_iter in (10, 100):
            def loss(m, implicit=implicit, max_iter=max_iter):
                A = linop.Sense(m, mask=mask)
                x = solvers.cg(A.N + CG_LAMDA * linop.Identity(A.ishape), A.H(y),
                               max_iter=max_iter, implicit=implicit).x
                return jnp.sum(jnp.abs(x) ** 2)

            compiled = jax.jit(jax.grad(loss)).lower(maps).compile()
            name = f"{'implicit' if implicit else 'unrolled'}_{max_iter}"
            out[name] = compiled.memory_analysis().temp_size_in_bytes
    return out


BUILDERS = {"brain": brain_case, "knee": knee_case, "volume": volume_case}


def mskjax_only(cases, repeats):
    """The reconstructions of this revision of mskjax (or the baseline's), nothing else."""
    out = {}
    for name in cases:
        case = BUILDERS[name]()
        if name == "volume":
            maps = np.broadcast_to(espirit_maps(case["kspace"][0]), case["kspace"].shape).copy()
            k, m = jnp.asarray(case["kspace"]), jnp.asarray(maps)
            out[name] = {rule: timed_jax(lambda fn=fn: fn(k, m), max(1, repeats // 2))
                         for rule, fn in volume_rules(case, maps).items()}
        else:
            out[name] = time_recons(case, espirit_maps(case["kspace"]), repeats)
    return out


def run_baseline(ref, cases, repeats):
    """Run this script's mskjax-only timings on revision ``ref`` in a temporary worktree."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True)
        try:
            out = Path(tmp) / "baseline.json"
            env = {**os.environ, "PYTHONPATH": str(tree)}
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--mskjax-only",
                            "--json", str(out), "--repeats", str(repeats), "--cases",
                            ",".join(cases)], check=True, env=env, cwd=tmp)
            commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
            return {"ref": ref, "commit": commit, "cases": json.loads(out.read_text())}
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)


def fmt(value, width, digits=3):
    if isinstance(value, (int, float)):
        return f"{value:>{width}.{digits}f}"
    return " " * (width - 1) + "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="brain,knee,volume")
    parser.add_argument("--baseline", default=None,
                        help="git revision whose mskjax reconstructions to time as 'before'")
    parser.add_argument("--mskjax-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="where to write the JSON results")
    args = parser.parse_args()
    cases = args.cases.split(",")
    if args.mskjax_only:
        Path(args.json).write_text(json.dumps(mskjax_only(cases, args.repeats), indent=2))
        return
    use_bart = shutil.which("bart") is not None
    import mskjax
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()],
                    "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__,
                     "sigpy": sigpy.__version__, "numpy": np.__version__,
                     "bart": subprocess.run(["bart", "version"], capture_output=True,
                                            text=True).stdout.strip() if use_bart else None},
        "settings": {"repeats": args.repeats, "iterations": ITERATIONS,
                     "tv_iterations": TV_ITERATIONS, "cg_lamda": CG_LAMDA,
                     "l1_lamda": L1_LAMDA, "tv_lamda": TV_LAMDA, "wavelet": "db4",
                     "dtype": "complex64"},
        "cases": {},
    }
    if args.baseline:
        print(f"timing the baseline {args.baseline} in a worktree ...", flush=True)
        results["baseline"] = run_baseline(args.baseline, cases, args.repeats)
    header = (f"{'case':<8}{'method':<32}{'compile s':>10}{'mskjax s':>10}{'sigpy s':>9}"
              f"{'bart s':>9}{'sigpy/ours':>11}{'bart/ours':>10}{'before s':>10}"
              f"{'after/before':>13}")
    print(header)
    print("-" * len(header))
    for name in cases:
        case = BUILDERS[name]()
        rows = (run_volume if name == "volume" else run_single)(case, args.repeats, use_bart)
        results["cases"][name] = {"description": case["description"], **rows}
        before = results.get("baseline", {}).get("cases", {}).get(name, {})
        for method, r in rows.items():
            if not isinstance(r, dict) or "steady_s" not in r:
                continue
            if "sigpy_s" in r:
                r["sigpy_over_mskjax"] = r["sigpy_s"] / r["steady_s"]
            if "bart_s" in r:
                r["bart_over_mskjax"] = r["bart_s"] / r["steady_s"]
            if method in before:
                r["before_s"] = before[method]["steady_s"]
                r["after_over_before"] = r["steady_s"] / r["before_s"]
            print(f"{name:<8}{method:<32}{fmt(r['compile_s'], 10, 2)}{fmt(r['steady_s'], 10)}"
                  f"{fmt(r.get('sigpy_s'), 9)}{fmt(r.get('bart_s'), 9)}"
                  f"{fmt(r.get('sigpy_over_mskjax'), 10, 2)}x"
                  f"{fmt(r.get('bart_over_mskjax'), 9, 2)}x"
                  f"{fmt(r.get('before_s'), 10)}{fmt(r.get('after_over_before'), 12, 2)}x")
        if "cg_sense" in rows and "per_iteration_s" in rows["cg_sense"]:
            r = rows["cg_sense"]
            print(f"{name:<8}CG iteration {1e3 * r['per_iteration_s']:.2f} ms vs FFT pair "
                  f"{1e3 * r['fft_pair_s']:.2f} ms: {r['per_iteration_over_fft']:.2f}x the floor;"
                  f" generic solvers.cg / recon.cg_sense = "
                  f"{rows['cg_generic']['generic_over_cg_sense']:.3f}")
        if "bart_overhead_s" in rows:
            print(f"{name:<8}bart process start + file I/O + setup (pics -i 1): "
                  f"{rows['bart_overhead_s']:.3f} s")
    memory = gradient_memory()
    results["gradient_memory_bytes"] = memory
    print("temporary memory of grad through CG (brain, XLA's plan): " + ", ".join(
        f"{k} {v / 2**20:.1f} MiB" for k, v in memory.items()))
    path = Path(args.json) if args.json else (Path(__file__).parent / "results"
                                              / "recon_speed.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
