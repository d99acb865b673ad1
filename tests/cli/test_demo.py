import json
import subprocess
import sys

import numpy as np

from mskjax.cli import main


def run(tmp_path, *args):
    out = tmp_path / "out"
    if "--seg-steps" not in args:
        args = (*args, "--seg-steps", "0")
    if "--cls-steps" not in args:
        args = (*args, "--cls-steps", "0")
    code = main(["demo", "--out", str(out), "--no-progress", *args])
    return code, out


def test_demo_default_writes_figure_and_metrics(tmp_path, capsys):
    code, out = run(tmp_path, "--seg-steps", "3", "--cls-steps", "3")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["detection.png", "figure.png",
                                                     "metrics.json", "segmentation_t2.png"]
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "metrics.json").read_text())
    assert report["coils"] == 8 and report["shape"] == [320, 320]
    assert report["input"].startswith("simulated knee (phantom seed 0), sagittal")
    mask = report["mask"]
    # fastMRI equispaced: 26 centre lines (round(320 * 0.08)) plus every 4th line.
    assert mask["num_low_frequencies"] == 26
    assert 0.25 < mask["sampled_fraction"] < 0.35
    scores = report["metrics"]
    assert list(scores) == ["zero-filled", "CG-SENSE", "L1-wavelet"]
    zf, cg, l1 = (scores[name] for name in scores)
    assert 0 < zf["nmse"] < 0.2 and 15 < zf["psnr_db"] < 35 and 0.3 < zf["ssim"] < 0.95
    # Parallel imaging and compressed sensing beat zero filling by a clear margin.
    assert cg["nmse"] < 0.7 * zf["nmse"] and l1["nmse"] < 0.4 * zf["nmse"]
    assert l1["psnr_db"] > zf["psnr_db"] + 4 and l1["ssim"] > zf["ssim"]
    out_text = capsys.readouterr().out
    assert "L1-wavelet" in out_text and "PSNR" in out_text
    # The segmentation and T2 part: 3 training steps segment nothing well, but the T2 fit in
    # the exact femoral cartilage must find the phantom's 37 ms (partial volume with fluid
    # raises it a little).
    seg = report["segmentation_t2"]
    assert "3 steps" in seg["segmentation"]["model"]
    assert set(seg["segmentation"]["dice_per_tissue"]) >= {"femur", "femoral_cartilage"}
    t2 = seg["t2_femoral_cartilage"]
    assert t2["true_ms"] == 37.0 and 33.0 < t2["true_mask_ms"] < 46.0
    assert seg["t2_femoral_cartilage"]["valid_fraction_in_knee"] > 0.95
    assert "femoral cartilage T2" in out_text
    # The detection part: held-out AUC with its interval, the two shown examples.
    detection = report["detection"]
    assert "3 steps" in detection["classifier"] and detection["held_out_subjects"] == 48
    auc = detection["roc_auc"]
    assert 0 <= auc["low"] <= auc["estimate"] <= auc["high"] <= 1
    assert "cartilage lesion detection on 48 held-out slices" in out_text
    assert (out / "detection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_less_undersampling_scores_better(tmp_path):
    _, out2 = run(tmp_path / "a", "--acceleration", "2", "--coils", "4")
    _, out8 = run(tmp_path / "b", "--acceleration", "8", "--coils", "4")
    s2 = json.loads((out2 / "metrics.json").read_text())["metrics"]["zero-filled"]
    s8 = json.loads((out8 / "metrics.json").read_text())["metrics"]["zero-filled"]
    assert s2["psnr_db"] > s8["psnr_db"] + 3
    assert s2["ssim"] > s8["ssim"]


def test_demo_on_real_knee(tmp_path, shared_data):
    path = shared_data / "knee_axial_rss" / "knee_axial_rss.npz"
    code, out = run(tmp_path, "--data", str(path), "--slice", "5")
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["input"] == "knee_axial_rss.npz['images'][5]"
    scores = report["metrics"]["zero-filled"]
    assert 25 < scores["psnr_db"] < 45 and 0.6 < scores["ssim"] < 0.99
    assert report["metrics"]["L1-wavelet"]["nmse"] < scores["nmse"]


def test_demo_bad_input(tmp_path, capsys):
    code, _ = run(tmp_path, "--data", str(tmp_path / "missing.npz"))
    assert code == 2 and "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.ones(3), b=np.ones(3))
    code, _ = run(tmp_path, "--data", str(bad))
    assert code == 2 and "expected an array named 'images'" in capsys.readouterr().err
    stack = tmp_path / "stack.npy"
    np.save(stack, np.ones((2, 16, 16), np.float32))
    code, _ = run(tmp_path, "--data", str(stack), "--slice", "7")
    assert code == 2 and "has 2 slices, got --slice 7" in capsys.readouterr().err
    code, _ = run(tmp_path, "--center-fraction", "1.5")
    assert code == 2 and "center_fraction must be in (0, 1)" in capsys.readouterr().err
    # Nothing half-written was left behind.
    assert not list((tmp_path / "out").glob(".*"))


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mskjax", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.startswith("mskjax ")
