"""Checkpoints: round trips, the configuration beside them, mismatches, atomic writes, resume."""

from __future__ import annotations

import json

import jax
import optax
import pytest

from mskjax import train

from .toy import Other, batch, config, data, jitted_step, leaves_equal, setup


@pytest.fixture(scope="module")
def trained():
    """A state after 3 steps, and the step function."""
    x, y = data()
    state, _, _ = setup()
    step = jitted_step()
    for s in range(3):
        state, _ = step(state, batch(x, y, 0, s))
    return state, step


def test_round_trip_with_target(tmp_path, trained):
    state, _ = trained
    path = train.save_checkpoint(tmp_path / "ckpt", state, config=config())
    assert path == (tmp_path / "ckpt" / "3").absolute() and path.is_dir()
    assert train.latest_step(tmp_path / "ckpt") == 3
    assert json.loads((path / "config" / "config.json").read_text()) == config()
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "ckpt").rglob("*")}
    target, _, _ = setup()
    restored, saved_config = train.restore_checkpoint(tmp_path / "ckpt", target=target)
    assert isinstance(restored, train.TrainState)
    assert saved_config == config()
    assert leaves_equal(restored, state)  # bit for bit, the key included
    assert train.read_checkpoint_config(tmp_path / "ckpt") == config()
    # Readers change nothing on disk.
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ckpt").rglob("*")} == files


def test_restore_without_target(tmp_path, trained):
    state, _ = trained
    train.save_checkpoint(tmp_path, state, config=config(), step=5)
    raw, _ = train.restore_checkpoint(tmp_path)
    assert int(raw.step) == 3  # the state's own counter; the folder is named by `step`
    assert leaves_equal(raw.key, state.key)
    assert jax.numpy.array_equal(raw.params["out"]["kernel"]["value"],
                                 state.params["out"]["kernel"][...])


def test_keeps_the_last_n_and_restores_any_kept_step(tmp_path, trained):
    state, step = trained
    x, y = data()
    states = {}
    for s in range(3, 8):
        states[s] = state
        train.save_checkpoint(tmp_path, state, config=config(), keep=2)
        state, _ = step(state, batch(x, y, 0, s))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["6", "7"]
    target, _, _ = setup()
    assert leaves_equal(train.restore_checkpoint(tmp_path, target=target, step=6)[0], states[6])
    with pytest.raises(FileNotFoundError, match=r"restore_checkpoint: no checkpoint of step 5 "
                                                r"in .*; it has steps \[6, 7\]"):
        train.restore_checkpoint(tmp_path, step=5)
    with pytest.raises(ValueError, match="save_checkpoint: step 7 is not newer than the latest "
                                         "checkpoint 7"):
        train.save_checkpoint(tmp_path, state, config=config(), step=7)


def test_another_model_or_optimizer_is_refused(tmp_path, trained):
    state, _ = trained
    train.save_checkpoint(tmp_path, state, config=config(8))
    wider, _, _ = setup(16)
    with pytest.raises(ValueError, match=r"restore_checkpoint: the checkpoint .* \(model 'Toy' "
                                         r"with kwargs \{'features': 8\}\) does not fit the "
                                         r"target: .*params.hidden.kernel.value: checkpoint "
                                         r"\(3, 8\) float32, target \(3, 16\) float32"):
        train.restore_checkpoint(tmp_path, target=wider)
    other, _, _ = setup(model_cls=Other)
    with pytest.raises(ValueError, match=r"params.first.bias.value: in the target, not in the "
                                         r"checkpoint.*params.hidden.bias.value: in the "
                                         r"checkpoint, not in the target"):
        train.restore_checkpoint(tmp_path, target=other)
    sgd, _, _ = setup(optimizer=optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"opt_state.0.mu.hidden.bias.value: in the checkpoint, "
                                         r"not in the target"):
        train.restore_checkpoint(tmp_path, target=sgd)
    # Differences that do not change a shape are caught by the model configuration.
    with pytest.raises(ValueError, match=r"restore_checkpoint: the checkpoint .* holds another "
                                         r"model: name: checkpoint 'Toy', expected 'Toy2'; "
                                         r"kwargs.features: checkpoint 8, expected 16; "
                                         r"kwargs.gain: checkpoint not given, expected 2"):
        train.restore_checkpoint(tmp_path, model={"name": "Toy2",
                                                  "kwargs": {"features": 16, "gain": 2}})
    target, _, _ = setup(8)
    restored, _ = train.restore_checkpoint(tmp_path, target=target, model=config(8)["model"])
    assert leaves_equal(restored, state)


