"""``mskjax demo --trajectory radial|spiral``: non-Cartesian k-space, simulated, reconstructed
and scored.

The coils, the background phase and the noise are those of the Cartesian demo
(:func:`mskjax.sim.simulate_kspace`: normalised birdcage maps, a smooth phase for a magnitude
image, circularly symmetric complex Gaussian noise), with :class:`mskjax.linop.NufftSense` in
place of the FFT. The noise per complex sample has the standard deviation of the fully sampled
Cartesian scan at the stated SNR, drawn from the same key. Coordinates are in cycles per field
of view (the convention of :class:`mskjax.linop.NUFFT`); for an image of ``n = max(rows, cols)``
pixels on its longer axis:

- radial: golden-angle spokes (:func:`mskjax.sampling.radial`) of ``2 n`` samples (readout
  oversampling 2). About ``pi / 2 * n`` spokes meet the Nyquist rate at the edge of k-space;
  the default is a quarter of that (4x undersampled).
- spiral: variable-density interleaves (:func:`mskjax.sampling.spiral`, ``alpha = 2``) of
  ``n / 64`` turns each, sampled at the Nyquist rate along the readout at the edge. 64 such
  interleaves put the rings one cycle per field of view apart at the edge; the default, 16, is
  4x undersampled there and denser towards the centre.

Maps come from ESPIRiT on the gridded centre of the non-Cartesian k-space
(:func:`mskjax.coils.espirit_nufft`, no Cartesian calibration scan). The reconstructions are
gridding (the density-compensated adjoint NUFFT, root-sum-of-squares over coils), NUFFT
CG-SENSE and L1-wavelet, both density-weighted, with the same density compensation ``d`` (the
analytic ramp of radial spokes or Pipe and Menon's iteration, on the project's scale:
``NUFFT.H(d * NUFFT(x)) ~= x``). They are scored against the root-sum-of-squares of the fully
sampled Cartesian k-space, the reference of the Cartesian demo.
"""

from __future__ import annotations

import importlib.util
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import coils, linop, metrics, recon, sampling
from ..sim import simulate_kspace

FUNC = "mskjax demo"
TRAJECTORIES = ("cartesian", "radial", "spiral")
DENSITIES = ("ramp", "pipe-menon")
#: The default undersampling of the non-Cartesian trajectories, relative to the Nyquist rate
#: at the edge of k-space.
UNDERSAMPLING = 4
#: Samples per radial spoke over the longer image axis (readout oversampling).
READOUT_OVERSAMPLING = 2
#: The spiral's density exponent (Kim et al. 2003) and the interleaves of ``n / 64`` turns that
#: meet the Nyquist rate at the edge: ``alpha * n / (2 * turns)``.
SPIRAL_ALPHA = 2.0
SPIRAL_NYQUIST_INTERLEAVES = 64
#: CG-SENSE and L1-wavelet settings: density weighting makes CG converge in few iterations,
#: after which it mostly amplifies noise at 4x.
CG_LAMDA, CG_ITERATIONS = 0.01, 10
L1_LAMDA, L1_ITERATIONS = 0.005, 30


def nyquist_spokes(n: int) -> int:
    """``ceil(pi / 2 * n)``: the spokes that meet the Nyquist rate at the edge of k-space."""
    return math.ceil(math.pi / 2 * n)


def _positive_count(value, option):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(f"{FUNC}: {option} must be a positive integer, got {value!r}")


def check_trajectory_options(*, trajectory, spokes, interleaves, density, acceleration,
                             center_fraction, checkpoint) -> None:
    """Refuse options that are wrong or make no sense together, before any work (one line)."""
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"{FUNC}: --trajectory must be one of {', '.join(TRAJECTORIES)}, got "
                         f"{trajectory!r}")
    _positive_count(spokes, "--spokes")
    _positive_count(interleaves, "--interleaves")
    if density is not None and density not in DENSITIES:
        raise ValueError(f"{FUNC}: --density must be one of {', '.join(DENSITIES)}, got "
                         f"{density!r}")
    if spokes is not None and trajectory != "radial":
        raise ValueError(f"{FUNC}: --spokes applies to --trajectory radial only, got "
                         f"--trajectory {trajectory}" + ("; use --interleaves"
                                                         if trajectory == "spiral" else ""))
    if interleaves is not None and trajectory != "spiral":
        raise ValueError(f"{FUNC}: --interleaves applies to --trajectory spiral only, got "
                         f"--trajectory {trajectory}" + ("; use --spokes"
                                                         if trajectory == "radial" else ""))
    if trajectory == "cartesian":
        if density is not None:
            raise ValueError(f"{FUNC}: --density applies to --trajectory radial or spiral "
                             "only (Cartesian k-space needs no density compensation)")
        return
    given = [name for name, value in (("--acceleration", acceleration),
                                      ("--center-fraction", center_fraction)) if value is not None]
    if given:
        what = "--spokes" if trajectory == "radial" else "--interleaves"
        raise ValueError(f"{FUNC}: {' and '.join(given)} set{'s' if len(given) == 1 else ''} "
                         f"the Cartesian mask; --trajectory {trajectory} is undersampled by "
                         f"{what}")
    if checkpoint is not None:
        raise ValueError(f"{FUNC}: --checkpoint is a Cartesian learned reconstruction; it "
                         f"does not apply to --trajectory {trajectory}")
    if density == "ramp" and trajectory == "spiral":
        raise ValueError(f"{FUNC}: --density ramp is the density of radial spokes; use "
                         "--density pipe-menon (the default) for --trajectory spiral")
    if importlib.util.find_spec("jax_finufft") is None:
        raise ImportError(f"{FUNC}: --trajectory {trajectory} needs jax-finufft",
                          name="jax-finufft")


