"""qDESS T2 and T1rho maps of the real knee: mskjax.quant against DOSMA 0.1.2 and a
``scipy.optimize.curve_fit`` loop.

Data: ``knee_sagittal_qdess_t1rho`` (pyKNEEr demo data, GE 3 T): 8 sagittal slices of a qDESS
scan (S+ at TE 7.48 ms, S- at 42.52 ms, TR 25 ms, flip 30 degrees; GL area and TG read from the
DICOM header's GE private tags with :func:`mskjax.io.read_qdess_parameters`) and of a CubeQuant
T1rho scan (spin-lock times 1, 10, 30, 60 ms), 512 x 512 each.

Maps:

- qDESS T2: :func:`mskjax.quant.qdess_t2` (T1 1200 ms, diffusivity 1.25e-9 m^2/s, DOSMA's
  range [0, 100] ms) against DOSMA's ``QDess.generate_t2_map`` with the same values, rounding
  off. All 8 slices, float32 (mskjax) against float64 (DOSMA).
- T1rho: :func:`mskjax.quant.fit_relaxation` (Levenberg-Marquardt, float32; range (0, 500] ms
  and r2 >= 0.9 as DOSMA's CubeQuant) against DOSMA's ``MonoExponentialFit`` with CubeQuant's
  settings (scipy ``curve_fit`` per voxel, ``maxfev`` 100, ``ftol`` 1e-5, polyfit start,
  rounding off), on a tissue mask: first spin-lock image above 0.2 times its 99.5th
  percentile (DOSMA fits only masked voxels; a voxel costs it about half a millisecond).
- A plain ``curve_fit`` loop (scipy's defaults, polyfit start, float64) on ``--curve-fit-voxels``
  random voxels of the mask: its time per voxel is extrapolated to a slice's masked voxels
  (stated as such in the output), and its T1rho is a second reference.

Agreement is reported where the fit is well-posed: voxels that both sides call valid (mskjax's
``valid`` map; DOSMA's finite T2 / nonzero T1rho). Relative difference ``|a - b| / |b|``:
median, 99th percentile, maximum and the fraction within 1e-3; the voxels valid on one side
only are counted by reason.

Timing: mskjax's first call (compilation included) apart from the steady state (median of
``--repeats`` calls, ``block_until_ready``); time per slice is the time of all slices divided
by their number. DOSMA runs in its own Python environment (it needs numpy<2 and pandas<2.3;
``make dosma-env`` builds ``benchmarks/.venv-dosma``) as a subprocess on inputs saved to a
temporary folder.

Writes ``benchmarks/results/quant_t2.json`` and the figures ``quant_t2_qdess.png`` and
``quant_t2_t1rho.png``.

    python benchmarks/quant_t2.py [--dosma-python benchmarks/.venv-dosma/bin/python]
        [--repeats 5] [--dosma-t1rho-slices 0 1 ... 7] [--curve-fit-voxels 2000] [--no-dosma]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import scipy
from scipy.optimize import curve_fit

import mskjax
from mskjax import io, quant
from _common import data_folder, first_and_steady

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
T1_ASSUMED, DIFFUSIVITY = 1200.0, 1.25e-9
T1RHO_RANGE, R2_THRESHOLD = (0.0, 500.0), 0.9
MASK_FRACTION = 0.2


def agreement(ours, reference):
    """Relative difference statistics over the given paired values."""
    rel = np.abs(ours.astype(np.float64) - reference) / np.abs(reference)
    if rel.size == 0:
        return {"voxels": 0}
    return {"voxels": int(rel.size), "median": float(np.median(rel)),
            "p99": float(np.percentile(rel, 99)), "max": float(rel.max()),
            "fraction_within_1e-3": float(np.mean(rel <= 1e-3))}


def curve_fit_loop(tsl, signals):
    """scipy curve_fit of a exp(b t) per voxel (scipy's default tolerances, polyfit start)."""
    def model(t, a, b):
        return a * np.exp(b * t)

    out = np.full(signals.shape[1], np.nan)
    r2 = np.zeros(signals.shape[1])
    start = time.perf_counter()
    for i in range(signals.shape[1]):
        y = signals[:, i]
        slope, intercept = np.polyfit(tsl, np.log(np.maximum(y, 1e-10)), 1)
        try:
            (a, b), _ = curve_fit(model, tsl, y, p0=(np.exp(intercept), slope), maxfev=10000)
        except RuntimeError:
            continue
        residual = y - model(tsl, a, b)
        r2[i] = 1 - np.sum(residual ** 2) / np.sum((y - y.mean()) ** 2)
        out[i] = -1 / b
    return out, r2, time.perf_counter() - start


def run_dosma(python, workdir, inputs, settings):
    np.savez(workdir / "inputs.npz", **inputs)
    (workdir / "settings.json").write_text(json.dumps(settings))
    script = ROOT / "benchmarks" / "quant_t2_dosma.py"
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(script), str(workdir)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"DOSMA failed ({python}):\n{proc.stderr[-3000:]}")
    report = json.loads((workdir / "dosma.json").read_text())
    report["subprocess_seconds"] = time.perf_counter() - start
    return (np.load(workdir / "dosma_t2.npy"), np.load(workdir / "dosma_t1rho.npy"),
            np.load(workdir / "dosma_t1rho_r2.npy"), report)


