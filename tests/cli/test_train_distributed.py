"""``mskjax train recon`` on several processes (jax.distributed over 127.0.0.1)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("flax")

from mskjax import train  # noqa: E402
from mskjax.cli import main  # noqa: E402
from mskjax.cli._train_cls import train_cls  # noqa: E402
from mskjax.cli._train_recon import train_recon  # noqa: E402
from mskjax.cli._train_seg import train_seg  # noqa: E402
from tests.cli.kspace_sets import tiny_kspace_set  # noqa: E402
from tests.processes import free_port, run_together  # noqa: E402

UNET = ["--config", "chans=2", "num_pool_layers=1"]


@pytest.fixture(scope="module")
def kset(tmp_path_factory):
    """3 training files of one slice each (and one held-out file)."""
    root = tmp_path_factory.mktemp("kset")
    return tiny_kspace_set(root)


def mskjax(commands: list[list[str]], timeout: float = 240.0) -> list[tuple[int, str, str]]:
    """``python -m mskjax <args>`` for each argument list at once (1 CPU device each)."""
    return run_together([["-m", "mskjax", *args] for args in commands], timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not JAX's or absl's log lines."""
    return [line for line in stderr.splitlines() if line.startswith("mskjax")]


@pytest.mark.slow
def test_two_processes_train_one_run_that_one_process_resumes(kset, tmp_path):
    out = tmp_path / "run"
    port = free_port()
    args = ["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(out), *UNET,
            "--steps", "3", "--checkpoint-every", "2", "--batch-size", "2", "--no-progress",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            # the first step (compilation) is not counted; process 0's clock stops both
            # processes after the second
            "--max-minutes", "1e-9"]
    results = mskjax([[*args, "--process-id", "0"], [*args, "--process-id", "1"]])
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert "trained unet to step 2" in results[0][1]
    assert "trained" not in results[1][1]  # only process 0 reports
    records = train.read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]  # written once
    assert all(np.isfinite(r["loss"]) for r in records)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2"]
    meta = json.loads((out / "checkpoints" / "2" / "meta" / "meta.json").read_text())
    assert meta["mesh"]["num_processes"] == 2 and meta["mesh"]["axis_sizes"] == [2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["processes"] == 2
    assert summary["settings"]["training_slices"] == 3  # both shares together
    assert summary["steps"] == 2 and summary["stopped_by"] == "max_minutes"

    # resumed on one process (in this process): restores the 2-process checkpoint
    params_2 = train.restore_checkpoint(out / "checkpoints")[0].params
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(out),
                 *UNET, "--steps", "3", "--checkpoint-every", "2", "--batch-size", "2",
                 "--no-progress"])
    assert code == 0
    assert [r["step"] for r in train.read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert train.latest_step(out / "checkpoints") == 3
    params_3 = train.restore_checkpoint(out / "checkpoints")[0].params
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax_leaves(params_2), jax_leaves(params_3)))


def jax_leaves(tree):
    import jax
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_unreachable_coordinator_is_one_line_in_bounded_time(kset, tmp_path):
    start = time.perf_counter()
    ((rc, stdout, stderr),) = mskjax([[
        "train", "recon", "--model", "unet", "--data", str(kset), "--out", str(tmp_path / "r"),
        *UNET, "--steps", "1", "--no-progress", "--coordinator", f"127.0.0.1:{free_port()}",
        "--num-processes", "2", "--process-id", "1", "--distributed-timeout", "2"]], timeout=60)
    assert time.perf_counter() - start < 30
    assert rc == 1, stderr
    (line,) = error_lines(stderr)
    assert line.startswith("mskjax: error: mskjax train recon: process 1 could "
                           "not reach the coordinator 127.0.0.1:"), line
    assert "Traceback" not in stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:9"],
     "mskjax train recon: process_id must be in [0, 2) for 2 processes, got 2"),
    (["--num-processes", "2", "--process-id", "0"],
     "mskjax train recon: 2 processes need a coordinator HOST:PORT"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "localhost"],
     "mskjax train recon: coordinator must be HOST:PORT"),
    (["--num-processes", "0"], "mskjax train recon: num_processes must be >= 1"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "127.0.0.1:9",
      "--distributed-timeout", "0"], "--distributed-timeout must be a positive number"),
])
def test_bad_flags_are_one_line(kset, tmp_path, capsys, flags, message):
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out",
                 str(tmp_path / "r"), *UNET, "--steps", "1", "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mskjax: error: ") and message in err, err
    assert not (tmp_path / "r").exists()


def test_batch_size_must_divide_among_the_processes(kset, tmp_path):
    with pytest.raises(ValueError, match=r"batch_size 3 must be divisible by the 2 processes"):
        train_recon(data=kset, out=tmp_path / "r", model="unet", batch_size=3, steps=1,
                    processes=train.ProcessSet("127.0.0.1:9", 2, 0), progress=False)
    assert not (tmp_path / "r").exists()


def test_every_process_needs_a_file(kset, tmp_path):
    with pytest.raises(ValueError, match="4 processes need at least 4 training files .* has 3"):
        train_recon(data=kset, out=tmp_path / "r", model="unet", batch_size=4, steps=1,
                    processes=train.ProcessSet("127.0.0.1:9", 4, 0), progress=False)
    assert not (tmp_path / "r").exists()


def test_seg_and_cls_batch_size_must_divide_among_the_processes(tmp_path):
    two = train.ProcessSet("127.0.0.1:9", 2, 0)
    with pytest.raises(ValueError, match="mskjax train seg: batch_size 3 must be divisible"):
        train_seg(data=tmp_path, out=tmp_path / "r", batch_size=3, processes=two)
    with pytest.raises(ValueError, match="mskjax train cls: batch_size 5 must be divisible"):
        train_cls(data=tmp_path, out=tmp_path / "r", batch_size=5, processes=two)
    with pytest.raises(ValueError, match="triplanar trains on the voxels of one volume"):
        train_seg(data=tmp_path, out=tmp_path / "r", model="triplanar", batch_size=2,
                  processes=two)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_processes_train_a_classifier(tmp_path):
    data = tmp_path / "lesions"
    assert main(["data", "make-cls-set", "--source", "lesion", "--out", str(data),
                 "--train-subjects", "6", "--test-subjects", "2", "--size", "64",
                 "--conspicuity", "0.8", "1.0", "--no-progress"]) == 0
    out = tmp_path / "run"
    args = ["train", "cls", "--model", "resnet-small", "--data", str(data), "--out", str(out),
            "--steps", "2", "--batch-size", "4", "--config", "width=4", "--no-progress",
            "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    results = mskjax([[*args, "--process-id", "0"], [*args, "--process-id", "1"]])
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert [r["step"] for r in train.read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert train.latest_step(out / "checkpoints") == 2
    assert json.loads((out / "summary.json").read_text())["settings"]["processes"] == 2


def test_launcher_variables_without_a_coordinator_are_one_line(kset, tmp_path, capsys,
                                                                monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "MASTER_ADDR", "MASTER_PORT", "JAX_NUM_PROCESSES",
                 "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out",
                 str(tmp_path / "r"), *UNET, "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("mskjax: error: mskjax train recon: 2 processes need a coordinator HOST:PORT "
                   "(--coordinator, JAX_COORDINATOR_ADDRESS, or MASTER_ADDR and MASTER_PORT)\n")
    # a flag wins over the launcher's count
    monkeypatch.setenv("RANK", "0")
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out",
                 str(tmp_path / "r"), *UNET, "--steps", "1", "--no-progress",
                 "--num-processes", "1"])
    assert code == 0 and train.latest_step(tmp_path / "r" / "checkpoints") == 1
