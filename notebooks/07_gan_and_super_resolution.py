# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # GANCS against its pixel-loss generator, DeepResolve against tricubic interpolation
#
# Two results of the review, each on real knees:
#
# 1. **GANCS** (Mardani et al. 2018): a residual generator whose output is projected onto the
#    measured data (an affine projection through the SENSE operator), trained with a pixel
#    loss plus a least-squares adversarial loss against a PatchGAN discriminator. We train it
#    and the same generator with the pixel loss alone on 8-coil k-space made from the real
#    axial knees (simulated birdcage coils and noise at 30 dB), undersample a held-out
#    subject 5x, and compare SSIM and two sharpness measures with CG-SENSE.
# 2. **DeepResolve** (Chaudhari et al. 2018): a 3D residual CNN restoring thin slices from a
#    thick-slice scan. Thick slices are simulated from the real 3D knee of `knee3d_fair` by
#    truncating k-space along the slice axis (`sim.thick_slice`); the net is trained on one
#    volume and tested on the other, against tricubic interpolation.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file). The benchmark
# scripts `benchmarks/gancs.py` and `benchmarks/super_resolution.py` run the full comparisons.

# %%
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import scipy.io
from flax import nnx

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from mskjax import metrics, nets, recon, sim, train
from mskjax.cli._learned import sensitivity_maps
from mskjax.cli._train_recon import load_trained, train_recon
from mskjax.io import make_kspace_set

TOY = os.environ.get("MSKJAX_TOY") == "1"
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="mskjax-gan-sr-"))


def shared_file(relative):
    env = os.environ.get("MSKJAX_DATA")
    here = Path(globals().get("__file__", Path.cwd() / "notebook.py")).resolve()
    for path in ([Path(env)] if env else []) + [here.parents[2] / "shared" / "data"]:
        if (path / relative).exists():
            return path / relative
    return None


# %% [markdown]
# ## A multi-coil knee set split by subject
# One 320 x 256 slice per real subject, 12 subjects for training and 4 held out. (At toy size,
# centre crops of four of them; without the data, simulated knee sections stand in.)

# %%
source = shared_file("knee_axial_rss/knee_axial_rss.npz")
if source is None or TOY:
    size = (48, 40) if TOY else (320, 256)
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(sim.knee_section(size)) * rng.uniform(0.8, 1.2)
                       for _ in range(4 if TOY else 16)])
    if source is not None:
        real = np.load(source)["images"][:4]
        images = real[:, 136:184, 108:148] / real.max()
    subjects = np.array([f"subject{i}" for i in range(len(images))])
    source = WORK / "images.npz"
    np.savez(source, images=images.astype(np.float32), subject=subjects)

kset = WORK / "kspace_set"
manifest = make_kspace_set(source, kset, num_coils=8, snr_db=30.0, seed=0,
                           recon_size=(320, 320), progress=False)
print({name: len(s) for name, s in manifest["splits"].items()}, "subjects")

# %% [markdown]
# ## GANCS and its pixel-loss twin
# The same generator (residual blocks, then the affine projection onto the sampled data with
# a few CG iterations), the same seed, data, masks (5x equispaced, 6 % centre lines) and
# steps; only the adversarial weight differs: 0.01 against 0. Each step also updates the
# discriminator (its own Adam), on magnitude images.

# %%
generator = ({"num_blocks": 1, "features": 4, "cg_iterations": 4} if TOY
             else {"num_blocks": 4, "features": 32, "cg_iterations": 4})
runs = {}
for label, weight in (("pixel loss only", 0.0), ("GANCS", 0.01)):
    run = WORK / label.replace(" ", "-")
    summary = train_recon(data=kset, out=run, model="gancs", config=generator, acceleration=5,
                          center_fraction=0.06, steps=3 if TOY else 100000,
                          max_minutes=None if TOY else 3.0, checkpoint_every=3 if TOY else 50,
                          adversarial_weight=weight, progress=not TOY)
    runs[label] = run
    print(f"{label}: {summary['steps']} steps, final loss "
          f"{summary['final_loss_mean_of_last_20']:.4f}")