def trajectory(kind: str, shape, count: int | None) -> tuple[jax.Array, dict]:
    """``(coords, description)`` of the demo's radial or spiral trajectory on ``shape``.

    Returns:
        coords ``(spokes or interleaves, samples, 2)`` float32 in cycles per field of view, and
        a JSON-ready dictionary of its settings and undersampling.
    """
    n = max(shape)
    if kind == "radial":
        nyquist = nyquist_spokes(n)
        spokes = count if count is not None else max(1, round(nyquist / UNDERSAMPLING))
        samples = READOUT_OVERSAMPLING * n
        coords = sampling.radial(spokes, samples, shape=shape, golden=True)
        factor = nyquist / spokes
        info = {"type": "golden-angle radial (mskjax.sampling.radial)", "spokes": spokes,
                "samples_per_spoke": samples, "readout_oversampling": READOUT_OVERSAMPLING,
                "nyquist_spokes": nyquist,
                "summary": f"golden-angle radial, {spokes} spokes of {samples} samples, "
                           f"{factor:.1f}x undersampled relative to the {nyquist} spokes "
                           f"(pi/2 x {n}) of the Nyquist rate"}
    else:
        interleaves = count if count is not None else SPIRAL_NYQUIST_INTERLEAVES // UNDERSAMPLING
        turns = n / 64
        samples = math.ceil(math.hypot(math.pi * turns * n, SPIRAL_ALPHA * n / 2)) + 1
        coords = sampling.spiral(interleaves, samples, shape=shape, alpha=SPIRAL_ALPHA,
                                 turns=turns)
        factor = SPIRAL_NYQUIST_INTERLEAVES / interleaves
        info = {"type": "variable-density spiral (mskjax.sampling.spiral)",
                "interleaves": interleaves, "samples_per_interleave": samples,
                "turns_per_interleave": turns, "alpha": SPIRAL_ALPHA,
                "nyquist_interleaves": SPIRAL_NYQUIST_INTERLEAVES,
                "summary": f"variable-density spiral, {interleaves} interleaves of {samples} "
                           f"samples, {factor:.1f}x undersampled at the edge of k-space "
                           f"relative to the {SPIRAL_NYQUIST_INTERLEAVES} interleaves of the "
                           "Nyquist rate (denser towards the centre)"}
    total = int(np.prod(coords.shape[:-1]))
    info.update({"samples": total, "samples_per_pixel": total / math.prod(shape),
                 "undersampling_factor": factor})
    return coords, info


def _timed(fn):
    start = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - start


