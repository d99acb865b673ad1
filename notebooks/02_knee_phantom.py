# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The simulated knee
#
# A seeded, procedural 3D knee with exact labels: bones, cartilage plates, menisci, muscle,
# fat, tendons and joint fluid built from smooth implicit surfaces in mm, so that any
# resolution shows the same subject. From the labels, literature tissue parameters at 3 T and
# the signal equations give T1-weighted, fat-suppressed PD, multi-echo spin-echo and qDESS
# images; pathologies come with ground-truth masks; an AP radiograph shows osteoarthritis
# grades 0 to 4.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import os
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from mskjax import sim

TOY = os.environ.get("MSKJAX_TOY") == "1"
SHAPE = (32, 64, 64) if TOY else (128, 160, 160)
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)

COLOURS = ["#000000", "#e8d8b0", "#d9b36c", "#c9a0dc", "#00d5ff", "#ff4040", "#4060ff",
           "#ffd000", "#ff8000", "#a03030", "#f3f0b0", "#40ff40", "#ffffff", "#707070",
           "#b8b860", "#b07040"]
LABEL_CMAP = ListedColormap(COLOURS)


def show_labels(ax, labels, title, aspect=1.0):
    ax.imshow(labels, cmap=LABEL_CMAP, vmin=-0.5, vmax=len(COLOURS) - 0.5,
              interpolation="nearest", aspect=aspect)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def index_of(value, axis, phantom):
    """Voxel index along ``axis`` of a scanner coordinate (mm), as in the module docstring."""
    n, d = phantom.labels.shape[axis], phantom.voxel_size[axis]
    centred = value / d if axis == 0 else -value / d
    return int(np.clip(round(centred + (n - 1) / 2), 0, n - 1))


def planes(phantom, volume):
    """Sagittal through the medial condyle, coronal through the condyles, axial at the joint:
    name -> (image, aspect ratio of its pixels)."""
    a, (dx, dy, dz) = phantom.anatomy, phantom.voxel_size
    i = index_of(float(a.condyle_centres[0, 0]), 0, phantom)
    k = index_of(float(a.condyle_centres[:, 2].mean()), 2, phantom)
    j = index_of(float(a.translation[1]) + 1.0, 1, phantom)
    return {"sagittal (medial)": (volume[..., i, :, :], dy / dz),
            "coronal": (volume[..., :, :, k].swapaxes(-1, -2), dy / dx),
            "axial (joint line)": (volume[..., :, j, :].swapaxes(-1, -2), dz / dx)}


# %% [markdown]
# ## Labels
# One subject in three planes: sagittal (anterior to the left), coronal and axial (anterior at
# the top), patient's right on the left of coronal and axial images.

# %%
key = jax.random.key(7)
phantom = sim.knee_phantom(key, shape=SHAPE)
labels = np.asarray(phantom.labels)
print("voxel size (mm):", phantom.voxel_size, "axes:", phantom.axes)
voxel_ml = float(np.prod(phantom.voxel_size)) / 1000
for name, value in sim.KNEE_LABELS.items():
    print(f"{name:20s} {np.sum(labels == value) * voxel_ml:8.2f} mL")

fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), constrained_layout=True)
for ax, (title, (image, aspect)) in zip(axes, planes(phantom, labels).items()):
    show_labels(ax, image, title, aspect)
fig.legend(handles=[Patch(color=COLOURS[v], label=n) for n, v in sim.KNEE_LABELS.items()],
           loc="lower center", ncol=8, fontsize=8, bbox_to_anchor=(0.5, -0.12))
fig.savefig(OUT / "knee_labels.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## Many subjects
# Each key draws a different knee: size, bone shapes, cartilage thickness, pose.

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6.2), constrained_layout=True)
for ax, seed in zip(axes.ravel(), range(8)):
    p = sim.knee_phantom(jax.random.key(seed), shape=SHAPE)
    image, aspect = planes(p, np.asarray(p.labels))["sagittal (medial)"]
    thickness = float(p.anatomy.femoral_cartilage_thickness[0])
    show_labels(ax, image, f"key {seed}: femoral cartilage {thickness:.1f} mm", aspect)
fig.savefig(OUT / "knee_subjects.png", dpi=90)

# %% [markdown]
# ## Contrasts from the signal equations
# T1-weighted SPGR (fat bright, fluid dark), fat-suppressed PD fast spin echo (fluid bright,
# cartilage intermediate, fat dark), the late echo of a multi-echo spin echo (T2-weighted),
# the two qDESS echoes, and the T2 map fitted log-linearly to the multi-echo images.

# %%
render_key = jax.random.key(1)
images = {
    "T1 SPGR": sim.render(phantom, contrast="t1_spgr", key=render_key, texture=0.05, noise=0.002),
    "PD FSE fat-sat": sim.render(phantom, contrast="pd_fs", key=render_key, texture=0.05,
                                 noise=0.008),
}
mese = sim.render(phantom, contrast="mese", fat_suppressed=True)
images["MESE TE 80 ms"] = mese[-1]
dess = sim.render(phantom, contrast="qdess", key=render_key, texture=0.05, noise=0.002)
images["qDESS S+"], images["qDESS S-"] = dess[0], dess[1]
echo_times = np.arange(10.0, 90.0, 10.0)
logs = np.log(np.maximum(np.asarray(mese), 1e-6))
slope = np.polyfit(echo_times, logs.reshape(len(echo_times), -1), 1)[0].reshape(logs.shape[1:])
images["T2 map (ms, 0-100)"] = np.where(np.asarray(mese[0]) > 0.02, -1.0 / np.minimum(slope, -1e-3),
                                        0.0)