# %% [markdown]
# ## A held-out slice at 5x
# The held-out subject is undersampled with fastMRI's mask for its file name, as
# `mskjax eval recon` does. Sharpness: the high-frequency energy ratio (the energy above a
# quarter of the maximum spatial frequency, relative to the fully sampled image; 1 is as sharp
# as the reference, lower is blurrier) and the gradient entropy (lower is sharper).

# %%
from mskjax.cli._evaluate import read_fully_sampled  # noqa: E402
from mskjax.train import fastmri_eval_example  # noqa: E402

path = sorted((kset / "val").glob("*.h5"))[0]
full = read_fully_sampled(path, "notebook")[0]
example = fastmri_eval_example(full, fname=path.name, acceleration=5, center_fraction=0.06)
num_low = int(example.extra["num_low_frequencies"])
maps = sensitivity_maps(example.kspace, num_low)
results = {"CG-SENSE": np.abs(np.asarray(recon.cg_sense(example.kspace, maps,
                                                        mask=example.mask, lamda=0.01,
                                                        max_iter=30).image))}
for label, run in runs.items():
    _, net, _ = load_trained(run)
    results[label] = np.abs(np.asarray(jax.jit(net)(example.kspace, example.mask, maps)))
target = np.asarray(example.target)
scores = {label: {"ssim": float(metrics.ssim(target[None], image[None])),
                  "hf": float(metrics.high_frequency_energy_ratio(target, image)),
                  "entropy": float(metrics.gradient_entropy(image))}
          for label, image in results.items()}
for label, s in scores.items():
    print(f"{label:16s} SSIM {s['ssim']:.4f}  HF ratio {s['hf']:.3f}  gradient entropy "
          f"{s['entropy']:.4f}")

