"""A run killed with SIGKILL (mid-run, and mid-checkpoint) and resumed ends bit-identical to an
uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mskjax import train

from .toy import leaves_equal, setup

ROOT = Path(__file__).resolve().parents[2]
STEPS = 24


def _run(folder, *extra, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "tests.train.resume_run", str(folder), str(STEPS), *extra]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = process.communicate(timeout=300)
        return process.returncode, err
    return process


def _final(folder):
    target, _, _ = setup()
    return train.restore_checkpoint(folder / "ckpt", target=target, step=STEPS)[0]


def _losses(folder):
    return [(r["step"], r["loss"], r["grad_norm"])
            for r in train.read_metrics(folder / "metrics.jsonl")]


@pytest.mark.slow
def test_killed_runs_resume_bit_identical(tmp_path):
    code, err = _run(tmp_path / "reference")
    assert code == 0, err[-3000:]
    reference = _final(tmp_path / "reference")
    assert [s for s, _, _ in _losses(tmp_path / "reference")] == list(range(1, STEPS + 1))

    # 1. Killed at an arbitrary moment once 10 steps are logged.
    folder = tmp_path / "killed"
    process = _run(folder, "--sleep", "0.05", wait=False)
    deadline = time.time() + 240
    log = folder / "metrics.jsonl"
    while time.time() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 10:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()[1][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = train.latest_step(folder / "ckpt")
    assert killed_at is not None and 9 <= killed_at < STEPS
    code, err = _run(folder)
    assert code == 0, err[-3000:]
    assert leaves_equal(_final(folder), reference)
    assert _losses(folder) == _losses(tmp_path / "reference")

    # 2. Killed while the checkpoint of step 6 is written (its arrays are on disk, the
    # folder not yet renamed): the checkpoint of step 3 stays the latest.
    folder = tmp_path / "mid_save"
    code, _ = _run(folder, "--die-saving", "6")
    assert code == -signal.SIGKILL
    assert train.latest_step(folder / "ckpt") == 3
    assert any("orbax-checkpoint-tmp" in p.name for p in (folder / "ckpt").iterdir())
    assert [r["step"] for r in train.read_metrics(folder / "metrics.jsonl")] == list(range(1, 7))
    code, err = _run(folder)
    assert code == 0, err[-3000:]
    assert not any("orbax-checkpoint-tmp" in p.name for p in (folder / "ckpt").iterdir())
    assert leaves_equal(_final(folder), reference)
    assert _losses(folder) == _losses(tmp_path / "reference")
