# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Segmentation and quantitative knee MRI
#
# We simulate labelled knees with the realistic rendering (partial volume, receive bias, Gibbs
# ringing, Rician noise, trabecular texture, elastic deformation), train a 2D U-Net on the
# sagittal slices of some subjects, segment a held-out subject, clean and refine the result,
# measure cartilage thickness, and finally map T2 (qDESS) and T1rho of the real knee.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import json
import os
import tempfile
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from mskjax import io, metrics, quant, refine, sim
from mskjax.cli._train_seg import load_trained_seg, predict_labels, train_seg

TOY = os.environ.get("MSKJAX_TOY") == "1"
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="mskjax-seg-"))
SHAPE = (16, 32, 32) if TOY else (64, 128, 128)
L = sim.KNEE_LABELS


def shared_data():
    env = os.environ.get("MSKJAX_DATA")
    here = Path(globals().get("__file__", Path.cwd() / "notebook.py")).resolve()
    for path in ([Path(env)] if env else []) + [here.parents[2] / "shared" / "data"]:
        if (path / "knee_sagittal_qdess_t1rho").is_dir():
            return path / "knee_sagittal_qdess_t1rho"
    return None


# %% [markdown]
# ## 1. The clean and the realistic phantom
#
# The same subject, rendered clean (piecewise-constant tissues) and with
# `sim.REALISTIC_RENDERING`.

# %%
key = jax.random.key(3)
clean = sim.segmentation_example(key, shape=SHAPE, realistic=False, deform=False)
real = sim.segmentation_example(key, shape=SHAPE, realistic=True, deform=False)
i = SHAPE[0] // 2 + SHAPE[0] // 8
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
axes[0].imshow(np.asarray(clean.image)[i], cmap="gray")
axes[0].set_title("clean")
axes[1].imshow(np.asarray(real.image)[i], cmap="gray")
axes[1].set_title(f"realistic {sim.REALISTIC_RENDERING}", fontsize=6)
axes[2].imshow(np.asarray(real.labels)[i], cmap="tab20", vmin=0, vmax=15,
               interpolation="nearest")
axes[2].set_title("exact labels")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "04_phantom_clean_realistic.png", dpi=90)

# %% [markdown]
# ## 2. Train a U-Net on simulated subjects, segment a held-out one
#
# `io.make_segmentation_set` writes NIfTI image/label pairs (what `mskjax data make-seg-set`
# does); `train_seg` is `mskjax train seg`. Subjects in `test/` are never trained on.

# %%
data = WORK / "set"
io.make_segmentation_set(data, train_subjects=2 if TOY else 12, test_subjects=1,
                         shape=SHAPE, contrasts="pd_fs", progress=False)
config = {"chans": 4, "num_pool_layers": 2} if TOY else {"chans": 16, "num_pool_layers": 4}
summary = train_seg(data=data, out=WORK / "unet", model="unet", config=config,
                    steps=3 if TOY else 100000, max_minutes=None if TOY else 4.0,
                    batch_size=2 if TOY else 8, progress=False)
print(f"trained {summary['steps']} steps in {summary['training_s_this_session']:.0f} s")

name, net, run = load_trained_seg(WORK / "unet")
pairs = io.segmentation_pairs(data, "test")
image = io.read_nifti(pairs[0][1]).array
truth = io.read_labels(pairs[0][2]).array
spacing = tuple(160.0 / n for n in SHAPE)
labels, probs = predict_labels(name, net, image, num_classes=16, clean_up=False)
cleaned = np.asarray(refine.largest_component(labels, num_classes=16))

# %% [markdown]
# ## 3. Refinement towards image edges
#
# `refine.refine_probabilities` solves the convex geodesic Potts model: the net's
# negative log-probabilities as data term and an edge-weighted boundary length, so boundaries
# move to image edges and small spurious pieces disappear.

# %%
refined_probs = np.asarray(refine.refine_probabilities(probs, image, spacing=spacing,
                                                       num_iter=20 if TOY else 200))
refined = np.asarray(refine.largest_component(np.argmax(refined_probs, -1), num_classes=16))
rows = {}
for title, pred in (("net", labels), ("largest component", cleaned), ("refined", refined)):
    scores = metrics.segmentation_scores(pred, truth, num_classes=16, spacing=spacing)
    rows[title] = {"mean Dice": metrics.mean_over_classes(scores.dice),
                   "femoral cartilage Dice": float(scores.dice[L["femoral_cartilage"]]),
                   "femur ASSD mm": float(scores.assd[L["femur"]])}
print(json.dumps(rows, indent=1))

fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, (title, lab) in zip(axes, (("truth", truth), ("net", labels),
                                   ("largest component", cleaned), ("refined", refined))):
    ax.imshow(image[i], cmap="gray")
    ax.imshow(np.ma.masked_equal(lab[i], 0), cmap="tab20", vmin=0, vmax=15, alpha=0.5,
              interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "04_segmentation.png", dpi=90)

# %% [markdown]
# ## 4. Cartilage thickness
#
# From the exact labels of a finer phantom (0.5 mm voxels around the medial compartment), the
# thickness of the femoral and tibial cartilage at each bone-cartilage interface voxel,
# against the thickness the phantom was drawn with.

# %%
key = jax.random.key(0)
coarse = sim.knee_phantom(key, shape=(16, 16, 16))
centre = np.asarray(coarse.anatomy.condyle_centres[0])
fine = sim.knee_phantom(key, shape=(8, 24, 24) if TOY else (16, 64, 64), voxel_size=0.5,
                        centre=(centre[0], float(centre[1]) - 20.0, centre[2]))
lab = np.asarray(fine.labels)
drawn = {"femoral_cartilage": float(fine.anatomy.femoral_cartilage_thickness[0]),
         "tibial_cartilage": float(fine.anatomy.tibial_cartilage_thickness[0])}
bone = {"femoral_cartilage": (lab == L["femur"]) | (lab == L["cortical_bone"]),
        "tibial_cartilage": (lab == L["tibia"]) | (lab == L["cortical_bone"])}
for tissue in drawn:
    if not (lab == L[tissue]).any():
        print(f"{tissue}: not in this field of view")
        continue
    try:
        result = quant.cartilage_thickness(lab == L[tissue], spacing=0.5,
                                           bone_mask=bone[tissue])
    except ValueError as err:  # e.g. a toy-size field of view cuts the plate off its bone
        print(f"{tissue}: {err}")
        continue
    print(f"{tissue}: mean {float(result.mean_thickness):.2f} mm, drawn {drawn[tissue]:.2f} mm")

fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(lab[lab.shape[0] // 2], cmap="tab20", vmin=0, vmax=15, interpolation="nearest")
ax.set_title("0.5 mm phantom, medial compartment")
ax.axis("off")
fig.savefig(OUT / "04_thickness_region.png", dpi=90)

# %% [markdown]
# ## 5. T2 (qDESS) and T1rho of the real knee
#
# The qDESS T2 of Sveinsson et al. from the S+ and S- echoes, with the spoiler area and
# duration read from the GE DICOM header; the T1rho map by Levenberg-Marquardt over the four
# spin-lock times. The real knee is one sagittal slice stack of the pyKNEEr demo subject.

# %%
folder = shared_data()
if folder is None:
    print("knee_sagittal_qdess_t1rho not found: set MSKJAX_DATA to the shared data folder")
else:
    dicom = folder / "dicom_midslice"
    params = io.read_qdess_parameters(sorted(dicom.glob("DESS_01_*.dcm"))[0])
    with np.load(folder / "knee_qdess_t1rho_8slices.npz") as archive:
        dess = archive["dess"].astype(np.float32)
        t1rho = archive["cubequant_t1rho"].astype(np.float32)
    crop = (slice(3, 5), slice(128, 384), slice(128, 384)) if TOY else (slice(None),) * 3
    t2 = quant.qdess_t2(dess[0][crop], dess[1][crop], tr=params.tr, te=params.te,
                        flip_angle=params.flip_angle, gl_area=params.gl_area, tg=params.tg)
    fit = quant.fit_relaxation(t1rho[(slice(None), *crop)], [1.0, 10.0, 30.0, 60.0],
                               mask=t1rho[0][crop] > np.percentile(t1rho[0], 60))
    k = t2.t2.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].imshow(dess[0][crop][k], cmap="gray")
    axes[0].set_title("qDESS S+")
    shown = axes[1].imshow(np.where(np.asarray(t2.valid)[k], np.asarray(t2.t2)[k], np.nan),
                           cmap="magma", vmin=0, vmax=80)
    axes[1].set_title(f"qDESS T2 (ms), GL area {params.gl_area:g}, TG {params.tg:g} us")
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    shown = axes[2].imshow(np.where(np.asarray(fit.valid)[k], np.asarray(fit.time_constant)[k],
                                    np.nan), cmap="viridis", vmin=0, vmax=100)
    axes[2].set_title("T1rho (ms)")
    fig.colorbar(shown, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT / "04_real_knee_t2_t1rho.png", dpi=90)
    print(f"valid T2 voxels: {float(np.mean(np.asarray(t2.valid))):.1%}; "
          f"valid T1rho voxels in the mask: {float(np.mean(np.asarray(fit.valid))):.1%}")