fig, axes = plt.subplots(2, 4, figsize=(11, 6), constrained_layout=True)
vmax = float(np.percentile(target, 99.5))
axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
axes[0, 0].set_title("fully sampled")
axes[1, 0].axis("off")
for i, (label, image) in enumerate(results.items(), start=1):
    s = scores[label]
    axes[0, i].imshow(image, cmap="gray", vmin=0, vmax=vmax)
    axes[0, i].set_title(f"{label}\nSSIM {s['ssim']:.3f}, HF {s['hf']:.2f}", fontsize=9)
    axes[1, i].imshow(np.abs(image - target), cmap="inferno", vmin=0, vmax=vmax / 5)
    axes[1, i].set_title("|error| x 5", fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.savefig(OUT / "07_gancs.png", dpi=90)

# %% [markdown]
# ## Thick slices from a real 3D knee
# `knee3D.mat` holds two 3D knee volumes (128 x 64 x 128); axis 1 (64 voxels) is left-right,
# so the sagittal slices are `volume[:, k, :]` and the slice axis is 1. A thick-slice scan at
# factor 3 keeps the central third of k-space along it; tricubic interpolation (cubic
# B-splines, as `scipy.ndimage.zoom(order=3)`) brings it back to the thin grid, and
# DeepResolve learns the residual between that and the thin slices. (Without the data, two
# simulated knees stand in.)

# %%
FACTOR, AXIS = 3, 1
knee3d = shared_file("knee3d_fair/knee3D.mat")
if knee3d is not None:
    mat = scipy.io.loadmat(knee3d)
    volumes = [mat[name].astype(np.float32) / 255.0 for name in ("dataT", "dataR")]
else:
    volumes = [np.asarray(sim.render(sim.knee_phantom(jax.random.key(s), shape=(64, 64, 64)),
                                     contrast="pd_fs")) for s in (0, 1)]
    volumes = [v / v.max() for v in volumes]
if TOY:
    volumes = [v[40:88, 20:44, 40:88] for v in volumes]
n = volumes[0].shape[AXIS] // FACTOR * FACTOR
truth = [np.take(v, np.arange(n), axis=AXIS) for v in volumes]


def tricubic_input(volume):
    thick = sim.thick_slice(jnp.asarray(volume), factor=FACTOR, axis=AXIS)
    return recon.tricubic_upsample(thick, factor=FACTOR, axis=AXIS)


train_pair = (np.asarray(tricubic_input(truth[0])), truth[0])
test_input = np.asarray(tricubic_input(truth[1]))
print("thin", truth[1].shape, "thick", sim.thick_slice(truth[1], factor=FACTOR,
                                                       axis=AXIS).shape)

# %% [markdown]
# ## Training DeepResolve on the first volume
# Random 16-voxel patches (with flips) of the training volume, an L1 loss, Adam; volumes in
# units of the training volume's standard deviation. The last layer starts at zero, so the
# untrained net is tricubic interpolation exactly.

# %%
steps, patch, batch = (5, 12, 2) if TOY else (800, 16, 8)
scale = float(train_pair[1].std())
model = nets.DeepResolve(depth=3 if TOY else 4, features=4 if TOY else 8, rngs=nnx.Rngs(0))
model.kernels[-1][...] = jnp.zeros_like(model.kernels[-1][...])
graphdef, params, rest = train.split_model(model)


def loss_fn(p, data, key):
    pred = train.merge_model(graphdef, p, rest)(data["x"])
    return jnp.mean(jnp.abs(pred - data["y"])), {}


optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps, alpha=0.05))
state = train.init_train_state(params, optimizer, key=0)
step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)
rng = np.random.default_rng(0)
x_all, y_all = train_pair[0] / scale, train_pair[1] / scale
start, losses = time.perf_counter(), []
for s in range(steps):
    xs, ys = [], []
    for _ in range(batch):
        corner = [rng.integers(0, size - patch + 1) for size in x_all.shape]
        window = tuple(slice(c, c + patch) for c in corner)
        flip = tuple(a for a in range(3) if rng.random() < 0.5)
        xs.append(np.flip(x_all[window], flip))
        ys.append(np.flip(y_all[window], flip))
    state, out = step(state, {"x": jnp.asarray(np.stack(xs)[..., None]),
                              "y": jnp.asarray(np.stack(ys)[..., None])})
    losses.append(float(out["loss"]))
print(f"{steps} steps in {time.perf_counter() - start:.0f} s; loss {losses[0]:.4f} -> "
      f"{losses[-1]:.4f}")
net = train.merge_model(graphdef, state.params, rest)

# %% [markdown]
# ## The held-out volume: ground truth, DeepResolve, tricubic
# PSNR over the volume and SSIM over the planes that contain the slice axis (where thick
# slices show), for the second volume, which the net never saw.

# %%
restored = np.asarray(jax.jit(lambda v: net(v[None, ..., None] / scale)[0, ..., 0] * scale)(
    jnp.asarray(test_input)))
gt = truth[1]
planes = np.moveaxis(gt, 0, 0)
for label, volume in (("tricubic", test_input), ("DeepResolve", restored)):
    print(f"{label:12s} PSNR {float(metrics.psnr(jnp.asarray(gt), jnp.asarray(volume))):.2f} dB"
          f"  SSIM {float(metrics.ssim(jnp.asarray(gt), jnp.asarray(volume))):.4f}")

k = gt.shape[2] // 2  # a plane across the slice axis: the thick slices show as bands
fig, axes = plt.subplots(1, 3, figsize=(10, 4), constrained_layout=True)
for ax, (label, volume) in zip(axes, (("ground truth (thin slices)", gt),
                                      ("DeepResolve", restored),
                                      (f"tricubic from {FACTOR}x thick slices", test_input))):
    ax.imshow(volume[:, :, k].T, cmap="gray", vmin=0, vmax=float(np.percentile(gt, 99.5)),
              aspect=1.0)
    ax.set_title(label, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.savefig(OUT / "07_deepresolve.png", dpi=90)
