"""What the training commands share: the run folder, resuming, the loop, the summary.

A run folder holds ``checkpoints/`` (orbax, atomic), ``metrics.jsonl`` (one line per step) and
``summary.json``. The same command on the same folder resumes the run; a folder holding a run
with other settings, or anything else, is refused.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optax

from .. import train
from ._files import write_json


def positive_int(value, label: str, func: str):
    """ValueError naming ``func`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{func}: {label} must be a positive integer, got {value!r}")


def check_run_options(func: str, *, steps, batch_size, checkpoint_every, max_minutes, lr,
                      **more_ints):
    """The options every training command shares: positive integer ``steps``, ``batch_size``,
    ``checkpoint_every`` (and ``more_ints``), positive ``max_minutes`` (or None), a positive
    finite ``lr``."""
    for label, value in (("steps", steps), ("batch_size", batch_size),
                         ("checkpoint_every", checkpoint_every), *more_ints.items()):
        positive_int(value, label, func)
    if max_minutes is not None and not (max_minutes > 0):
        raise ValueError(f"{func}: max_minutes must be positive, got {max_minutes!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"{func}: lr must be positive, got {lr!r}")


def process_split(processes, batch_size: int, func: str) -> tuple[int, int, int]:
    """``(num_processes, process_id, batch_size // num_processes)`` of a run's processes
    (``None``: one process); ``batch_size`` must be divisible by the process count."""
    n = 1 if processes is None else processes.num_processes
    pid = 0 if processes is None else processes.process_id
    if batch_size % n:
        raise ValueError(f"{func}: batch_size {batch_size} must be divisible by the {n} "
                         f"processes (each draws batch_size / {n} examples a step)")
    return n, pid, batch_size // n


def process_seed(seed: int, n: int, pid: int) -> int:
    """The seed of a process's batch order: ``seed`` itself on one process (the order of a
    single-process run), else a function of ``(seed, process id)``."""
    return seed if n == 1 else int(np.random.SeedSequence([seed, pid]).generate_state(1)[0])


def process_mesh(local_batch: int, n: int):
    """A ``"batch"`` mesh of the same number of devices from every process (as many as divide
    ``local_batch``), process by process."""
    import jax

    per_process = math.gcd(local_batch, jax.local_device_count())
    return train.batch_mesh([d for p in range(n) for d in
                             [d for d in jax.devices() if d.process_index == p][:per_process]])


def process_step(step, sampler, *, local_batch: int, num_processes: int):
    """``(step_fn, batch_of)``: ``step`` jitted (the state donated) on one process, or
    data-parallel over :func:`process_mesh` with each process's ``sampler(s)`` rows assembled
    into the global batch by :func:`mskjax.train.global_batch` on several."""
    import jax

    if num_processes == 1:
        return jax.jit(step, donate_argnums=0), sampler
    mesh = process_mesh(local_batch, num_processes)
    step_fn = train.data_parallel(step, mesh=mesh, donate_state=True)

    def batch_of(s):
        return train.global_batch(sampler(s), mesh)

    return step_fn, batch_of


def optimizer(lr: float):
    """Adam with gradient clipping at global norm 1, the optimiser of every training command."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))


def prepare_run_folder(out, func: str) -> tuple[Path, Path]:
    """``(out, out/checkpoints)``, created; refuses a file or a non-empty non-run folder."""
    out = Path(out)
    ckpt = out / "checkpoints"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{func}: --out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not ckpt.is_dir():
        raise ValueError(f"{func}: --out {out} is not empty and holds no run to resume; use "
                         "an empty or new folder")
    ckpt.mkdir(parents=True, exist_ok=True)
    return out, ckpt


def check_run(saved: dict, settings: dict, keys, out: Path, func: str):
    """Refuse to resume a run whose settings ``keys`` differ from ``settings``."""
    differing = [k for k in keys if saved.get(k) != settings.get(k)]
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} now"
                            for k in differing)
        raise ValueError(f"{func}: {out} holds a run with other settings ({details}); use "
                         "another --out, or the same settings to resume it")


def start_state(net, opt, *, ckpt: Path, settings: dict, keys, run_config: dict, out: Path,
                seed: int, func: str):
    """``(graphdef, rest, state, resumed)``: a fresh train state of ``net``, or the run in
    ``ckpt`` when it holds one (its settings ``keys`` must equal ``settings``)."""
    graphdef, params, rest = train.split_model(net)
    state = train.init_train_state(params, opt, key=seed)
    resumed = train.latest_step(ckpt) is not None
    if resumed:
        check_run(train.read_checkpoint_config(ckpt)["train"], settings, keys, out, func)
        state, _ = train.restore_checkpoint(ckpt, target=state, model=run_config["model"])
    return graphdef, rest, state, resumed


def run_training(step_fn: Callable, state, batch_of: Callable[[int], Any], *, out: Path,
                 ckpt: Path, run_config: dict, steps: int, max_minutes: float | None,
                 checkpoint_every: int, progress: bool, desc: str, func: str,
                 primary: bool = True, num_processes: int = 1):
    """Train from ``state.step`` to ``steps`` (or ``max_minutes`` of training time, compile
    apart), logging every step and checkpointing every ``checkpoint_every`` steps and at the
    end.

    In a run of ``num_processes`` processes every process calls it (the checkpoints are
    collective); only the ``primary`` one (process 0) writes ``metrics.jsonl``, shows the
    progress bar and cleans up after a failure, and process 0's clock decides when
    ``max_minutes`` is over.

    Returns:
        ``(state, summary)``: the summary's fields common to every training command.
    """
    try:
        return _train_loop(step_fn, state, batch_of, out=out, ckpt=ckpt, run_config=run_config,
                           steps=steps, max_minutes=max_minutes,
                           checkpoint_every=checkpoint_every, progress=progress, desc=desc,
                           func=func, primary=primary, num_processes=num_processes)
    except BaseException:
        if primary:
            discard_unsaved_run(out, ckpt)
        raise


class _Records:
    """What a process other than process 0 keeps of the metrics: the records, no file."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, step, metrics):
        return {"step": int(step), **{k: float(np.asarray(v)) for k, v in metrics.items()}}


def _budget_over(elapsed: float, budget: float | None, num_processes: int) -> bool:
    over = budget is not None and elapsed >= budget
    if budget is None or num_processes == 1:
        return over
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(over)))


def discard_unsaved_run(out: Path, ckpt: Path) -> None:
    """After a failed or interrupted run that saved no checkpoint: remove what it wrote (its
    ``metrics.jsonl``, the empty ``checkpoints/`` and ``out`` itself when it is left empty), so
    that no partial run is left behind. A run with a checkpoint is kept: it resumes."""
    if not ckpt.is_dir() or train.latest_step(ckpt) is not None:
        return
    (out / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(ckpt, ignore_errors=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _train_loop(step_fn, state, batch_of, *, out, ckpt, run_config, steps, max_minutes,
                checkpoint_every, progress, desc, func, primary=True, num_processes=1):
    start = int(state.step)
    budget = None if max_minutes is None else 60.0 * max_minutes
    elapsed, compile_s, last_saved, skipped_in_row = 0.0, None, start, 0
    stop_reason = "steps"
    recent = []
    writer = train.MetricsWriter if primary else _Records
    with writer(out / "metrics.jsonl", resume_step=start) as log, \
            train.ProgressBar(steps, initial=start, keys=("loss",),
                              disable=not (progress and primary), desc=desc) as bar:
        for s in range(start, steps):
            if _budget_over(elapsed, budget, num_processes):
                stop_reason = "max_minutes"
                break
            tick = time.perf_counter()
            state, metrics = step_fn(state, batch_of(s))
            record = log.write(s + 1, metrics)
            recent = [*recent[-19:], record["loss"]]
            took = time.perf_counter() - tick
            if compile_s is None:
                compile_s = took
            else:
                elapsed += took
            bar.update(s + 1, record)
            skipped_in_row = skipped_in_row + 1 if record.get("skipped") else 0
            if skipped_in_row >= 10:
                train.save_checkpoint(ckpt, state, config=run_config)
                raise ValueError(f"{func}: 10 steps in a row had a non-finite loss or "
                                 f"gradient (last at step {s + 1}); try a lower --lr")
            if (s + 1) % checkpoint_every == 0:
                train.save_checkpoint(ckpt, state, config=run_config)
                last_saved = s + 1
    final = int(state.step)
    if final != last_saved:
        train.save_checkpoint(ckpt, state, config=run_config)
    if primary:
        records = train.read_metrics(out / "metrics.jsonl")
        tail = [r["loss"] for r in records[-20:]]
    else:
        tail = recent
    return state, {"steps": final, "stopped_by": stop_reason,
                   "first_step_s_including_compilation": compile_s,
                   "training_s_this_session": elapsed,
                   "final_loss_mean_of_last_20": float(np.mean(tail)) if tail else None,
                   "skipped_steps": int(state.skipped), "checkpoint": str(ckpt)}


def write_summary(out: Path, summary: dict) -> dict:
    write_json(out / "summary.json", summary)
    return summary


def restore_trained(path: Path, net, model_config: dict, lr: float):
    """``net`` with the parameters of the latest checkpoint in ``path``, in eval mode."""
    graphdef, params, rest = train.split_model(net)
    target = train.init_train_state(params, optimizer(lr), key=0)
    state, _ = train.restore_checkpoint(path, target=target, model=model_config)
    net = train.merge_model(graphdef, state.params, rest)
    net.eval()
    return net


def checkpoint_folder(checkpoint, func: str, command: str) -> Path:
    """The ``checkpoints/`` folder of a run folder (or the folder itself), checked."""
    path = Path(checkpoint)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        raise FileNotFoundError(f"{func}: {checkpoint}: no such folder")
    if train.latest_step(path) is None:
        raise ValueError(f"{func}: {checkpoint} holds no checkpoint; give the --out folder of "
                         f"`{command}` or its checkpoints/ folder")
    return path
