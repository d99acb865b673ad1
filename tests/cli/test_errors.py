"""Every ``mskjax`` command fails with one line on stderr, the right exit status and nothing
left behind: bad flags (exit 2, argparse), bad files (exit 2), failures (exit 1), Ctrl-C (130).

All in-process and fast: each run fails before any simulation or training.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from mskjax.cli import main

# every leaf command with the fewest arguments it needs to parse (inputs that do not exist)
COMMANDS = {
    "demo": ["demo"],
    "data make-kspace-set": ["data", "make-kspace-set", "--images", "IN.npz", "--out", "OUT"],
    "data make-seg-set": ["data", "make-seg-set", "--out", "OUT"],
    "data make-cls-set": ["data", "make-cls-set", "--source", "lesion", "--out", "OUT"],
    "train recon": ["train", "recon", "--model", "unet", "--data", "IN", "--out", "OUT"],
    "train seg": ["train", "seg", "--model", "unet", "--data", "IN", "--out", "OUT"],
    "train cls": ["train", "cls", "--model", "resnet-small", "--data", "IN", "--out", "OUT"],
    "eval recon": ["eval", "recon", "--checkpoint", "CKPT", "--data", "IN"],
    "eval seg": ["eval", "seg", "--checkpoint", "CKPT", "--data", "IN"],
    "eval cls": ["eval", "cls", "--checkpoint", "CKPT", "--data", "IN"],
    "classify": ["classify", "IN.npy", "--checkpoint", "CKPT"],
    "segment": ["segment", "IN.nii.gz", "--checkpoint", "CKPT", "--out", "OUT.nii.gz"],
    "quant t2": ["quant", "t2", "IN", "--out", "OUT"],
    "quant t1rho": ["quant", "t1rho", "IN", "--out", "OUT"],
}


def _in(tmp_path: Path, argv):
    """``argv`` with its placeholders as paths in ``tmp_path``."""
    names = {"IN", "IN.npz", "IN.npy", "IN.nii.gz", "OUT", "OUT.nii.gz", "CKPT"}
    return [str(tmp_path / a) if a in names else a for a in argv]


def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("mskjax: error: "), err
    assert "Traceback" not in err
    return err


def _listing(path: Path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_every_command_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    listed = capsys.readouterr().out
    for command in {argv[0] for argv in COMMANDS.values()}:
        assert command in listed


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("bad", [["--no-such-flag"], ["--seed", "x"]])
def test_bad_flags_are_one_usage_line(tmp_path, capsys, name, bad):
    argv = _in(tmp_path, COMMANDS[name])
    if bad[0] == "--seed" and name.startswith(("eval", "classify", "segment", "quant")):
        bad = ["--checkpoint"]  # a flag without its value
    with pytest.raises(SystemExit) as info:
        main([*argv, *bad])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err)
    assert f"mskjax {name}" in err or "mskjax:" in err
    assert _listing(tmp_path) == []


def test_missing_command_is_one_usage_line(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", sorted(k for k in COMMANDS if k != "demo"
                                        and not k.startswith("data make-s")
                                        and not k.startswith("data make-c")))
def test_missing_inputs_are_one_line_and_leave_nothing(tmp_path, capsys, name):
    code = main(_in(tmp_path, COMMANDS[name]))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 2, err
    assert str(tmp_path) in err  # names the file
    assert _listing(tmp_path) == []


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "image.npy"
    np.save(path, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    return path


def _demo(tmp_path, *more):
    return main(["demo", "--out", str(tmp_path / "out"), "--seg-steps", "0", "--cls-steps", "0",
                 "--no-progress", *more])


def _text(path: Path) -> Path:
    path.write_text("rows,cols\n1,2\n")
    return path


def _object_array(path: Path) -> Path:
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return path


def _npy_as_npz(path: Path) -> Path:
    with open(path, "wb") as f:
        np.save(f, np.ones((8, 8), np.float32))
    return path


def _npz_as_npy(path: Path) -> Path:
    with open(path, "wb") as f:
        np.savez(f, image=np.ones((8, 8), np.float32))
    return path


def _object_in_npz(path: Path) -> Path:
    np.savez(path, image=np.array([None, 1], dtype=object))
    return path


def _truncated_npz(path: Path) -> Path:
    np.savez(path, image=np.ones((64, 64), np.float32))
    path.write_bytes(path.read_bytes()[:100])
    return path


@pytest.mark.parametrize("make, name, message", [
    (_text, "notes.npy", "not a NumPy .npy file"),
    (_text, "notes.npz", "not a NumPy .npz file"),
    (_npy_as_npz, "image.npz", "a .npy array under a .npz name"),
    (_npz_as_npy, "image.npy", "a .npz archive under a .npy name"),
    (_object_array, "objects.npy", "array of Python objects"),
    (_object_in_npz, "objects.npz", "array of Python objects"),
    (_truncated_npz, "cut.npz", "cannot read the file"),
])
def test_demo_bad_data_file_is_one_line_naming_it(tmp_path, capsys, make, name, message):
    path = make(tmp_path / name)
    code = _demo(tmp_path, "--data", str(path))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert f"--data {path}" in err and message in err
    assert "pickle" not in err  # never suggests unsafe loading
    assert not (tmp_path / "out").exists()


def test_demo_all_zero_image_is_not_reported_as_nan(tmp_path, capsys):
    np.save(tmp_path / "zeros.npy", np.zeros((32, 32), np.float32))
    code = _demo(tmp_path, "--data", str(tmp_path / "zeros.npy"))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "all zero" in err and "zeros.npy" in err
    assert "nan" not in err.lower() and "finite" not in err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_simulation(monkeypatch):
    """The demo's slow simulation, replaced by a failure: a test reaching it fails."""
    import mskjax.cli._demo as demo

    def simulate(*args, **kwargs):
        raise AssertionError("the simulation ran before the options were checked")

    monkeypatch.setattr(demo, "simulate_kspace", simulate)


