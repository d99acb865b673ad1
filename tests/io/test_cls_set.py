"""The classification set format: round trip, subject split, atomic folder, bad input."""

import json

import numpy as np
import pytest

from mskjax import io


def _split(n, subjects, rng, views=False, num_classes=5):
    arrays = {"label": rng.integers(0, num_classes, n).astype(np.int32),
              "subject": np.asarray(subjects, dtype=np.int64),
              "conspicuity": rng.random(n).astype(np.float32)}
    if views:
        for v in ("sagittal", "coronal", "axial"):
            arrays[v] = rng.random((n, 3, 8, 8)).astype(np.float32)
    else:
        arrays["image"] = rng.random((n, 8, 8)).astype(np.float32)
    return arrays


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    splits = {"train": _split(6, [0, 0, 1, 1, 2, 2], rng), "test": _split(2, [3, 3], rng)}
    manifest = io.write_classification_set(tmp_path / "set", splits, task="ordinal",
                                           num_classes=5, class_names=range(5),
                                           source="test", settings={"seed": 1})
    assert manifest["splits"]["train"]["subjects"] == [0, 1, 2]
    for name, arrays in splits.items():
        read = io.read_classification_set(tmp_path / "set", split=name)
        for key, value in arrays.items():
            np.testing.assert_array_equal(read[key], value)
        assert read["manifest"]["task"] == "ordinal"
    assert json.loads((tmp_path / "set" / "manifest.json").read_text())["settings"] == {"seed": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temporary folder left


def test_views_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    io.write_classification_set(tmp_path / "v", {"train": _split(3, [0, 1, 2], rng, True, 2)},
                                task="binary", num_classes=None, source="test")
    read = io.read_classification_set(tmp_path / "v")
    assert read["manifest"]["inputs"] == "views" and read["axial"].shape == (3, 3, 8, 8)


def test_subject_in_two_splits_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    splits = {"train": _split(2, [0, 1], rng), "test": _split(2, [1, 2], rng)}
    with pytest.raises(ValueError, match=r"subjects \[1\] are in both"):
        io.write_classification_set(tmp_path / "s", splits, task="ordinal", num_classes=5,
                                    source="test")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(label=a["label"] + 5), "labels must lie in 0..4"),
    (lambda a: a.update(subject=a["subject"][:1]), "subject has"),
    (lambda a: a["image"].__setitem__((0, 0, 0), np.nan), "non-finite"),
    (lambda a: a.pop("image"), "needs 'label'"),
])
def test_bad_splits(tmp_path, change, match):
    arrays = _split(3, [0, 1, 2], np.random.default_rng(3))
    change(arrays)
    with pytest.raises(ValueError, match=match):
        io.write_classification_set(tmp_path / "b", {"train": arrays}, task="ordinal",
                                    num_classes=5, source="test")
    assert not (tmp_path / "b").exists()


def test_existing_folder_and_missing_manifest(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="not an empty folder"):
        io.write_classification_set(tmp_path / "full", {"train": _split(1, [0], rng, num_classes=2)},
                                    task="binary", num_classes=2, source="t")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        io.read_classification_set(tmp_path / "full")
    io.write_classification_set(tmp_path / "ok", {"train": _split(1, [0], rng, num_classes=2)},
                                task="binary", num_classes=2, source="t")
    with pytest.raises(ValueError, match="no split 'test'"):
        io.read_classification_set(tmp_path / "ok", split="test")
