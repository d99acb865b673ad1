# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Disease detection: a classifier, its activation maps, ROC with bootstrap intervals, and
# # k-space to diagnosis in one program
#
# We simulate sagittal knee MR slices through a cartilage lesion of graded conspicuity (or
# through the same place without one), train a small ResNet on some subjects, score it on
# others with the statistics clinical papers report, look at where it looks (Grad-CAM), and
# finally chain undersampling, a reconstruction net, a segmentation net and the classifier into
# one jitted function that trains end to end.
#
# Set `MSKJAX_TOY=1` to run at a small size (that is how CI runs this file).

# %%
import functools
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from mskjax import io, metrics, nets, pipeline, sampling, sim
from mskjax.cli._cam_figure import activation_map_figure
from mskjax.cli._cls_models import model_input
from mskjax.cli._train_cls import evaluate_cls, load_trained_cls, train_cls

TOY = os.environ.get("MSKJAX_TOY") == "1"
OUT = Path(os.environ.get("MSKJAX_NOTEBOOK_OUT", "notebook-figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="mskjax-detection-"))
SIZE = 64
TRAIN, TEST = (12, 12) if TOY else (400, 200)

# %% [markdown]
# ## Data: lesions from invisible to obvious
#
# `mskjax data make-cls-set --source lesion` in Python: each subject is one knee (its own
# anatomy, tissue parameters, noise) rendered realistically; half the subjects of each split
# carry a cartilage lesion whose size and contrast grow with a conspicuity drawn in [0, 1].
# The test subjects are never trained on.

# %%
data = WORK / "lesions"
io.make_classification_set(data, source="lesion", train_subjects=TRAIN, test_subjects=TEST,
                           size=SIZE, progress=not TOY)
test = io.read_classification_set(data, split="test")
positives = np.flatnonzero(test["label"] == 1)
order = positives[np.argsort(test["conspicuity"][positives])]
shown = order[np.linspace(0, len(order) - 1, 4).astype(int)]
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, i in zip(axes, shown):
    ax.imshow(test["image"][i], cmap="gray")
    ax.contour(test["mask"][i].astype(float), levels=[0.5], colors="r", linewidths=0.8)
    ax.set_title(f"conspicuity {test['conspicuity'][i]:.2f}")
    ax.axis("off")
fig.savefig(OUT / "05_lesions.png", dpi=90, bbox_inches="tight")

# %% [markdown]
# ## Train and score
#
# `mskjax train cls` and `mskjax eval cls` in Python: a ResNet with one basic block per stage
# (group normalisation), classes balanced, a few minutes on a CPU at full size.

# %%
run = WORK / "run"
train_cls(data=data, out=run, model="resnet-small", config={"width": 8 if TOY else 16},
          steps=5 if TOY else 3000, max_minutes=None if TOY else 4.0, batch_size=8 if TOY else 16,
          progress=not TOY)
result = evaluate_cls(checkpoint=run, data=data, num_samples=100 if TOY else 1000)
scores = result["scores"]
print(f"ROC AUC {scores['roc_auc']['estimate']:.3f} (95% CI {scores['roc_auc']['low']:.3f}-"
      f"{scores['roc_auc']['high']:.3f}); Youden point {scores['youden']}")
for row in scores["roc_auc_by_conspicuity"]:
    print(row)

# %% [markdown]
# The ROC curve with a bootstrap band: resample the held-out subjects (stratified by class),
# recompute the curve, and take the 2.5 and 97.5 percentiles of the sensitivity at each
# false-positive rate.

# %%
labels = np.asarray(result["labels"])
probs = np.asarray(scores["probabilities"])
fpr, tpr, _ = metrics.roc_curve(labels, probs)
grid = np.linspace(0, 1, 101)


def curve(y, p):
    f, t, _ = metrics.roc_curve(y, p)
    return np.interp(grid, f, t)


band = metrics.bootstrap(curve, labels, probs, num_samples=100 if TOY else 1000, seed=0)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.fill_between(grid, band.low, band.high, alpha=0.3, label="95% bootstrap band")
ax.plot(fpr, tpr, "k", label=f"AUC {scores['roc_auc']['estimate']:.3f}")
ax.plot([0, 1], [0, 1], ":", color="grey")
ax.set_xlabel("1 - specificity")
ax.set_ylabel("sensitivity")
ax.legend(loc="lower right")
fig.savefig(OUT / "05_roc.png", dpi=90, bbox_inches="tight")

# %% [markdown]
# ## Where does it look?
#
# Grad-CAM (`nets.grad_cam`) of the most confident positives and negatives, the true lesion
# outlined in white.

# %%
_, net, _ = load_trained_cls(run)
rank = np.argsort(-probs)
picks = [i for i in rank if labels[i] == 1][:2] + [i for i in rank if labels[i] == 0][:2]
maps = np.concatenate([np.asarray(nets.grad_cam(net, model_input("image", test["image"][i]),
                                                normalize=True)) for i in picks])
activation_map_figure(test["image"][picks], maps, path=OUT / "05_gradcam.png",
                      titles=[f"{'lesion' if labels[i] else 'no lesion'}: p={probs[i]:.2f}"
                              for i in picks],
                      outlines=[test["mask"][i] if labels[i] else None for i in picks])

# %% [markdown]
# ## From k-space to a diagnosis, in one function
#
# `pipeline.kspace_to_diagnosis` chains undersampling (8x, equispaced), a reconstruction net
# (MoDL), a segmentation net (a small U-Net) and a classifier that sees the reconstructed
# magnitude and the segmentation probabilities. `jax.jit(chain.apply)` is one XLA program; a
# loss on the diagnosis alone sends gradients back into every stage.

# %%
coils, classes = 4, 3
train_set = io.read_classification_set(data, split="train")
n = 8
images = np.concatenate([train_set["image"][:n // 2], train_set["image"][-n // 2:]])
label = np.concatenate([train_set["label"][:n // 2], train_set["label"][-n // 2:]])
keys = jax.random.split(jax.random.key(0), n)
simulated = jax.vmap(lambda im, k: sim.simulate_kspace(im, k, num_coils=coils,
                                                       snr_db=float("inf")))(
    jnp.asarray(images), keys)
batch = pipeline.Sample(kspace=simulated.kspace, maps=simulated.maps,
                        target=jnp.abs(simulated.image), label=jnp.asarray(label))
mask, _ = sampling.equispaced_mask((SIZE, SIZE), center_fraction=0.08, acceleration=8, seed=0)

chain = pipeline.kspace_to_diagnosis(
    mask=mask,
    reconstruction=lambda rngs: nets.MoDL(num_iterations=2, cg_iterations=4, num_layers=3,
                                          features=8, rngs=rngs),
    segmentation=lambda rngs: nets.Segmenter(nets.UNet(1, classes, chans=4, num_pool_layers=2,
                                                       rngs=rngs)),
    classifier=lambda rngs: nets.Classifier(
        nets.ResNet(1 + classes, layers=(1, 1, 1, 1), width=8, norm="group", rngs=rngs),
        nets.ClassifierHead(64, task="binary", rngs=rngs)))
params = chain.init(jax.random.key(1), jax.tree_util.tree_map(lambda a: a[0], batch))
diagnose = jax.jit(jax.vmap(chain.apply, in_axes=(None, 0)))
out = diagnose(params, batch)
print("probabilities of a lesion:", np.round(np.asarray(jax.nn.sigmoid(out.label[:, 0])), 3))

loss_fn = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                            weights={"classification": 1.0, "reconstruction": 0.1})
trainable, rest = pipeline.split_trainable(params)
grads = jax.grad(lambda p: loss_fn(pipeline.merge_trainable(p, rest), batch,
                                   jax.random.key(2))[0])(trainable)
for stage, g in grads.items():
    norm = float(optax.tree.norm(g)) if jax.tree_util.tree_leaves(g) else 0.0
    print(f"gradient reaching {stage:<12}: {norm:.3e}")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].imshow(np.asarray(batch.target[0]), cmap="gray")
axes[0].set_title("fully sampled")
axes[1].imshow(np.abs(np.asarray(out.image[0])), cmap="gray")
axes[1].set_title("8x, MoDL (untrained)")
axes[2].imshow(np.argmax(np.asarray(out.segmentation[0]), -1), cmap="viridis")
axes[2].set_title(f"segmentation; p(lesion) = {float(jax.nn.sigmoid(out.label[0, 0])):.2f}")
for ax in axes:
    ax.axis("off")
fig.savefig(OUT / "05_kspace_to_diagnosis.png", dpi=90, bbox_inches="tight")
