"""`mskjax data make-seg-set`, `train seg`, `eval seg` and `segment` at toy size."""

import json

import numpy as np
import pytest

from mskjax.cli import main
from mskjax.io import read_labels, read_nifti, write_nifti

SHAPE = ["16", "32", "32"]


@pytest.fixture(scope="module")
def seg_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("segset") / "set"
    code = main(["data", "make-seg-set", "--out", str(out), "--train-subjects", "2",
                 "--test-subjects", "1", "--shape", *SHAPE, "--contrasts", "pd_fs,t1_spgr",
                 "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def unet_run(seg_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "unet"
    code = main(["train", "seg", "--model", "unet", "--data", str(seg_set), "--out", str(run),
                 "--steps", "4", "--batch-size", "2", "--checkpoint-every", "2",
                 "--config", "chans=4", "num_pool_layers=2", "--no-progress"])
    assert code == 0
    return run


def test_make_seg_set_writes_nifti_pairs_with_ras_affine(seg_set):
    manifest = json.loads((seg_set / "manifest.json").read_text())
    assert manifest["splits"] == {"train": ["subject-000", "subject-001"],
                                  "test": ["subject-002"]}
    image = read_nifti(seg_set / "train" / "subject-000_image.nii.gz")
    labels = read_labels(seg_set / "train" / "subject-000_labels.nii.gz")
    assert image.array.shape == labels.array.shape == (16, 32, 32)
    assert image.voxel_size == pytest.approx((10.0, 5.0, 5.0))
    import nibabel.orientations as ornt
    assert ornt.aff2axcodes(image.affine) == ("L", "I", "P")
    # the volume is centred on the origin
    centre = image.affine @ np.array([7.5, 15.5, 15.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert set(np.unique(labels.array)) <= set(range(16)) and labels.array.max() > 3
    assert np.percentile(image.array, 99) == pytest.approx(1.0, rel=1e-3)


def test_make_seg_set_refuses_a_used_folder_and_bad_contrast(seg_set, tmp_path, capsys):
    assert main(["data", "make-seg-set", "--out", str(seg_set), "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["data", "make-seg-set", "--out", str(tmp_path / "x"), "--contrasts", "ct",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "contrasts" in err and err.count("\n") == 1


def test_train_seg_resumes_to_the_same_parameters(seg_set, unet_run, tmp_path):
    summary = json.loads((unet_run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["skipped_steps"] == 0
    losses = [json.loads(line)["loss"] for line in (unet_run / "metrics.jsonl").open()]
    assert len(losses) == 4 and all(np.isfinite(losses))
    # two steps, then two more, equal four in one go
    split = tmp_path / "split"
    args = ["train", "seg", "--model", "unet", "--data", str(seg_set), "--out", str(split),
            "--batch-size", "2", "--checkpoint-every", "2", "--config", "chans=4",
            "num_pool_layers=2", "--no-progress"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4"]) == 0
    from mskjax.cli._train_seg import load_trained_seg
    import jax
    _, a, _ = load_trained_seg(unet_run)
    _, b, _ = load_trained_seg(split)
    from flax import nnx
    for x, y in zip(jax.tree.leaves(nnx.state(a, nnx.Param)),
                    jax.tree.leaves(nnx.state(b, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_train_seg_refuses_other_settings_in_the_same_folder(seg_set, unet_run, capsys):
    code = main(["train", "seg", "--model", "unet", "--data", str(seg_set), "--out",
                 str(unet_run), "--steps", "6", "--lr", "0.01", "--batch-size", "2",
                 "--config", "chans=4", "num_pool_layers=2", "--no-progress"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("model,config", [("segnet", ["chans=4", "num_pool_layers=2"]),
                                          ("unet3d", ["chans=2", "num_pool_layers=1"]),
                                          ("triplanar", ["patch_size=18", "chans=[4,4]",
                                                         "hidden=8", "kernel_size=3"])])
def test_train_seg_other_models(seg_set, tmp_path, model, config):
    run = tmp_path / model
    code = main(["train", "seg", "--model", model, "--data", str(seg_set), "--out", str(run),
                 "--steps", "2", "--batch-size", "4", "--config", *config, "--no-progress"])
    assert code == 0
    out = tmp_path / "scores.json"
    assert main(["eval", "seg", "--checkpoint", str(run), "--data", str(seg_set),
                 "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == model and list(result["per_subject"]) == ["subject-002"]


def test_eval_seg_scores_against_the_metrics(seg_set, unet_run, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["eval", "seg", "--checkpoint", str(unet_run), "--data", str(seg_set),
                 "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "femoral_cartilage" in printed and "HD95" in printed
    result = json.loads(out.read_text())
    # recompute the Dice of the held-out subject from the model's own prediction
    from mskjax import metrics
    from mskjax.cli._train_seg import load_trained_seg, predict_labels
    name, net, _ = load_trained_seg(unet_run)
    image = read_nifti(seg_set / "test" / "subject-002_image.nii.gz").array
    truth = read_labels(seg_set / "test" / "subject-002_labels.nii.gz").array
    pred, probs = predict_labels(name, net, image, num_classes=16)
    assert probs.shape == (16, 32, 32, 16)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    dice = metrics.dice(pred, truth, num_classes=16)
    saved = np.array(result["per_subject"]["subject-002"]["dice"], dtype=float)
    np.testing.assert_allclose(saved, dice, equal_nan=True)


def test_segment_keeps_the_input_grid_and_affine(seg_set, unet_run, tmp_path):
    src = read_nifti(seg_set / "test" / "subject-002_image.nii.gz")
    # the same volume stored in RAS order with another affine: labels must come back in it
    ras = np.flip(np.transpose(src.array, (0, 2, 1)), axis=(0, 1, 2)).copy()
    affine = np.diag([10.0, 5.0, 5.0, 1.0])
    affine[:3, 3] = [3.0, -4.0, 7.0]
    path = tmp_path / "ras.nii.gz"
    write_nifti(path, ras, affine=affine)
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(path), "--checkpoint", str(unet_run), "--out", str(out),
                 "--preview", str(tmp_path / "p.png")]) == 0
    written = read_labels(out)
    assert written.array.shape == ras.shape
    np.testing.assert_allclose(written.affine, affine)
    assert (tmp_path / "p.png").stat().st_size > 1000
    # the same labels as segmenting the phantom-ordered volume directly
    direct = tmp_path / "direct.nii.gz"
    assert main(["segment", str(src.path), "--checkpoint", str(unet_run), "--out",
                 str(direct)]) == 0
    back = np.flip(np.transpose(read_labels(direct).array, (0, 2, 1)), axis=(0, 1, 2))
    np.testing.assert_array_equal(written.array, back)


def test_segment_bad_input(seg_set, unet_run, tmp_path, capsys):
    singular = tmp_path / "singular.nii.gz"
    import nibabel as nib
    parallel = np.eye(4)
    parallel[:3, :3] = [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # x and y axes equal
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), parallel), str(singular))
    out = tmp_path / "labels.nii.gz"
    code = main(["segment", str(singular), "--checkpoint", str(unet_run), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "affine" in err and err.count("\n") == 1
    assert not out.exists()
    image = seg_set / "test" / "subject-002_image.nii.gz"
    assert main(["segment", str(image), "--checkpoint", str(tmp_path), "--out", str(out)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["segment", str(image), "--checkpoint", str(unet_run), "--out",
                 str(tmp_path / "labels.png")]) == 2
    assert ".nii" in capsys.readouterr().err
    assert not out.exists()


def test_train_seg_rejects_labels_out_of_range(seg_set, tmp_path, capsys):
    code = main(["train", "seg", "--model", "unet", "--data", str(seg_set), "--out",
                 str(tmp_path / "r"), "--num-classes", "4", "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "outside 0..3" in err


def test_train_seg_random_crops(seg_set, tmp_path, capsys):
    from mskjax.cli._train_seg import _Sampler
    from mskjax.io import read_segmentation_set

    run = tmp_path / "crop"
    assert main(["train", "seg", "--model", "unet", "--data", str(seg_set), "--out", str(run),
                 "--steps", "2", "--batch-size", "2", "--crop", "16", "--config", "chans=4",
                 "num_pool_layers=2", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["settings"]["crop"] == 16
    # the crops are windows of the training slices, at the sampled positions
    data = read_segmentation_set(seg_set)
    sampler = _Sampler("slice", data["images"], data["labels"], 3, 0, 16, 0, crop=16)
    batch = sampler(5)
    assert batch["image"].shape == (3, 16, 16, 1) and batch["labels"].shape == (3, 16, 16)
    for image, labels in zip(batch["image"][..., 0], batch["labels"]):
        hits = [(n, s, r, c) for n in range(2) for s in range(16) for r in range(17)
                for c in range(17)
                if np.array_equal(data["images"][n, s, r:r + 16, c:c + 16], image)]
        assert hits
        n, s, r, c = hits[0]
        np.testing.assert_array_equal(data["labels"][n, s, r:r + 16, c:c + 16], labels)
    # slices are drawn in proportion to the number of labels they show
    shown = np.array([[len(np.unique(data["labels"][n, s])) for s in range(16)]
                      for n in range(2)], dtype=float).ravel()
    np.testing.assert_allclose(sampler.weights, shown / shown.sum())
    assert main(["train", "seg", "--model", "unet", "--data", str(seg_set), "--out",
                 str(tmp_path / "big"), "--crop", "40", "--steps", "1", "--no-progress"]) == 2
    assert "crop 40 exceeds" in capsys.readouterr().err