def noncartesian_demo(image, *, kind, count, density_method, num_coils, snr_db, seed,
                      l1_lamda, bar):
    """Simulate, reconstruct and score one non-Cartesian scan of ``image``.

    Args:
        image: ``(rows, cols)`` image, real or complex, scaled to a maximum magnitude of 1.
        kind: ``"radial"`` or ``"spiral"``.
        count: spokes (radial) or interleaves (spiral); ``None`` for 4x undersampling.
        density_method: ``"ramp"``, ``"pipe-menon"`` or ``None`` (ramp for radial,
            Pipe-Menon for spiral).
        bar: a tqdm bar, advanced once per stage (4 stages).

    Returns:
        ``(report, target, recons, scores, coords)``: the report's fields for ``metrics.json``,
        the reference image, the magnitude reconstructions by name, their scores and the
        coordinates (for the figure).
    """
    shape = tuple(image.shape)
    if density_method is None:
        density_method = "ramp" if kind == "radial" else "pipe-menon"
    timings = {}

    bar.set_postfix_str(f"simulate {kind} k-space")
    start = time.perf_counter()
    key = jax.random.key(seed)
    simulated = simulate_kspace(image, key, num_coils=num_coils, snr_db=snr_db)
    target = np.asarray(recon.zero_filled(simulated.kspace))
    coords, info = trajectory(kind, shape, count)
    clean = linop.NufftSense(simulated.maps, coords)(simulated.image)
    _, noise_key = jax.random.split(key)  # simulate_kspace's noise key
    noise = jax.random.normal(noise_key, clean.shape, jnp.complex64) * simulated.noise_std
    kspace = jax.block_until_ready(clean + noise)
    timings["simulation"] = time.perf_counter() - start
    bar.update()

    bar.set_postfix_str(f"{density_method} density + ESPIRiT")
    if density_method == "ramp":
        density, timings["density"] = _timed(lambda: sampling.ramp_density(coords, shape=shape))
        density_text = "analytic ramp of the golden-angle spokes (mskjax.sampling.ramp_density)"
    else:
        density, timings["density"] = _timed(
            lambda: sampling.pipe_menon_density(coords, shape=shape))
        density_text = ("Pipe-Menon iteration, 30 iterations, kernel width 2.5 cycles per field "
                        "of view (mskjax.sampling.pipe_menon_density)")
    calib = min(24, max(8, min(shape) // 4))
    kernel = min(6, calib - 1)
    maps, timings["espirit"] = _timed(lambda: coils.espirit_nufft(
        kspace, coords, shape=shape, calib_width=calib, density=density, kernel_width=kernel))
    bar.update()

    bar.set_postfix_str("gridding + CG-SENSE + L1-wavelet")
    gridded, timings["gridding"] = _timed(
        lambda: recon.gridding(kspace, coords, shape=shape, density=density))
    cg, timings["cg_sense"] = _timed(lambda: recon.cg_sense(
        kspace, maps, coords=coords, density=density, lamda=CG_LAMDA,
        max_iter=CG_ITERATIONS).image)
    l1, timings["l1_wavelet"] = _timed(lambda: recon.l1_wavelet(
        kspace, maps, coords=coords, density=density, lamda=l1_lamda,
        max_iter=L1_ITERATIONS).image)
    recons = {"gridding": np.asarray(gridded), "CG-SENSE": np.abs(np.asarray(cg)),
              "L1-wavelet": np.abs(np.asarray(l1))}
    maps_text = (f"ESPIRiT maps from the gridded {calib} x {calib} centre of the {kind} "
                 f"k-space (mskjax.coils.espirit_nufft, kernel {kernel}), no calibration scan")
    methods = {
        "gridding": f"density-compensated adjoint NUFFT ({density_method} density), "
                    "root-sum-of-squares over coils",
        "CG-SENSE": f"NUFFT SENSE (Toeplitz normal operator), {maps_text}; least squares "
                    f"weighted by the {density_method} density, lamda {CG_LAMDA}, "
                    f"{CG_ITERATIONS} CG iterations",
        "L1-wavelet": f"the same operator and weighting, db4 wavelets, lamda {l1_lamda}, "
                      f"{L1_ITERATIONS} FISTA iterations",
    }
    bar.update()

    bar.set_postfix_str("metrics")
    gt = target[None]
    scores = {name: {"nmse": float(metrics.nmse(gt, x[None])),
                     "psnr_db": float(metrics.psnr(gt, x[None])),
                     "ssim": float(metrics.ssim(gt, x[None]))}
              for name, x in recons.items()}
    bar.update()
    timings = {f"{name}_s_including_compilation": value for name, value in timings.items()}
    timings["total_s"] = sum(timings.values())
    report = {
        "simulation": (f"{num_coils}-coil {kind} k-space simulated with normalised birdcage "
                       "maps" + ("" if np.iscomplexobj(image) else ", a smooth background phase")
                       + " and the NUFFT (mskjax.linop.NufftSense), complex Gaussian noise per "
                       f"sample as in the fully sampled Cartesian scan at {snr_db} dB SNR"),
        "shape": list(shape),
        "coils": num_coils,
        "trajectory": info,
        "density": {"method": density_method, "description": density_text},
        "reference": "root-sum-of-squares of the fully sampled simulated Cartesian k-space",
        "methods": methods,
        "metrics": scores,
        "timing_s": timings,
    }
    return report, target, recons, scores, np.asarray(coords)


def draw_trajectory(ax, coords, shape, title):
    """Each spoke or interleave of ``coords`` ``(lines, samples, 2)`` as a line in k-space
    (columns across, rows down, as the image is shown), coloured by acquisition order."""
    import matplotlib.pyplot as plt

    lines = coords.shape[0]
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, lines))
    width = 0.6 if lines <= 64 else 0.25
    for j in range(lines):
        ax.plot(coords[j, :, 1], coords[j, :, 0], color=colours[j], lw=width)
    ax.set_xlim(-shape[1] / 2, shape[1] / 2)
    ax.set_ylim(shape[0] / 2, -shape[0] / 2)
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("k along the columns (cycles/FOV)", fontsize=7)
    ax.set_ylabel("k along the rows", fontsize=7)
    ax.set_title(title, fontsize=9)
