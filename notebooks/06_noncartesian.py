# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Non-Cartesian MRI: radial and spiral scans of a knee, density compensation, gridding
# # against CG-SENSE, ESPIRiT without a calibration scan, and the Toeplitz normal operator
#
# We simulate golden-angle radial and variable-density spiral scans of a real knee image
# (8 simulated coils, a smooth background phase, complex Gaussian noise), compensate the
# sampling density (the analytic ramp against Pipe and Menon's iteration), estimate coil maps
# by ESPIRiT from the gridded centre of the non-Cartesian k-space itself, reconstruct by
# gridding, NUFFT CG-SENSE and L1-wavelet, and time the Toeplitz normal operator against a
# forward and an adjoint NUFFT.
#
# Coordinates are in cycles per field of view (the units of sigpy and BART): on an axis of `n`
# pixels `-n/2 <= k <= n/2`, and `coords[..., 0]` runs along the image rows. A density
# compensation `d` is the k-space area a sample stands for, so that `NUFFT.H(d * NUFFT(x))`
# is about `x` and a fully sampled Cartesian grid has `d = 1`.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import math
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from mskjax import coils, linop, metrics, recon, sampling
from mskjax.sim import knee_section, simulate_kspace

TOY = os.environ.get("MSKJAX_TOY") == "1"
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)
NUM_COILS = 8


def shared_data():
    env = os.environ.get("MSKJAX_DATA")
    here = Path(globals().get("__file__", Path.cwd() / "notebook.py")).resolve()
    for path in ([Path(env)] if env else []) + [here.parents[2] / "shared" / "data"]:
        if (path / "knee_axial_rss" / "knee_axial_rss.npz").exists():
            return path / "knee_axial_rss" / "knee_axial_rss.npz"
    return None


# %% [markdown]
# ## The object and its coils
#
# One 320 x 256 slice of `knee_axial_rss.npz` (an axial knee, 3D FSE, root-sum-of-squares of a
# fully sampled scan); at toy size every fourth pixel (80 x 64). Without the real data a
# simulated knee cross-section stands in. `sim.simulate_kspace` gives the normalised birdcage
# maps, the smooth phase and the noise level of a 30 dB scan; the non-Cartesian k-space is
# `linop.NufftSense(maps, coords)` of the phased image plus noise of the same standard
# deviation per sample.

# %%
source = shared_data()
if source is not None:
    image = np.load(source)["images"][5].astype(np.float32)
    name = "knee_axial_rss.npz, slice 5"
else:
    image = np.asarray(knee_section((320, 256)))
    name = "simulated knee section"
if TOY:
    image = image[::4, ::4]
image = image / image.max()
SHAPE = image.shape
n = max(SHAPE)
key = jax.random.key(0)
simulated = simulate_kspace(image, key, num_coils=NUM_COILS, snr_db=30.0)
truth = np.abs(np.asarray(simulated.image))
noise_key = jax.random.split(key)[1]


def scan(coords):
    """Noisy multi-coil k-space ``(coils, *trajectory)`` on ``coords``."""
    clean = linop.NufftSense(simulated.maps, coords)(simulated.image)
    noise = jax.random.normal(noise_key, clean.shape, jnp.complex64) * simulated.noise_std
    return clean + noise


def scores(estimate):
    """NRMSE, PSNR (dB) and SSIM of a magnitude image against the noise-free object."""
    gt, x = truth[None], np.abs(np.asarray(estimate))[None]
    return {"NRMSE": math.sqrt(float(metrics.nmse(gt, x))), "PSNR": float(metrics.psnr(gt, x)),
            "SSIM": float(metrics.ssim(gt, x))}


print(f"{name}: {SHAPE[0]} x {SHAPE[1]}, {NUM_COILS} coils, noise std "
      f"{float(simulated.noise_std):.4f} per sample")

# %% [markdown]
# ## Two trajectories, both 4x undersampled at the edge of k-space
#
# - Golden-angle radial: full spokes 111.25 degrees apart, each of `2 n` samples (readout
#   oversampling 2). About `pi / 2 * n` spokes meet the Nyquist rate at the edge; we take a
#   quarter. Any run of consecutive golden-angle spokes covers k-space about evenly (the first
#   ten spokes are drawn in colour).
# - Variable-density spiral (`alpha = 2`, radius growing as the square of time): `n / 64`
#   turns per interleave, so 64 interleaves would put the rings one cycle per field of view
#   apart at the edge; 16 are 4x undersampled there, and denser towards the centre.

# %%
nyquist_spokes = math.ceil(math.pi / 2 * n)
spokes = round(nyquist_spokes / 4)
radial = sampling.radial(spokes, 2 * n, shape=SHAPE)
turns = n / 64
interleaves = 16
spiral_samples = math.ceil(math.hypot(math.pi * turns * n, n)) + 1
spiral = sampling.spiral(interleaves, spiral_samples, shape=SHAPE, alpha=2.0, turns=turns)
trajectories = {"radial": radial, "spiral": spiral}
kspace = {kind: scan(coords) for kind, coords in trajectories.items()}
for kind, coords in trajectories.items():
    print(f"{kind}: coords {tuple(coords.shape)}, {coords[..., 0].size} samples for "
          f"{math.prod(SHAPE)} pixels")

fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
for j in range(spokes):
    colour = plt.get_cmap("tab10")(j) if j < 10 else "0.75"
    axes[0].plot(radial[j, :, 1], radial[j, :, 0], color=colour, lw=1.2 if j < 10 else 0.3)
axes[0].set_title(f"golden-angle radial\n{spokes} of the {nyquist_spokes} spokes of the "
                  "Nyquist rate", fontsize=10)
for j in range(interleaves):
    axes[1].plot(spiral[j, :, 1], spiral[j, :, 0], lw=0.5)
axes[1].set_title(f"variable-density spiral\n{interleaves} interleaves, {turns:g} turns each",
                  fontsize=10)
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlim(-SHAPE[1] / 2, SHAPE[1] / 2)
    ax.set_ylim(SHAPE[0] / 2, -SHAPE[0] / 2)
    ax.set_xlabel("k along the columns (cycles/FOV)")
axes[0].set_ylabel("k along the rows (cycles/FOV)")
fig.tight_layout()
fig.savefig(OUT / "06_trajectories.png", dpi=100)

# %% [markdown]
# ## Density compensation: the ramp against Pipe-Menon
#
# Radial spokes crowd the centre of k-space: a sample at radius `|k|` stands for an area
# growing as `|k|` (`sampling.ramp_density`, analytic, with each golden-angle spoke weighted
# by the angle it covers). `sampling.pipe_menon_density` finds the weights of any trajectory
# by iterating `d <- d / (C * d)` with a Kaiser-Bessel kernel `C`. Where the samples are
# further apart than the kernel (the outer part of an undersampled scan) it gives less than
# the area, which damps the noisiest, most undersampled samples. Gridding is the adjoint NUFFT
# of the density-weighted samples.

# %%
density = {
    ("radial", "ramp"): sampling.ramp_density(radial, shape=SHAPE),
    ("radial", "Pipe-Menon"): sampling.pipe_menon_density(radial, shape=SHAPE),
    ("spiral", "Pipe-Menon"): sampling.pipe_menon_density(spiral, shape=SHAPE),
}
gridded = {}
for (kind, method), d in density.items():
    gridded[kind, method] = recon.gridding(kspace[kind], trajectories[kind], shape=SHAPE,
                                           density=d)
for kind in trajectories:
    plain = recon.gridding(kspace[kind], trajectories[kind], shape=SHAPE)
    gridded[kind, "none"] = plain * (np.vdot(truth, plain) / np.vdot(plain, plain)).real
for (kind, method), x in gridded.items():
    s = scores(x)
    print(f"gridding {kind:6s} {method:10s} NRMSE {s['NRMSE']:.3f}  PSNR {s['PSNR']:.2f} dB  "
          f"SSIM {s['SSIM']:.3f}" + ("  (no density: scaled to fit)" if method == "none" else ""))

fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
radius = np.linalg.norm(np.asarray(radial) / (np.asarray(SHAPE) / 2), axis=-1).ravel() * n / 2
order = np.argsort(radius)
for method in ("ramp", "Pipe-Menon"):
    values = np.asarray(density["radial", method]).ravel()[order]
    axes[0].plot(radius[order], values, ".", ms=1, label=method)
axes[0].set_xlabel("|k| (cycles/FOV on the longer axis)")
axes[0].set_title("radial density compensation")
axes[0].legend(markerscale=8)
spiral_radius = np.linalg.norm(np.asarray(spiral) / (np.asarray(SHAPE) / 2), axis=-1) * n / 2
axes[1].plot(spiral_radius.ravel(), np.asarray(density["spiral", "Pipe-Menon"]).ravel(), ".",
             ms=1)
axes[1].set_xlabel("|k| (cycles/FOV on the longer axis)")
axes[1].set_title("spiral, Pipe-Menon")
for ax, key_ in zip(axes[2:], [("radial", "ramp"), ("radial", "Pipe-Menon")]):
    ax.imshow(np.abs(np.asarray(gridded[key_])), cmap="gray", vmin=0, vmax=truth.max())
    ax.set_title(f"gridding, {key_[1]}: NRMSE {scores(gridded[key_])['NRMSE']:.3f}")
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "06_density.png", dpi=100)

# %% [markdown]
# ## ESPIRiT from the gridded centre
#
# No Cartesian calibration scan: `coils.espirit_nufft` grids the density-weighted samples near
# the centre of k-space onto the Cartesian grid (a 24 x 24 region, with a margin) and runs
# ESPIRiT on it. The maps are compared with the simulated ones where the object is, up to the
# common phase ESPIRiT cannot know: `1 - |<S_est, S_true>|` (the inner product over coils of
# two unit-norm maps) is 0 for equal maps.

