# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Learned reconstruction: an end-to-end VarNet against CG-SENSE
#
# We build a multi-coil training set from real axial knee images (simulated coils and noise,
# as `mskjax data make-kspace-set` does), train a small end-to-end VarNet for a few minutes
# with on-device augmentation, compare it with CG-SENSE on a held-out subject, and finally
# run fastMRI's PyTorch VarNet weights in JAX.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import os
import tempfile
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from mskjax import coils, metrics, nets, recon, train
from mskjax.cli._learned import sensitivity_maps
from mskjax.cli._train_recon import load_trained, train_recon
from mskjax.io import make_kspace_set

TOY = os.environ.get("MSKJAX_TOY") == "1"
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="mskjax-learned-"))


def shared_data():
    env = os.environ.get("MSKJAX_DATA")
    here = Path(globals().get("__file__", Path.cwd() / "notebook.py")).resolve()
    for path in ([Path(env)] if env else []) + [here.parents[2] / "shared" / "data"]:
        if (path / "knee_axial_rss" / "knee_axial_rss.npz").exists():
            return path / "knee_axial_rss" / "knee_axial_rss.npz"
    return None


# %% [markdown]
# ## A training set split by subject
# `knee_axial_rss.npz` holds one 320 x 256 slice for each of 16 subjects. The k-space set gets
# 8 birdcage coils, a smooth phase and noise at 30 dB per slice, and puts 12 subjects in
# `train/` and 4 in `val/`: no subject is in both. (Without the real data, simulated knee
# sections stand in.)

# %%
source = shared_data()
if source is None or TOY:
    from mskjax.sim import knee_section

    size = (48, 40) if TOY else (320, 256)
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(knee_section(size)) * rng.uniform(0.8, 1.2)
                       for _ in range(4 if TOY else 16)])
    if source is not None:  # toy size from the real knees: centre crops
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
# ## Training for a few minutes
# Every step draws a new fastMRI equispaced mask (4x, 8 % centre lines), new coil maps, phase,
# a left-right flip, a scale and noise, on the device, from the step's key. The loss is
# fastMRI's SSIM loss. Running the same cell again resumes from the last checkpoint.

# %%
config = ({"num_cascades": 2, "sens_chans": 2, "sens_pools": 2, "chans": 4, "pools": 2}
          if TOY else {"num_cascades": 6, "sens_chans": 4, "sens_pools": 3, "chans": 8,
                       "pools": 3})
run = WORK / "e2e-varnet"
summary = train_recon(data=kset, out=run, model="e2e-varnet", config=config, acceleration=4,
                      center_fraction=0.08, steps=4 if TOY else 100000,
                      max_minutes=None if TOY else 3.0, checkpoint_every=2 if TOY else 200,
                      progress=not TOY)
print(f"{summary['steps']} steps; final SSIM loss {summary['final_loss_mean_of_last_20']:.4f}")

history = train.read_metrics(run / "metrics.jsonl")
fig, ax = plt.subplots(figsize=(5, 3), constrained_layout=True)
ax.plot([r["step"] for r in history], [r["loss"] for r in history], lw=0.8)
ax.set_xlabel("step")
ax.set_ylabel("1 - SSIM")
ax.set_title("training loss")
fig.savefig(OUT / "03_training_loss.png", dpi=90)

# %% [markdown]
# ## A held-out slice: zero-filled, CG-SENSE and the VarNet
# The held-out subject is undersampled with fastMRI's mask for its file name, exactly as
# `mskjax eval recon` does.

# %%
from mskjax.cli._evaluate import read_fully_sampled  # noqa: E402
from mskjax.train import fastmri_eval_example  # noqa: E402

name, net, _ = load_trained(run)
path = sorted((kset / "val").glob("*.h5"))[0]
full = read_fully_sampled(path, "notebook")[0]
example = fastmri_eval_example(full, fname=path.name, acceleration=4, center_fraction=0.08)
num_low = int(example.extra["num_low_frequencies"])
maps = sensitivity_maps(example.kspace, num_low)
results = {
    "zero-filled": np.asarray(recon.zero_filled(example.kspace)),
    "CG-SENSE": np.abs(np.asarray(recon.cg_sense(example.kspace, maps, mask=example.mask,
                                                 lamda=0.01, max_iter=30).image)),
    "E2E-VarNet": np.asarray(jax.jit(lambda k, m: net(k, m))(example.kspace, example.mask)),
}
target = np.asarray(example.target)
fig, axes = plt.subplots(2, 4, figsize=(11, 6), constrained_layout=True)
vmax = float(np.percentile(target, 99.5))
axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
axes[0, 0].set_title("fully sampled")
axes[1, 0].axis("off")
for i, (label, image) in enumerate(results.items(), start=1):
    score = metrics.ssim(target, image)
    axes[0, i].imshow(image, cmap="gray", vmin=0, vmax=vmax)
    axes[0, i].set_title(f"{label}: SSIM {float(score):.3f}")
    axes[1, i].imshow(np.abs(image - target), cmap="inferno", vmin=0, vmax=vmax / 5)
    axes[1, i].set_title("|error| x 5")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.savefig(OUT / "03_held_out.png", dpi=90)

# %% [markdown]
# ## fastMRI's weights in JAX
# `nets.load_fastmri` builds an `E2EVarNet` (or a `UNet`) from a `fastmri.models.VarNet` state
# dict or `.pt` file, with the configuration read from the parameter shapes: people holding
# fastMRI's published knee checkpoints can run them here. A randomly initialised PyTorch
# VarNet shows that both give the same image.

# %%
try:
    import torch
    from fastmri.models import VarNet
except ImportError:
    print("torch and fastmri are not installed: skipping the comparison")
else:
    torch.manual_seed(0)
    reference = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2).eval()
    model = nets.load_fastmri(reference.state_dict())
    kspace = np.asarray(example.kspace)
    mask = np.asarray(example.mask)
    ours = np.asarray(model(kspace, mask))
    as_torch = torch.view_as_real(torch.from_numpy(kspace))[None]
    mask_torch = torch.from_numpy(mask).reshape(1, 1, 1, -1, 1)
    with torch.no_grad():
        theirs = reference(as_torch, mask_torch).numpy()[0]
    difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"max |JAX - PyTorch| / max |PyTorch| = {difference:.2e}")
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), constrained_layout=True)
    for ax, image, label in zip(axes, (theirs, ours, np.abs(ours - theirs)),
                                ("PyTorch VarNet", "mskjax E2EVarNet", "|difference|")):
        ax.imshow(image, cmap="gray")
        ax.set_title(label)
        ax.axis("off")
    fig.savefig(OUT / "03_fastmri_weights.png", dpi=90)

# %% [markdown]
# The sensitivity maps the VarNet learned are available too: `net.sensitivity_maps(kspace,
# mask)` returns them, `(coils, rows, cols)`, normalised to unit root-sum-of-squares.

# %%
learned_maps = np.asarray(net.sensitivity_maps(example.kspace, example.mask))
print("learned maps", learned_maps.shape, "RSS range",
      float(np.asarray(coils.rss(learned_maps, axis=0)).max()))
