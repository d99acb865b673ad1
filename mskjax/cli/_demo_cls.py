"""The demo's detection: a cartilage-lesion classifier, its held-out AUC and its activation maps.

Sagittal slices (64 x 64, 100 mm field of view) of simulated knees, through a cartilage lesion
or through the same place without one (:func:`mskjax.sim.lesion_detection_example`: realistic
rendering, SNR 10 to 30, conspicuity drawn in [0.4, 1] so that the lesions are visible to a
reader). A small ResNet (:mod:`mskjax.cli._cls_models` ``resnet-small``) is trained for
``steps`` steps on ``TRAIN`` subjects, or taken from a ``mskjax train cls`` run
(``checkpoint``), and scored on ``TEST`` other subjects: ROC AUC with a 95 % bootstrap
interval. ``detection.png`` shows the held-out positive and negative the net is most confident
about, each with its Grad-CAM map and the true lesion outlined.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from .. import metrics, sim, train
from ._cls_models import build_cls_model, model_input, normalise_example, predict_outputs
from ._run import optimizer

SIZE = 64
TRAIN, TEST = 160, 48
CONSPICUITY = (0.4, 1.0)


def _examples(seed, first, count):
    return sim.detection_set(num_subjects=count, seed=seed, kind="lesion", first_subject=first,
                             progress=False, shape=(SIZE, SIZE), conspicuity=CONSPICUITY)


def _train(seed, steps, images, labels):
    from .. import losses

    net, _ = build_cls_model("resnet-small", {"width": 8}, task="binary", num_classes=2,
                             seed=seed, func="mskjax demo")
    graphdef, params, rest = train.split_model(net)
    x = np.stack([normalise_example(i) for i in images])[..., None]

    def loss_fn(params, batch, key):
        outputs = train.merge_model(graphdef, params, rest)(batch["x"])
        return losses.classification_loss(batch["y"], outputs, task="binary"), {}

    opt = optimizer(2e-3)
    state = train.init_train_state(params, opt, key=seed)
    step = jax.jit(train.make_train_step(loss_fn, opt), donate_argnums=0)
    for s in range(steps):
        index = train.batch_indices(seed, s, num_examples=len(x), batch_size=16)
        state, _ = step(state, {"x": x[index], "y": labels[index]})
    model = train.merge_model(graphdef, state.params, rest)
    model.eval()
    return model


def detection(out: Path, *, seed: int, steps: int, checkpoint=None) -> dict:
    """Write ``detection.png`` into ``out``; return the report (module docstring)."""
    from .. import nets
    from ._cam_figure import activation_map_figure

    test = _examples(seed + 2000, TRAIN, TEST)
    if checkpoint is not None:
        from ._train_cls import load_trained_cls

        name, model, config = load_trained_cls(checkpoint, "mskjax demo")
        head = config["model"]["head"]
        if head["task"] != "binary" or config["train"].get("inputs") != "image":
            raise ValueError(f"mskjax demo: --cls-checkpoint must be a binary 2D classifier, "
                             f"got a {head['task']} {name}")
        shape = tuple(config["train"]["example_shape"])
        if shape != (SIZE, SIZE):
            test = sim.detection_set(num_subjects=TEST, seed=seed + 2000, kind="lesion",
                                     first_subject=TRAIN, progress=False, shape=shape,
                                     conspicuity=CONSPICUITY)
        source = f"{name} from {checkpoint} (step {config['step']})"
    else:
        trainset = _examples(seed + 2000, 0, TRAIN)
        model = _train(seed, steps, trainset["image"], trainset["label"])
        source = f"resnet-small (width 8) trained here for {steps} steps on {TRAIN} subjects"
    outputs = predict_outputs(model, "image", list(test["image"]))
    probs = 1.0 / (1.0 + np.exp(-outputs[:, 0]))
    labels = test["label"]
    auc = metrics.bootstrap(metrics.roc_auc, labels, probs, num_samples=500, seed=seed)
    positive = int(np.argmax(np.where(labels == 1, probs, -np.inf)))
    negative = int(np.argmax(np.where(labels == 0, probs, -np.inf)))
    picks = [positive, negative]
    maps = np.concatenate([np.asarray(nets.grad_cam(model, model_input("image", test["image"][i]),
                                                    normalize=True)) for i in picks])
    images = np.stack([normalise_example(test["image"][i]) for i in picks])
    titles = [f"lesion (c={test['conspicuity'][positive]:.2f}): p={probs[positive]:.2f}",
              f"no lesion: p={probs[negative]:.2f}"]
    activation_map_figure(images, maps, titles=titles, path=out / "detection.png",
                          outlines=[test["mask"][positive], None])
    return {"task": "cartilage lesion on a sagittal slice (simulated, realistic rendering, "
                    f"conspicuity {CONSPICUITY[0]} to {CONSPICUITY[1]})",
            "classifier": source, "held_out_subjects": TEST,
            "roc_auc": {"estimate": float(auc.estimate), "low": float(auc.low),
                        "high": float(auc.high)},
            "shown": {"positive_probability": float(probs[positive]),
                      "negative_probability": float(probs[negative])}}