# %%
calib = min(24, max(8, min(SHAPE) // 4))
maps = {}
for kind, coords in trajectories.items():
    d = density[kind, "ramp" if kind == "radial" else "Pipe-Menon"]
    maps[kind] = coils.espirit_nufft(kspace[kind], coords, shape=SHAPE, calib_width=calib,
                                     density=d, kernel_width=min(6, calib - 1))
inside = truth > 0.1 * truth.max()
for kind, estimate in maps.items():
    mismatch = 1 - np.abs(np.sum(np.conj(np.asarray(estimate)) * np.asarray(simulated.maps), 0))
    print(f"{kind}: 1 - |<S_est, S_true>| inside the object: median "
          f"{np.median(mismatch[inside]):.1e}, 95th percentile "
          f"{np.percentile(mismatch[inside], 95):.1e}")

fig, axes = plt.subplots(2, 4, figsize=(11, 5.6))
for column, coil in enumerate((0, 2, 4, 6)):
    axes[0, column].imshow(np.abs(np.asarray(simulated.maps[coil])), cmap="gray", vmin=0, vmax=1)
    axes[0, column].set_title(f"simulated coil {coil}")
    axes[1, column].imshow(np.abs(np.asarray(maps["radial"][coil])), cmap="gray", vmin=0, vmax=1)
    axes[1, column].set_title(f"ESPIRiT from radial, coil {coil}")
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "06_espirit.png", dpi=100)

# %% [markdown]
# ## Gridding against NUFFT CG-SENSE and L1-wavelet
#
# `recon.cg_sense` and `recon.l1_wavelet` with `coords=` use `linop.NufftSense`; with
# `density=` they solve the density-weighted least squares `||sqrt(d) (F S x - y)||^2`,
# which converges in few iterations (10 here: more mostly amplify noise at 4x).

# %%
results = {}
for kind, coords in trajectories.items():
    d = density[kind, "ramp" if kind == "radial" else "Pipe-Menon"]
    results[kind, "gridding"] = gridded[kind, "ramp" if kind == "radial" else "Pipe-Menon"]
    results[kind, "CG-SENSE"] = recon.cg_sense(kspace[kind], maps[kind], coords=coords,
                                               density=d, lamda=0.01, max_iter=10).image
    results[kind, "L1-wavelet"] = recon.l1_wavelet(kspace[kind], maps[kind], coords=coords,
                                                   density=d, lamda=0.005, max_iter=30).image
table = {key_: scores(x) for key_, x in results.items()}
print(f"{'':8s}{'method':12s}{'NRMSE':>8s}{'PSNR':>8s}{'SSIM':>8s}")
for (kind, method), s in table.items():
    print(f"{kind:8s}{method:12s}{s['NRMSE']:8.3f}{s['PSNR']:8.2f}{s['SSIM']:8.3f}")

fig, axes = plt.subplots(2, 4, figsize=(13, 7))
for row, kind in enumerate(trajectories):
    axes[row, 0].imshow(truth, cmap="gray", vmin=0, vmax=truth.max())
    axes[row, 0].set_title("object")
    for column, method in enumerate(("gridding", "CG-SENSE", "L1-wavelet"), start=1):
        s = table[kind, method]
        axes[row, column].imshow(np.abs(np.asarray(results[kind, method])), cmap="gray",
                                 vmin=0, vmax=truth.max())
        axes[row, column].set_title(f"{kind}, {method}\nNRMSE {s['NRMSE']:.3f}, "
                                    f"{s['PSNR']:.1f} dB, SSIM {s['SSIM']:.3f}", fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "06_reconstructions.png", dpi=100)

# %% [markdown]
# ## The Toeplitz normal operator
#
# CG-SENSE applies `A.H A` every iteration. `NufftSense.N` is a Toeplitz embedding: the
# point-spread function of the trajectory on a grid twice the size is computed once (one
# type-1 NUFFT), and each application is then two FFTs per coil, with no interpolation.
# Against a forward and an adjoint NUFFT (`toeplitz=False`), both jitted, median of repeats:

# %%
operator = linop.NufftSense(maps["radial"], radial)
x = jnp.asarray(results["radial", "CG-SENSE"])
normal = operator.N  # the kernel is computed here, once
applied = jax.jit(lambda op, v: op(v))
direct = jax.jit(lambda op, v: op.H(op(v)))


def median_time(fn, repeats=5 if TOY else 10):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


fast = median_time(lambda: applied(normal, x))
slow = median_time(lambda: direct(operator, x))
difference = float(jnp.linalg.norm(applied(normal, x) - direct(operator, x))
                   / jnp.linalg.norm(direct(operator, x)))
print(f"radial {tuple(radial.shape[:-1])}, {NUM_COILS} coils, image {SHAPE}: Toeplitz "
      f"{1e3 * fast:.1f} ms, forward + adjoint NUFFT {1e3 * slow:.1f} ms "
      f"({slow / fast:.1f}x), relative difference {difference:.1e}")