def test_bad_arguments(tmp_path, trained):
    state, _ = trained
    with pytest.raises(ValueError, match="save_checkpoint: config must have a 'model' entry"):
        train.save_checkpoint(tmp_path, state, config={"train": {}})
    bad = config()
    bad["train"]["lr"] = float("nan")
    with pytest.raises(ValueError, match="save_checkpoint: config must be JSON-serialisable"):
        train.save_checkpoint(tmp_path, state, config=bad)
    bad["train"]["lr"] = jax.numpy.ones(2)
    with pytest.raises(ValueError, match="save_checkpoint: config must be JSON-serialisable"):
        train.save_checkpoint(tmp_path, state, config=bad)
    with pytest.raises(TypeError, match="save_checkpoint: state must be a "
                                        "mskjax.train.TrainState"):
        train.save_checkpoint(tmp_path, state._asdict(), config=config())
    with pytest.raises(ValueError, match="save_checkpoint: keep must be an integer >= 1"):
        train.save_checkpoint(tmp_path, state, config=config(), keep=0)
    assert list(tmp_path.iterdir()) == []  # nothing written by the refused calls
    assert train.latest_step(tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()
    assert train.latest_step(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="restore_checkpoint: checkpoint directory .* "
                                                "does not exist"):
        train.restore_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="read_checkpoint_config: no complete checkpoint"):
        train.read_checkpoint_config(tmp_path)


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, trained, monkeypatch):
    """orbax writes into a temporary folder and renames it when complete: a failure before the
    rename leaves the previous checkpoint as the latest, restorable, and the next save removes
    the leftover."""
    from orbax.checkpoint._src.path import atomicity

    state, step = trained
    x, y = data()
    train.save_checkpoint(tmp_path, state, config=config())
    later, _ = step(state, batch(x, y, 0, 3))

    def crash(self):
        raise RuntimeError("simulated crash before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train.save_checkpoint(tmp_path, later, config=config())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("4.")]
    assert leftovers and all("orbax-checkpoint-tmp" in name for name in leftovers)
    assert any(any((tmp_path / name).rglob("manifest.ocdbt")) for name in leftovers)  # arrays
    assert not (tmp_path / "4").exists()
    assert train.latest_step(tmp_path) == 3
    target, _, _ = setup()
    assert leaves_equal(train.restore_checkpoint(tmp_path, target=target)[0], state)
    # The next save succeeds and removes the leftover.
    train.save_checkpoint(tmp_path, later, config=config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"]
    assert leaves_equal(train.restore_checkpoint(tmp_path, target=target)[0], later)


def test_resumed_run_is_bit_identical(tmp_path):
    """A run of 8 steps that stops after 5 (last checkpoint at 4), resumed from its latest
    checkpoint, ends with the parameters, optimiser state and metrics of an uninterrupted run."""
    x, y = data()

    def run(state, step, start, stop, ckpt, log, every=2):
        with train.MetricsWriter(log, resume_step=start if start else None) as writer:
            for s in range(start, stop):
                state, metrics = step(state, batch(x, y, 0, s))
                writer.write(s + 1, metrics)
                if (s + 1) % every == 0:
                    train.save_checkpoint(ckpt, state, config=config())
        return state

    state, _, _ = setup()
    step = jitted_step(donate=True)
    full = run(state, step, 0, 8, tmp_path / "a", tmp_path / "a.jsonl")

    state, _, _ = setup()
    run(state, step, 0, 5, tmp_path / "b", tmp_path / "b.jsonl")  # "killed" after step 5
    start = train.latest_step(tmp_path / "b")
    assert start == 4
    target, _, _ = setup()
    restored, _ = train.restore_checkpoint(tmp_path / "b", target=target)
    resumed = run(restored, step, start, 8, tmp_path / "b", tmp_path / "b.jsonl")
    assert leaves_equal(resumed, full)
    a, b = train.read_metrics(tmp_path / "a.jsonl"), train.read_metrics(tmp_path / "b.jsonl")
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [(r["loss"], r["grad_norm"]) for r in a] == [(r["loss"], r["grad_norm"]) for r in b]