@pytest.mark.parametrize("options, message", [
    (["--acceleration", "0"], "acceleration"),
    (["--acceleration", "-2"], "acceleration"),
    (["--center-fraction", "1.5"], "center_fraction"),
    (["--center-fraction", "0"], "center_fraction"),
    (["--coils", "0"], "--coils must be a positive integer, got 0"),
])
def test_demo_bad_mask_options_fail_before_the_simulation(tmp_path, capsys, image_file,
                                                          no_simulation, options, message):
    code = _demo(tmp_path, "--data", str(image_file), *options)
    err = _one_error_line(capsys.readouterr().err)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_demo_out_is_a_file(tmp_path, capsys, image_file, no_simulation):
    (tmp_path / "out").write_text("mine")
    code = _demo(tmp_path, "--data", str(image_file))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"--out {tmp_path / 'out'}" in err and "is a file" in err
    assert (tmp_path / "out").read_text() == "mine"


def _read_only(monkeypatch, under: Path):
    """``Path.mkdir`` under ``under`` raises PermissionError, as in a read-only folder (the
    tests may run as root, which ignores file permissions)."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(under)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_demo_read_only_out_is_one_line_naming_it(tmp_path, capsys, image_file, monkeypatch,
                                                  no_simulation):
    _read_only(monkeypatch, tmp_path / "ro")
    code = _demo(tmp_path, "--data", str(image_file), "--out", str(tmp_path / "ro" / "out"))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 1
    assert f"{tmp_path / 'ro' / 'out'}: permission denied" in err
    assert _listing(tmp_path) == ["image.npy"]


def test_demo_failure_leaves_no_output_folder(tmp_path, capsys, image_file, monkeypatch):
    import mskjax.cli._demo as demo

    def simulate(*args, **kwargs):
        raise RuntimeError("disk\non fire")

    monkeypatch.setattr(demo, "simulate_kspace", simulate)
    code = _demo(tmp_path, "--data", str(image_file))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "RuntimeError: disk on fire" in err
    assert _listing(tmp_path) == ["image.npy"]


def test_demo_failure_keeps_an_existing_output_folder(tmp_path, capsys, image_file,
                                                      monkeypatch):
    import mskjax.cli._demo as demo

    monkeypatch.setattr(demo, "simulate_kspace",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert _demo(tmp_path, "--data", str(image_file)) == 1
    _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_ctrl_c_is_exit_130_with_one_line_and_no_outputs(tmp_path, capsys, image_file,
                                                         monkeypatch):
    import mskjax.cli._demo as demo

    def simulate(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "simulate_kspace", simulate)
    code = _demo(tmp_path, "--data", str(image_file))
    assert code == 130
    assert capsys.readouterr().err == "mskjax: interrupted\n"
    assert _listing(tmp_path) == ["image.npy"]


def test_debug_shows_the_exception(tmp_path, capsys):
    _text(tmp_path / "notes.npy")
    with pytest.raises(ValueError, match="not a NumPy .npy file"):
        main(["--debug", "demo", "--data", str(tmp_path / "notes.npy"), "--out",
              str(tmp_path / "out"), "--no-progress"])
    assert not (tmp_path / "out").exists()


def test_debug_reraises_ctrl_c(tmp_path, image_file, monkeypatch):
    import mskjax.cli._demo as demo

    def simulate(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "simulate_kspace", simulate)
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "demo", "--data", str(image_file), "--out", str(tmp_path / "out"),
              "--seg-steps", "0", "--cls-steps", "0", "--no-progress"])
    assert not (tmp_path / "out").exists()


def test_unexpected_failure_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    import mskjax.cli._files as files

    def read_image(*args, **kwargs):
        raise MemoryError("out of\nmemory")

    monkeypatch.setattr("mskjax.cli._demo.read_image", read_image)
    assert files.read_image is not read_image
    np.save(tmp_path / "image.npy", np.ones((8, 8)))
    code = _demo(tmp_path, "--data", str(tmp_path / "image.npy"))
    err = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "MemoryError: out of memory" in err
    assert _listing(tmp_path) == ["image.npy"]


def test_make_kspace_set_empty_image_set_fails(tmp_path, capsys):
    images = tmp_path / "empty.npz"
    np.savez(images, images=np.zeros((0, 16, 16), np.float32), subject=np.zeros(0, str))
    code = main(["data", "make-kspace-set", "--images", str(images), "--out",
                 str(tmp_path / "set"), "--recon-size", "16", "16", "--no-progress"])
    err = _one_error_line(capsys.readouterr().err)
    assert code != 0 and "no images" in err and str(images) in err
    assert _listing(tmp_path) == ["empty.npz"]


def _tiny_run(tmp_path):
    import optax

    from mskjax import train
    from mskjax.cli._run import prepare_run_folder

    out, ckpt = prepare_run_folder(tmp_path / "run", "mskjax train test")
    state = train.init_train_state({"w": np.ones(2, np.float32)}, optax.sgd(0.1), key=0)
    return out, ckpt, state


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_training_stopped_before_a_checkpoint_leaves_no_run_folder(tmp_path, error):
    from mskjax.cli._run import run_training

    out, ckpt, state = _tiny_run(tmp_path)

    def step(state, batch):
        raise error("stopped")

    with pytest.raises(error):
        run_training(step, state, lambda s: None, out=out, ckpt=ckpt,
                     run_config={"model": {"name": "test", "kwargs": {}}}, steps=5,
                     max_minutes=None, checkpoint_every=2, progress=False, desc="test",
                     func="mskjax train test")
    assert _listing(tmp_path) == []


def test_training_stopped_after_a_checkpoint_keeps_the_run_to_resume(tmp_path):
    from mskjax import train
    from mskjax.cli._run import run_training

    out, ckpt, state = _tiny_run(tmp_path)

    def step(state, batch):
        if int(state.step) == 2:
            raise KeyboardInterrupt
        return state._replace(step=state.step + 1), {"loss": 1.0}

    with pytest.raises(KeyboardInterrupt):
        run_training(step, state, lambda s: None, out=out, ckpt=ckpt,
                     run_config={"model": {"name": "test", "kwargs": {}}}, steps=5,
                     max_minutes=None, checkpoint_every=2, progress=False, desc="test",
                     func="mskjax train test")
    assert train.latest_step(ckpt) == 2
    assert (out / "metrics.jsonl").is_file()
