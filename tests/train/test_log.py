"""MetricsWriter (JSON lines, resumable), read_metrics and ProgressBar."""

from __future__ import annotations

import io
import json
import math
import time

import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.train import MetricsWriter, ProgressBar, read_metrics


def test_one_flushed_json_line_per_write(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    before = time.time()
    writer = MetricsWriter(path)
    record = writer.write(1, {"loss": jnp.float32(0.5), "skipped": jnp.int32(0),
                              "lr": 1e-3, "finite": np.bool_(True), "nan": jnp.float32("nan")})
    # Readable before close: flushed at every write.
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    parsed = json.loads(lines[0])
    assert parsed["step"] == 1 and before <= parsed["time"] <= time.time()
    assert parsed["loss"] == 0.5 and parsed["skipped"] == 0 and isinstance(parsed["skipped"], int)
    assert parsed["lr"] == 1e-3 and parsed["finite"] is True and math.isnan(parsed["nan"])
    assert record["loss"] == 0.5
    writer.write(np.int64(2), {"loss": 0.25})
    writer.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_bad_metrics(tmp_path):
    with MetricsWriter(tmp_path / "m.jsonl") as writer:
        with pytest.raises(TypeError, match=r"MetricsWriter.write: metric 'image' must be a real "
                                            r"scalar, got an array of shape \(2,\)"):
            writer.write(1, {"image": jnp.ones(2)})
        with pytest.raises(TypeError, match="metric 'name' must be a real scalar, got str"):
            writer.write(1, {"name": "x"})
        with pytest.raises(ValueError, match="metric names must be strings other than 'step'"):
            writer.write(1, {"time": 1.0})
        with pytest.raises(TypeError, match="MetricsWriter.write: step must be an integer"):
            writer.write(1.5, {})
    assert (tmp_path / "m.jsonl").read_text() == ""  # nothing half-written


def test_resume_drops_later_lines_and_a_cut_line(tmp_path):
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as writer:
        for step in range(1, 7):
            writer.write(step, {"loss": float(step)})
    with open(path, "a") as f:
        f.write('{"step": 7, "lo')  # a write cut short by a crash
    with pytest.raises(FileExistsError, match="MetricsWriter: .* already holds metrics; pass "
                                              "resume_step"):
        MetricsWriter(path)
    with MetricsWriter(path, resume_step=4) as writer:
        assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
        writer.write(5, {"loss": 50.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]  # no temporary left
    # Resuming a run that has no log yet starts one.
    with MetricsWriter(tmp_path / "new.jsonl", resume_step=3) as writer:
        writer.write(4, {"loss": 1.0})
    assert [r["step"] for r in read_metrics(tmp_path / "new.jsonl")] == [4]


def test_a_corrupt_line_inside_the_file_raises(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="MetricsWriter: .*m.jsonl line 2 is not JSON"):
        MetricsWriter(path, resume_step=2)
    assert path.read_text() == '{"step": 1}\nnot json\n{"step": 3}\n'  # left as it was
    path.write_text('{"loss": 1}\n')
    with pytest.raises(ValueError, match="read_metrics: .* line 1 is not a metrics record"):
        read_metrics(path)
    with pytest.raises(ValueError, match="MetricsWriter: resume_step must be a non-negative"):
        MetricsWriter(path, resume_step=-1)


def test_progress_bar_shows_rate_and_loss():
    out = io.StringIO()
    with ProgressBar(10, initial=2, file=out, mininterval=0) as bar:
        bar.update(3, {"loss": jnp.float32(0.123456), "other": 1.0})
        bar.update(5, {"loss": 0.5})
        assert bar.n == 5
    text = out.getvalue()
    assert "5/10" in text and "loss=0.5" in text and "loss=0.1235" in text
    assert "step/s" in text or "s/step" in text
    assert "other" not in text
    quiet = io.StringIO()
    with ProgressBar(10, file=quiet, disable=True) as bar:
        bar.update(4, {"loss": 1.0})
    assert quiet.getvalue() == ""
