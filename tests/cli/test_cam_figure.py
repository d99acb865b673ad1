"""The activation map figure: a PNG with the map in colour over the grey image, written
atomically."""

from __future__ import annotations

import numpy as np
import pytest

from mskjax.cli._cam_figure import activation_map_figure

matplotlib = pytest.importorskip("matplotlib")


def test_writes_a_png_with_the_map_over_the_image(tmp_path, rng):
    images = rng.uniform(0, 1, (3, 24, 32))
    maps = np.zeros((3, 24, 32))
    maps[:, :8, :8] = 1.0  # evidence in the top-left corner
    path = activation_map_figure(images, maps, titles=["a", "b", "c"], path=tmp_path / "cam.png")
    assert path == tmp_path / "cam.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cam.png"]  # no temporary file left
    pixels = matplotlib.image.imread(path)[..., :3]
    # the 'jet' overlay colours the panels (a grey image alone has R == G == B everywhere):
    # red where the map is high, blue where it is low
    red = (pixels[..., 0] > pixels[..., 2] + 0.1).sum()
    blue = (pixels[..., 2] > pixels[..., 0] + 0.1).sum()
    assert red > 0 and blue > 3 * red
    # without a map's contrast (all zero), the overlay is one colour over every panel
    grey = activation_map_figure(images[0], np.zeros((24, 32)), path=tmp_path / "flat.png")
    assert grey.exists()


def test_bad_input_leaves_nothing(tmp_path):
    target = tmp_path / "cam.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"activation_map_figure: maps must have the images' "
                                         r"shape \(2, 8, 8\)"):
        activation_map_figure(np.zeros((2, 8, 8)), np.zeros((2, 4, 4)), path=target)
    with pytest.raises(ValueError, match="maps must be finite, got 1 NaN"):
        activation_map_figure(np.zeros((8, 8)), np.where(np.eye(8) * np.arange(8) == 7, np.nan,
                                                         0.0), path=target)
    with pytest.raises(ValueError, match="titles must be 2 strings"):
        activation_map_figure(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), titles=["x"],
                              path=target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cam.png"]
