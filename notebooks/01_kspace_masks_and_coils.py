# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # k-space, masks and coils
#
# The building blocks of every reconstruction in mskjax: centred orthonormal FFTs, the
# undersampling masks (the five fastMRI Cartesian families, Poisson disc and variable density),
# simulated coil sensitivities and the SENSE operator with its adjoint.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np

from mskjax import coils, linop, sampling
from mskjax.recon import zero_filled
from mskjax.sim import knee_section

TOY = os.environ.get("MSKJAX_TOY") == "1"
SHAPE = (64, 48) if TOY else (320, 256)
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Undersampling masks
# The fastMRI masks are vectors over the phase-encode (last) axis, identical bit for bit to
# the `fastmri` package for the same seed. The 2D masks sample both phase-encode axes of a 3D
# acquisition.

# %%
kshape = (8, *SHAPE)
masks = {}
for name in ["random_mask", "equispaced_mask", "equispaced_fraction_mask", "magic_mask",
             "magic_fraction_mask"]:
    vector, num_low = getattr(sampling, name)(kshape, center_fraction=0.08, acceleration=4,
                                              seed=1)
    masks[name] = np.broadcast_to(vector, SHAPE)
masks["poisson_disc"] = sampling.poisson_disc(SHAPE, acceleration=6, calib=(8, 8), seed=1)
masks["variable_density"] = np.asarray(
    sampling.variable_density(jax.random.key(1), SHAPE, acceleration=6, calib=(8, 8)))

fig, axes = plt.subplots(1, len(masks), figsize=(2.2 * len(masks), 3), constrained_layout=True)
for ax, (name, mask) in zip(axes, masks.items()):
    ax.imshow(mask, cmap="gray", interpolation="nearest")
    ax.set_title(f"{name}\n{mask.size / mask.sum():.2f}x", fontsize=8)
    ax.axis("off")
fig.savefig(OUT / "masks.png", dpi=100)

# %% [markdown]
# ## Coil sensitivities and SENSE
# Birdcage maps, normalised so that the root-sum-of-squares over coils is one; the SENSE
# adjoint of fully sampled k-space then returns the image exactly.

# %%
image = knee_section(SHAPE).astype(jnp.complex64)
maps = coils.normalize_maps(coils.birdcage_maps(kshape))
A = linop.Sense(maps, mask=masks["equispaced_mask"])
kspace = A(image)
full = linop.Sense(maps)(image)
print("SENSE adjoint of full k-space recovers the image:",
      float(jnp.linalg.norm(linop.Sense(maps).H(full) - image) / jnp.linalg.norm(image)))

fig, axes = plt.subplots(2, 5, figsize=(11, 5), constrained_layout=True)
for c, ax in enumerate(axes[0, :4]):
    ax.imshow(np.abs(maps[c]), cmap="viridis")
    ax.set_title(f"|coil {c}|", fontsize=9)
axes[0, 4].imshow(np.angle(maps[0]), cmap="twilight")
axes[0, 4].set_title("phase, coil 0", fontsize=9)
panels = [(np.abs(image), "image"), (np.log10(np.abs(full[0]) + 1e-6), "log |k|, coil 0"),
          (np.log10(np.abs(kspace[0]) + 1e-6), "undersampled"),
          (np.asarray(zero_filled(kspace)), "zero-filled (rss)"),
          (np.abs(A.H(kspace)), "SENSE adjoint")]
for ax, (img, title) in zip(axes[1], panels):
    ax.imshow(img, cmap="gray")
    ax.set_title(title, fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
fig.savefig(OUT / "coils_and_sense.png", dpi=100)
