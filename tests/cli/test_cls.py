"""`mskjax data make-cls-set`, `train cls`, `eval cls` and `classify` at toy size."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mskjax import io
from mskjax.cli import main
from mskjax.cli._train_cls import SHIFT, _shift, auc_by_bins


@pytest.fixture(scope="module")
def lesion_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "lesions"
    code = main(["data", "make-cls-set", "--source", "lesion", "--out", str(out),
                 "--train-subjects", "6", "--test-subjects", "6", "--size", "64",
                 "--conspicuity", "0.8", "1.0", "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def lesion_run(lesion_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("cls-run") / "run"
    code = main(["train", "cls", "--model", "resnet-small", "--data", str(lesion_set), "--out",
                 str(run), "--steps", "4", "--batch-size", "4", "--checkpoint-every", "2",
                 "--config", "width=4", "--no-progress"])
    assert code == 0
    return run


def test_make_cls_set_splits_by_subject(lesion_set):
    manifest = json.loads((lesion_set / "manifest.json").read_text())
    assert manifest["task"] == "binary" and manifest["inputs"] == "image"
    assert manifest["splits"]["train"]["subjects"] == list(range(6))
    assert manifest["splits"]["test"]["subjects"] == list(range(6, 12))
    test = io.read_classification_set(lesion_set, split="test")
    assert test["image"].shape == (6, 64, 64) and test["mask"].shape == (6, 64, 64)
    # the mask is non-empty exactly for the positives, conspicuity drawn in the stated range
    np.testing.assert_array_equal(test["mask"].any(axis=(1, 2)), test["label"] == 1)
    c = test["conspicuity"][test["label"] == 1]
    assert np.all((c >= 0.8) & (c <= 1.0))


def test_train_eval_classify(lesion_set, lesion_run, tmp_path, capsys):
    summary = json.loads((lesion_run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["settings"]["training_subjects"] == list(range(6))
    code = main(["eval", "cls", "--checkpoint", str(lesion_run), "--data", str(lesion_set),
                 "--bootstrap", "50", "--json", str(tmp_path / "scores.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "ROC AUC" in out and "Youden point" in out
    result = json.loads((tmp_path / "scores.json").read_text())
    probs = np.asarray(result["scores"]["probabilities"])
    labels = np.asarray(result["labels"])
    assert result["scores"]["roc_auc"]["estimate"] == pytest.approx(
        roc_auc_score(labels, probs), abs=1e-12)
    # Training on test subjects is refused.
    code = main(["eval", "cls", "--checkpoint", str(lesion_run), "--data", str(lesion_set),
                 "--split", "train"])
    assert code == 2 and "were trained on" in capsys.readouterr().err
    # classify one held-out image and draw its activation map
    test = io.read_classification_set(lesion_set, split="test")
    np.save(tmp_path / "slice.npy", test["image"][0])
    code = main(["classify", str(tmp_path / "slice.npy"), "--checkpoint", str(lesion_run),
                 "--figure", str(tmp_path / "cam.png")])
    assert code == 0
    line = capsys.readouterr().out
    assert "cartilage lesion:" in line and (tmp_path / "cam.png").stat().st_size > 1000
    p = float(line.split("cartilage lesion: ")[1].split(")")[0])
    assert p == pytest.approx(probs[0], abs=1e-3)


def test_resume_and_transfer(lesion_set, lesion_run, tmp_path):
    # the same command resumes; a frozen backbone keeps its weights when fine-tuned
    code = main(["train", "cls", "--model", "resnet-small", "--data", str(lesion_set), "--out",
                 str(tmp_path / "ft"), "--steps", "3", "--batch-size", "4", "--config",
                 "width=4", "--init-backbone", str(lesion_run), "--backbone-lr", "0",
                 "--no-progress"])
    assert code == 0
    from mskjax.cli._train_cls import load_trained_cls

    _, base, _ = load_trained_cls(lesion_run)
    _, tuned, _ = load_trained_cls(tmp_path / "ft")
    from flax import nnx

    before = nnx.state(base.backbone, nnx.Param)
    after = nnx.state(tuned.backbone, nnx.Param)
    for a, b in zip(jax_leaves(before), jax_leaves(after)):
        np.testing.assert_array_equal(a, b)
    heads = [np.asarray(m.head.kernel[...]) for m in (base, tuned)]
    assert not np.array_equal(*heads)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_other_sources(tmp_path):
    for source, model, extra in (("radiograph-jsw", "resnet-small", ["--size", "64"]),
                                 ("tear", "multiview", ["--size", "32"])):
        data = tmp_path / source
        assert main(["data", "make-cls-set", "--source", source, "--out", str(data),
                     "--train-subjects", "2", "--test-subjects", "2", *extra,
                     "--no-progress"]) == 0
        run = tmp_path / f"run-{source}"
        assert main(["train", "cls", "--model", model, "--data", str(data), "--out", str(run),
                     "--steps", "2", "--batch-size", "2", "--config", "width=8",
                     "--no-progress"]) == 0
        assert main(["eval", "cls", "--checkpoint", str(run), "--data", str(data),
                     "--bootstrap", "20"]) == 0
    manifest = json.loads((tmp_path / "tear" / "manifest.json").read_text())
    assert manifest["inputs"] == "views" and manifest["task"] == "binary"
    jsw = io.read_classification_set(tmp_path / "radiograph-jsw")
    assert jsw["label"].dtype == np.float32 and np.all((jsw["label"] > 0) & (jsw["label"] < 10))


def test_real_lesion_set_drops_the_duplicate_scan(tmp_path, shared_data):
    out = tmp_path / "real"
    assert main(["data", "make-cls-set", "--source", "real-lesion", "--out", str(out),
                 "--images", str(shared_data / "knee_axial_rss" / "knee_axial_rss.npz"),
                 "--train-subjects", "3", "--test-subjects", "1", "--size", "32",
                 "--per-image", "1", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["dropped_duplicate_scans"] == ["knee"]
    subjects = [set(manifest["splits"][s]["subjects"]) for s in ("train", "test")]
    assert not subjects[0] & subjects[1] and len(subjects[0] | subjects[1]) == 15


def test_bad_input(lesion_set, lesion_run, tmp_path, capsys):
    code = main(["train", "cls", "--model", "multiview", "--data", str(lesion_set), "--out",
                 str(tmp_path / "x"), "--steps", "1", "--no-progress"])
    assert code == 2 and "multiview model needs" in capsys.readouterr().err
    code = main(["train", "cls", "--model", "resnet-small", "--data", str(tmp_path), "--out",
                 str(tmp_path / "y"), "--no-progress"])
    assert code == 2 and "no manifest.json" in capsys.readouterr().err
    code = main(["classify", str(tmp_path / "missing.npy"), "--checkpoint", str(lesion_run)])
    assert code == 2 and "no such file" in capsys.readouterr().err
    code = main(["data", "make-cls-set", "--source", "lesion", "--out", str(lesion_set),
                 "--no-progress"])
    assert code == 2 and "not an empty folder" in capsys.readouterr().err
    code = main(["train", "cls", "--model", "resnet-small", "--data", str(lesion_set), "--out",
                 str(tmp_path / "z"), "--backbone-lr", "0", "--no-progress"])
    assert code == 2 and "--backbone-lr needs --init-backbone" in capsys.readouterr().err
    code = main(["train", "cls", "--model", "resnet-small", "--data", str(lesion_set), "--out",
                 str(tmp_path / "w"), "--config", "norm=batch", "--no-progress"])
    assert code == 2 and "norm=batch is not supported" in capsys.readouterr().err


def test_shift_and_auc_by_bins():
    rng = np.random.default_rng(0)
    x = rng.random((2, 50, 40))
    shifted = _shift(np.random.default_rng(3), x.copy(), SHIFT)
    # a translation by at most 6 % per axis, the uncovered border filled from the edge
    found = []
    for a in range(-3, 4):
        for b in range(-2, 3):
            rolled = np.roll(x, (a, b), axis=(1, 2))
            inner = (slice(None), slice(max(a, 0), 50 + min(a, 0)),
                     slice(max(b, 0), 40 + min(b, 0)))
            if np.array_equal(rolled[inner], shifted[inner]):
                found.append((a, b))
                edge_row = shifted[:, max(a, 0) if a > 0 else 49 + a]
                assert np.all(shifted[:, :a] == edge_row[:, None]) if a > 0 else True
    assert len(found) == 1 and found[0] != (0, 0)
    labels = rng.integers(0, 2, 200)
    scores = rng.random(200) + labels * 0.3
    conspicuity = np.where(labels == 1, rng.random(200), np.nan)
    rows = auc_by_bins(labels, scores, conspicuity)
    for row in rows:
        low, high = row["conspicuity"]
        pos = (labels == 1) & (conspicuity >= low) & (conspicuity <= high if high == 1.0
                                                      else conspicuity < high)
        keep = pos | (labels == 0)
        assert row["positives"] == pos.sum()
        assert row["roc_auc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
