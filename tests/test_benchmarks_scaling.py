"""benchmarks/scaling.py: a quick run on 1 and 2 forced host devices writes a complete report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


@pytest.mark.slow
def test_quick_run_reports_both_device_counts(shared_data, tmp_path):
    env = {**os.environ, "MSKJAX_DATA": str(shared_data)}
    env.pop("XLA_FLAGS", None)
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--devices", "1,2",
                          "--processes", "0", "--platform", "cpu", "--quiet",
                          "--out", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "scaling.json").read_text())
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["machine"]["cores"] == os.cpu_count()
    assert report["versions"]["jax"]
    rows = {r["name"]: r for r in report["results"]}
    assert sorted(rows) == ["cpu1", "cpu2"]
    for name, devices in (("cpu1", 1), ("cpu2", 2)):
        row = rows[name]
        assert "error" not in row
        assert row["devices"] == devices and row["platform"] == "cpu"  # the forced count held
        for key in ("train", "recon"):
            m = row[key]
            assert m["throughput"] > 0 and m["steady_s"] > 0 and m["compile_s"] > 0
            assert m["usage"]["cpu_s"] > 0 and m["usage"]["cores_busy"] > 0
            assert m["throughput"] == pytest.approx(m["slices_per_call"] / m["steady_s"])
            assert m["speedup"] == pytest.approx(m["throughput"] / rows["cpu1"][key]["throughput"])
            assert m["efficiency"] == pytest.approx(m["speedup"] / devices)
            assert m["ideal_throughput"] == pytest.approx(
                rows["cpu1"][key]["throughput"] * devices)
        # Two devices compute what one computes: the same first loss and images.
        assert np.isfinite(row["train"]["first_loss"])
        assert row["train"]["first_loss_rel_diff_vs_1_device"] < 1e-4
        assert row["recon"]["finite"]
        assert row["recon"]["max_rel_diff_vs_1_device"] < 1e-4
    assert "cpu 2 device(s)" in run.stdout and "speed-up" in run.stdout


def test_bad_device_list_is_one_line_error():
    run = subprocess.run([sys.executable, str(SCRIPT), "--devices", "1,x"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2  # bad usage
    assert "--devices takes positive integers" in run.stderr
    assert "Traceback" not in run.stderr