fig, axes = plt.subplots(2, 6, figsize=(17, 6.2), constrained_layout=True)
for col, (title, image) in enumerate(images.items()):
    image = np.asarray(image)
    views = planes(phantom, image)
    for row, plane in enumerate(["sagittal (medial)", "coronal"]):
        ax = axes[row, col]
        vmax = 100.0 if title.startswith("T2 map") else np.percentile(image, 99.95)
        view, aspect = views[plane]
        ax.imshow(view, cmap="magma" if title.startswith("T2") else "gray", vmin=0, vmax=vmax,
                  aspect=aspect)
        ax.set_title(f"{title}\n{plane}" if row == 0 else plane, fontsize=8)
        ax.axis("off")
fig.savefig(OUT / "knee_contrasts.png", dpi=100)

# %% [markdown]
# ## Pathology with exact masks
# The same subject with a focal femoral cartilage lesion, a posterior-horn meniscal tear,
# bone-marrow oedema in the medial tibia and an effusion, on fat-suppressed PD images; the
# masks are drawn as coloured outlines.

# %%
sick = sim.knee_phantom(key, shape=SHAPE, pathology={
    "cartilage_lesion": "medial_femoral", "meniscal_tear": "medial",
    "bone_marrow_oedema": "medial_tibial", "effusion": True})
pd_fs = np.asarray(sim.render(sick, contrast="pd_fs"))
outline = {"cartilage_lesion": "cyan", "meniscal_tear": "yellow", "bone_marrow_oedema": "lime",
           "effusion": "magenta"}
fig, axes = plt.subplots(1, 4, figsize=(15, 4.4), constrained_layout=True)
for ax, (name, colour) in zip(axes, outline.items()):
    mask = np.asarray(sick.pathology.masks[name])
    site = sim.PATHOLOGY_SITES[name][int(sick.pathology.site[name])]
    i = int(np.argmax(mask.sum(axis=(1, 2)))) if mask.any() else labels.shape[0] // 2
    ax.imshow(pd_fs[i], cmap="gray", vmin=0, vmax=np.percentile(pd_fs, 99.95),
              aspect=sick.voxel_size[1] / sick.voxel_size[2])
    if mask[i].any():
        ax.contour(mask[i], levels=[0.5], colors=colour, linewidths=1.2)
    ax.set_title(f"{name} ({site}), {int(mask.sum())} voxels", fontsize=9)
    ax.axis("off")
fig.savefig(OUT / "knee_pathology.png", dpi=100)

# %% [markdown]
# ## Realistic images for training
# Clean renderings are piecewise constant with sharp edges, which a segmentation net learns
# too easily. `sim.REALISTIC_RENDERING` adds partial volume (4 samples per pixel of a slice),
# receive-coil shading, Gibbs ringing, Rician noise at SNR 20 and smooth and trabecular
# texture; `sim.segmentation_example` draws a whole training subject from a key (anatomy, side,
# pathology, jittered tissue parameters, the realistic rendering and an elastic deformation of
# image and labels), here a sagittal slice.

# %%
medial = index_of(float(phantom.anatomy.condyle_centres[0, 0]), 0, phantom)
sagittal = sim.knee_phantom(key, shape=SHAPE, slice_axis=0, slice_index=medial)
aspect = sagittal.voxel_size[0] / sagittal.voxel_size[1]
panels = {}
for name, contrast in [("T1 SPGR", "t1_spgr"), ("PD FSE fat-sat", "pd_fs")]:
    panels[f"{name}, clean"] = sim.render(sagittal, contrast=contrast)
    panels[f"{name}, realistic"] = sim.render(sagittal, contrast=contrast,
                                              key=jax.random.key(2), **sim.REALISTIC_RENDERING)
example = sim.segmentation_example(jax.random.key(21), shape=SHAPE, slice_axis=0)
panels["segmentation_example"] = example.image
fig, axes = plt.subplots(1, 6, figsize=(18, 3.6), constrained_layout=True)
for ax, (title, image) in zip(axes, panels.items()):
    image = np.asarray(image)
    ax.imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image, 99.5), aspect=aspect)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
show_labels(axes[-1], np.asarray(example.labels), "its labels", aspect=aspect)
fig.savefig(OUT / "knee_realistic.png", dpi=100)

# %% [markdown]
# ## Radiographs, Kellgren-Lawrence-like grades 0 to 4
# One subject at every grade: the medial joint space narrows, osteophytes grow at the joint
# margins and the subchondral bone thickens. The measured minimum joint-space width is in each
# title.

# %%
xray = dict(shape=(96, 96), pixel_size=1.5, depth_samples=48) if TOY else {}
fig, axes = plt.subplots(1, 5, figsize=(17, 4.2), constrained_layout=True)
for grade, ax in enumerate(axes):
    r = sim.knee_radiograph(jax.random.key(3), grade=grade, **xray)
    image = np.asarray(r.image)
    ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.8))
    widths = np.asarray(r.joint_space_width)
    ax.set_title(f"grade {grade}: JSW medial {widths[0]:.1f}, lateral {widths[1]:.1f} mm",
                 fontsize=9)
    ax.axis("off")
fig.savefig(OUT / "knee_radiographs.png", dpi=100)