def figure(path, background, maps, valid, *, title, label, vmax):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(maps)
    fig, axes = plt.subplots(1, len(names) + 2, figsize=(4 * (len(names) + 2), 4.4),
                             constrained_layout=True)
    axes[0].imshow(background, cmap="gray", vmin=0, vmax=np.percentile(background, 99.5))
    axes[0].set_title("first image", fontsize=9)
    for ax, name in zip(axes[1:], names):
        shown = np.ma.masked_where(~valid[name], maps[name])
        image = ax.imshow(shown, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"{label}, {name} (valid voxels)", fontsize=9)
    fig.colorbar(image, ax=axes[len(names)], shrink=0.8, label=f"{label} (ms)")
    both = valid[names[0]] & valid[names[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(maps[names[0]] - maps[names[1]]) / np.abs(maps[names[1]])
    shown = np.ma.masked_where(~both, np.log10(np.maximum(rel, 1e-9)))
    image = axes[-1].imshow(shown, cmap="viridis", vmin=-9, vmax=-1)
    axes[-1].set_title(f"log10 relative difference {names[0]} vs {names[1]}", fontsize=9)
    fig.colorbar(image, ax=axes[-1], shrink=0.8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dosma-python", default=str(ROOT / "benchmarks" / ".venv-dosma" / "bin"
                                                      / "python"))
    parser.add_argument("--no-dosma", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dosma-t1rho-slices", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--curve-fit-voxels", type=int, default=2000)
    args = parser.parse_args()

    folder = data_folder() / "knee_sagittal_qdess_t1rho"
    data = np.load(folder / "knee_qdess_t1rho_8slices.npz")
    dess, t1rho, tsl = data["dess"], data["cubequant_t1rho"], data["cubequant_tsl_ms"]
    header = io.read_qdess_parameters(folder / "dicom_midslice")
    params = dict(tr=header.tr, te=header.te, flip_angle=header.flip_angle,
                  gl_area=header.gl_area, tg=header.tg)
    slices = dess.shape[1]
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
               "devices": [str(d) for d in jax.devices()],
               "note": "a shared machine: other processes ran at the same time; compare the "
                       "ratios of one run rather than absolute times"}
    versions = {"mskjax": mskjax.__version__, "jax": jax.__version__, "numpy": np.__version__,
                "scipy": scipy.__version__, "python": sys.version.split()[0]}
    print(f"machine: {machine['platform']}, {machine['cpu_count']} CPUs, JAX "
          f"{versions['jax']} on {machine['backend']}")
    print(f"qDESS header: {params}")

    # --- mskjax -------------------------------------------------------------------------
    qdess = jax.jit(lambda a, b: quant.qdess_t2(a, b, **params, t1=T1_ASSUMED,
                                                  diffusivity=DIFFUSIVITY))
    s_plus, s_minus = jax.device_put(dess[0]), jax.device_put(dess[1])
    ours_t2, t2_first, t2_steady = first_and_steady(lambda: qdess(s_plus, s_minus),
                                                    args.repeats)
    t2_map, t2_valid = np.asarray(ours_t2.t2), np.asarray(ours_t2.valid)

    threshold = MASK_FRACTION * np.percentile(t1rho[0], 99.5)
    mask = t1rho[0] > threshold
    fit = lambda: quant.fit_relaxation(t1rho, tsl, mask=mask,  # noqa: E731
                                       time_constant_range=T1RHO_RANGE, min_r2=R2_THRESHOLD)
    ours_t1rho, t1rho_first, t1rho_steady = first_and_steady(fit, max(1, args.repeats // 2))
    t1rho_map, t1rho_valid = np.asarray(ours_t1rho.time_constant), np.asarray(ours_t1rho.valid)
    status = np.asarray(ours_t1rho.status)
    loglin = lambda: quant.fit_relaxation(t1rho, tsl, mask=mask, method="log_linear",  # noqa
                                          time_constant_range=T1RHO_RANGE)
    _, _, loglin_steady = first_and_steady(loglin, max(1, args.repeats // 2))

    # --- scipy curve_fit loop ----------------------------------------------------------
    rng = np.random.default_rng(0)
    picks = rng.choice(np.flatnonzero(mask), args.curve_fit_voxels, replace=False)
    signals = t1rho.reshape(4, -1)[:, picks].astype(np.float64)
    cf_t1rho, cf_r2, cf_seconds = curve_fit_loop(tsl, signals)
    cf_ok = (np.isfinite(cf_t1rho) & (cf_t1rho > T1RHO_RANGE[0]) & (cf_t1rho <= T1RHO_RANGE[1])
             & (cf_r2 >= R2_THRESHOLD))
    ours_at_picks = t1rho_map.reshape(-1)[picks]
    ours_ok = t1rho_valid.reshape(-1)[picks]
    per_voxel = cf_seconds / picks.size
    masked_per_slice = mask.sum() / slices

    results = {
        "data": "knee_sagittal_qdess_t1rho: 8 sagittal slices 512 x 512, GE 3 T (pyKNEEr)",
        "machine": machine, "versions": versions,
        "settings": {"qdess": {**params, "t1_ms": T1_ASSUMED, "diffusivity_m2_s": DIFFUSIVITY,
                               "t2_range_ms": [0.0, 100.0]},
                     "t1rho": {"spin_lock_times_ms": tsl.tolist(),
                               "range_ms": list(T1RHO_RANGE), "min_r2": R2_THRESHOLD,
                               "mask": f"first spin-lock image > {MASK_FRACTION} x its 99.5th "
                                       f"percentile ({threshold:.0f})",
                               "masked_voxels": int(mask.sum())},
                     "repeats": args.repeats},
        "mskjax": {
            "qdess_t2": {"first_call_s": t2_first, "steady_s_all_slices": t2_steady,
                         "steady_s_per_slice": t2_steady / slices,
                         "valid_voxels": int(t2_valid.sum())},
            "t1rho_nonlinear": {"first_call_s": t1rho_first,
                                "steady_s_all_slices": t1rho_steady,
                                "steady_s_per_slice": t1rho_steady / slices,
                                "valid_voxels": int(t1rho_valid.sum()),
                                "status_counts": {c.name: int(np.sum(status == c))
                                                  for c in quant.FitStatus}},
            "t1rho_log_linear": {"steady_s_per_slice": loglin_steady / slices},
        },
        "curve_fit_loop": {
            "voxels": int(picks.size), "seconds": cf_seconds, "s_per_voxel": per_voxel,
            "s_per_slice_extrapolated": per_voxel * masked_per_slice,
            "note": f"timed on {picks.size} random masked voxels, extrapolated to the mean "
                    f"{masked_per_slice:.0f} masked voxels per slice",
            "agreement_with_mskjax": agreement(ours_at_picks[cf_ok & ours_ok],
                                               cf_t1rho[cf_ok & ours_ok]),
            "valid_in_curve_fit_only": int(np.sum(cf_ok & ~ours_ok)),
            "valid_in_mskjax_only": int(np.sum(~cf_ok & ours_ok)),
        },
    }

    # --- DOSMA ---------------------------------------------------------------------------
    if not args.no_dosma:
        chosen = np.array(sorted(set(args.dosma_t1rho_slices)))
        settings = {**params, "t1": T1_ASSUMED, "diffusivity": DIFFUSIVITY,
                    "repeats": args.repeats}
        with tempfile.TemporaryDirectory(prefix="quant-dosma-") as tmp:
            d_t2, d_t1rho, d_r2, report = run_dosma(
                args.dosma_python, Path(tmp),
                {"dess": dess, "t1rho": t1rho, "t1rho_mask": mask, "tsl": tsl,
                 "t1rho_slices": chosen}, settings)
        d_t2_ok = np.isfinite(d_t2)
        both = t2_valid & d_t2_ok
        ours_sub, valid_sub = t1rho_map[chosen], t1rho_valid[chosen]
        d_ok = d_t1rho > 0
        both_rho = valid_sub & d_ok
        status_sub = status[chosen]
        dosma_only = {c.name: int(np.sum(d_ok & ~valid_sub & (status_sub == c)))
                      for c in quant.FitStatus if c != quant.FitStatus.VALID}
        # Which side is off where the two disagree? scipy's curve_fit at its default
        # tolerances (float64) decides; and the voxels only DOSMA calls valid: their rate
        # (DOSMA reports 1 / |b| for a growing signal too)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(ours_sub - d_t1rho) / np.abs(d_t1rho)
        far = both_rho & (rel > 1e-3)
        signals_sub = t1rho[:, chosen]
        ref_far, _, _ = curve_fit_loop(tsl, signals_sub[:, far].astype(np.float64))
        only = d_ok & ~valid_sub
        ref_only, _, _ = curve_fit_loop(tsl, signals_sub[:, only].astype(np.float64))
        diagnosis = {
            "voxels_beyond_1e-3": int(far.sum()),
            "their_relative_error_vs_curve_fit": {
                "mskjax": (np.abs(ours_sub[far] - ref_far) / ref_far).tolist(),
                "dosma": (np.abs(d_t1rho[far] - ref_far) / ref_far).tolist()},
            "valid_in_dosma_only_growing_per_curve_fit": int(np.sum(ref_only < 0)),
            "valid_in_dosma_only": int(only.sum()),
        }
        dosma_t2_slice = statistics.median(report["t2_seconds"]) / slices
        dosma_t1rho_slice = report["t1rho_seconds"] / chosen.size
        results["dosma"] = {
            "report": report,
            "qdess_t2": {
                "s_per_slice": dosma_t2_slice,
                "agreement": agreement(t2_map[both], d_t2[both]),
                "valid_in_dosma_only": int(np.sum(d_t2_ok & ~t2_valid)),
                "valid_in_dosma_only_with_t2_0": int(np.sum(d_t2_ok & ~t2_valid
                                                            & (d_t2 == 0))),
                "valid_in_mskjax_only": int(np.sum(~d_t2_ok & t2_valid)),
            },
            "t1rho": {
                "slices": chosen.tolist(), "s_per_slice": dosma_t1rho_slice,
                "agreement": agreement(ours_sub[both_rho], d_t1rho[both_rho]),
                "valid_in_dosma_only_by_mskjax_status": dosma_only,
                "valid_in_mskjax_only": int(np.sum(~d_ok & valid_sub)),
                "diagnosis": diagnosis,
            },
            "speed_ratios_dosma_over_mskjax": {
                "qdess_t2": dosma_t2_slice / (t2_steady / slices),
                "t1rho": dosma_t1rho_slice / (t1rho_steady / slices),
            },
        }
        results["curve_fit_loop"]["speed_ratio_over_mskjax"] = (
            per_voxel * masked_per_slice / (t1rho_steady / slices))
        middle = slices // 2
        position = int(np.flatnonzero(chosen == middle)[0]) if middle in chosen else 0
        RESULTS.mkdir(parents=True, exist_ok=True)
        figure(RESULTS / "quant_t2_qdess.png", dess[0, middle],
               {"mskjax": t2_map[middle], "DOSMA": np.nan_to_num(d_t2[middle])},
               {"mskjax": t2_valid[middle], "DOSMA": d_t2_ok[middle]},
               title=f"qDESS T2, slice {middle + 1} of {slices} (GL area {params['gl_area']:g}, "
                     f"TG {params['tg']:g} us)", label="T2", vmax=80)
        figure(RESULTS / "quant_t2_t1rho.png", t1rho[0, chosen[position]],
               {"mskjax": ours_sub[position], "DOSMA": d_t1rho[position]},
               {"mskjax": valid_sub[position], "DOSMA": d_ok[position]},
               title=f"T1rho, slice {chosen[position] + 1} of {slices} (tissue mask, r2 >= 0.9)",
               label="T1rho", vmax=120)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "quant_t2.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)

    m = results["mskjax"]
    print(f"\n{'time per slice':<34}{'mskjax':>12}{'DOSMA':>12}{'curve_fit':>12}")
    d = results.get("dosma", {})
    print(f"{'qDESS T2 (all 512x512 voxels)':<34}{m['qdess_t2']['steady_s_per_slice']:>11.4f}s"
          + (f"{d['qdess_t2']['s_per_slice']:>11.4f}s" if d else f"{'-':>12}") + f"{'-':>12}")
    print(f"{'T1rho (masked voxels)':<34}{m['t1rho_nonlinear']['steady_s_per_slice']:>11.4f}s"
          + (f"{d['t1rho']['s_per_slice']:>11.3f}s" if d else f"{'-':>12}")
          + f"{results['curve_fit_loop']['s_per_slice_extrapolated']:>11.3f}s")
    print(f"compilation + first call: qDESS {t2_first:.2f} s, T1rho {t1rho_first:.2f} s; "
          f"T1rho log-linear {m['t1rho_log_linear']['steady_s_per_slice']:.4f} s/slice")
    if d:
        for name in ("qdess_t2", "t1rho"):
            a = d[name]["agreement"]
            print(f"agreement with DOSMA, {name}: {a['voxels']} voxels, median {a['median']:.2e}, "
                  f"p99 {a['p99']:.2e}, max {a['max']:.2e}, within 1e-3: "
                  f"{a['fraction_within_1e-3']:.4%}")
    if d:
        g = d["t1rho"]["diagnosis"]
        errors = g["their_relative_error_vs_curve_fit"]
        if g["voxels_beyond_1e-3"]:
            print(f"T1rho voxels beyond 1e-3 of DOSMA: {g['voxels_beyond_1e-3']}; their error "
                  f"against curve_fit: mskjax max {max(errors['mskjax']):.1e}, DOSMA max "
                  f"{max(errors['dosma']):.1e}")
        print(f"T1rho valid in DOSMA only: {g['valid_in_dosma_only']} "
              f"({g['valid_in_dosma_only_growing_per_curve_fit']} growing signals per curve_fit)")
    a = results["curve_fit_loop"]["agreement_with_mskjax"]
    if a["voxels"]:
        print(f"agreement with the curve_fit loop (T1rho): {a['voxels']} voxels, median "
              f"{a['median']:.2e}, p99 {a['p99']:.2e}, max {a['max']:.2e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
