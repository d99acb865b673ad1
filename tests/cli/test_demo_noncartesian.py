"""``mskjax demo --trajectory radial|spiral``: non-Cartesian k-space simulated from an image,
reconstructed by gridding, NUFFT CG-SENSE and L1-wavelet, scored and plotted."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("jax_finufft")

from mskjax.cli import main  # noqa: E402
from mskjax.cli._demo_noncartesian import nyquist_spokes, trajectory  # noqa: E402
from mskjax.sim import knee_section  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def run(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["demo", "--out", str(out), "--no-progress", "--seg-steps", "0",
                 "--cls-steps", "0", *args])
    return code, out


@pytest.fixture(scope="module")
def small_image(tmp_path_factory):
    """A 64 x 56 knee cross-section (non-square: each axis keeps its own k-space extent)."""
    path = tmp_path_factory.mktemp("data") / "knee.npy"
    np.save(path, np.asarray(knee_section((64, 56))))
    return path


def test_radial_demo_writes_figure_and_metrics(tmp_path, small_image, capsys):
    # pi / 2 * 64 = 101 spokes meet the Nyquist rate; 25 are 4x fewer.
    code, out = run(tmp_path, "--data", str(small_image), "--trajectory", "radial",
                    "--spokes", "25", "--coils", "4")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "metrics.json"]
    assert (out / "figure.png").read_bytes()[:8] == PNG
    report = json.loads((out / "metrics.json").read_text())
    assert report["shape"] == [64, 56] and report["coils"] == 4
    info = report["trajectory"]
    assert info["spokes"] == 25 and info["samples_per_spoke"] == 128
    assert info["samples"] == 25 * 128 and info["nyquist_spokes"] == 101
    assert info["undersampling_factor"] == pytest.approx(101 / 25)
    assert "4.0x undersampled" in info["summary"]
    assert report["density"]["method"] == "ramp"
    assert "radial k-space" in report["simulation"] and "NufftSense" in report["simulation"]
    assert set(report["timing_s"]) >= {"espirit_s_including_compilation",
                                       "cg_sense_s_including_compilation", "total_s"}
    scores = report["metrics"]
    assert list(scores) == ["gridding", "CG-SENSE", "L1-wavelet"]
    for score in scores.values():
        assert 0 < score["nmse"] < 0.5 and 10 < score["psnr_db"] < 60
        assert 0 < score["ssim"] < 1
    # The parallel-imaging model undoes the streaks that gridding leaves (measured: 24.2 dB
    # against 17.9 dB).
    assert scores["CG-SENSE"]["psnr_db"] > scores["gridding"]["psnr_db"] + 2
    assert scores["CG-SENSE"]["nmse"] < scores["gridding"]["nmse"]
    printed = capsys.readouterr().out
    assert "golden-angle radial, 25 spokes of 128 samples, 4.0x undersampled" in printed
    assert "CG-SENSE" in printed and "wrote" in printed


def test_spiral_demo(tmp_path, small_image):
    code, out = run(tmp_path, "--data", str(small_image), "--trajectory", "spiral",
                    "--interleaves", "8", "--coils", "4")
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    info = report["trajectory"]
    assert info["interleaves"] == 8 and info["undersampling_factor"] == 8.0
    assert info["samples"] == 8 * info["samples_per_interleave"]
    assert report["density"]["method"] == "pipe-menon"
    scores = report["metrics"]
    # Measured (8x at the edge): gridding 14.9 dB, CG-SENSE 17.7 dB, L1-wavelet 18.0 dB.
    assert scores["CG-SENSE"]["psnr_db"] > scores["gridding"]["psnr_db"] + 1
    assert scores["L1-wavelet"]["psnr_db"] > scores["gridding"]["psnr_db"] + 1
    assert (out / "figure.png").read_bytes()[:8] == PNG


def test_default_trajectories_are_four_times_undersampled():
    coords, info = trajectory("radial", (320, 320), None)
    assert nyquist_spokes(320) == 503
    assert coords.shape == (126, 640, 2) and info["spokes"] == 126
    assert info["undersampling_factor"] == pytest.approx(4, rel=0.01)
    coords, info = trajectory("spiral", (320, 256), None)
    coords = np.asarray(coords, np.float64)
    assert info["interleaves"] == 16 and info["undersampling_factor"] == 4.0
    # Along the readout consecutive samples are at most one cycle per field of view apart.
    steps = np.linalg.norm(np.diff(coords, axis=1), axis=-1)
    assert steps.max() <= 1.0
    # Where the interleaves cross the row axis (angle pi / 2) their rings are
    # alpha * r**(1 - 1/alpha) * 160 / (turns * interleaves) = 4 sqrt(r) cycles per field of
    # view apart (r = |k| / 160), 4 at the edge of the longer (320-row) axis, where the Nyquist
    # rate is 1.
    crossings = []
    for j in range(coords.shape[0]):
        rows, cols = coords[j, :, 0], coords[j, :, 1]
        i = np.flatnonzero((rows[:-1] > 0) & (cols[:-1] > 0) & (cols[1:] <= 0))
        t = cols[i] / (cols[i] - cols[i + 1])
        crossings.extend(rows[i] + t * (rows[i + 1] - rows[i]))
    radii = np.sort(crossings)
    middle = (radii[1:] + radii[:-1]) / 2
    spacing = np.diff(radii)
    outer = middle > 0.5 * 160
    assert outer.sum() >= 8
    assert np.allclose(spacing[outer], 4 * np.sqrt(middle[outer] / 160), rtol=0.01)
    assert math.isclose(info["samples_per_interleave"], 5038, abs_tol=1)


@pytest.mark.parametrize("args, message", [
    (["--trajectory", "radial", "--spokes", "0"], "--spokes must be a positive integer, got 0"),
    (["--trajectory", "spiral", "--interleaves", "-3"],
     "--interleaves must be a positive integer, got -3"),
    (["--spokes", "64"], "--spokes applies to --trajectory radial only, got --trajectory "
                         "cartesian"),
    (["--trajectory", "spiral", "--spokes", "64"], "use --interleaves"),
    (["--trajectory", "radial", "--interleaves", "8"], "use --spokes"),
    (["--trajectory", "radial", "--acceleration", "4"],
     "--acceleration sets the Cartesian mask; --trajectory radial is undersampled by --spokes"),
    (["--trajectory", "spiral", "--center-fraction", "0.1", "--acceleration", "2"],
     "--acceleration and --center-fraction set the Cartesian mask"),
    (["--trajectory", "radial", "--checkpoint", "run"], "--checkpoint is a Cartesian learned"),
    (["--trajectory", "spiral", "--density", "ramp"], "use --density pipe-menon"),
    (["--density", "ramp"], "--density applies to --trajectory radial or spiral only"),
])
def test_bad_options_fail_early_with_one_line(tmp_path, capsys, args, message):
    code, out = run(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mskjax: error: mskjax demo: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists()  # refused before any work: no output folder


def test_missing_nufft_package_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax_finufft" else real(name, *a))
    code, out = run(tmp_path, "--trajectory", "radial")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "jax-finufft is not installed" in err and "mskjax[all]" in err
    assert not out.exists()
