"""Metrics as JSON lines, resumable with the checkpoints, and a progress bar."""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _scalar(name, value, func):
    """A metric value as a Python bool, int or float (device arrays are fetched)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.asarray(value)
        if array.shape == () and array.dtype.kind in "biuf":
            return array.item() if array.dtype.kind != "f" else float(array)
        raise TypeError(f"{func}: metric {name!r} must be a real scalar, got an array of shape "
                        f"{array.shape} and dtype {array.dtype}")
    raise TypeError(f"{func}: metric {name!r} must be a real scalar, got "
                    f"{type(value).__name__}")


def _parse(path: Path, func) -> list[dict]:
    """The records of a metrics file. A last line without its newline (a write cut short by a
    crash) is dropped; any other line that is not a JSON object raises."""
    text = path.read_text()
    complete = text.split("\n")[:-1]  # what follows the last newline is "" or cut short
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{func}: {path} line {number} is not JSON: {err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{func}: {path} line {number} is not a metrics record with an "
                             f"integer 'step'")
        records.append(record)
    return records


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics file written by :class:`MetricsWriter`, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mskjax.train.read_metrics: {path} does not exist")
    return _parse(path, "mskjax.train.read_metrics")


class MetricsWriter:
    """Append metrics to a JSON-lines file: one object per line, flushed at every write.

    Each line is ``{"step": int, "time": <seconds since the epoch>, <name>: <value>, ...}``
    with the scalar metrics as JSON numbers (NaN and infinities as Python's ``json`` writes
    them, ``NaN``/``Infinity``, which :func:`read_metrics` reads back).

    Resuming: ``MetricsWriter(path, resume_step=k)`` after restoring the checkpoint of step
    ``k`` keeps the lines with ``step <= k``, drops the later ones (written after that
    checkpoint by the interrupted run; the resumed run writes them again), and appends. The
    kept lines are rewritten to a temporary file beside ``path`` and renamed onto it. A last
    line cut short by a crash is dropped.

    Args:
        path: the file.
        resume_step: ``None`` (default) for a new run: ``path`` must not exist or be empty; an
            int to continue a run restored at that step (keyword-only).
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None):
        func = "mskjax.train.MetricsWriter"
        self.path = Path(path)
        if resume_step is None:
            if self.path.exists() and self.path.stat().st_size > 0:
                raise FileExistsError(f"{func}: {self.path} already holds metrics; pass "
                                      "resume_step to continue a restored run, or remove it")
        else:
            if (isinstance(resume_step, bool) or not isinstance(resume_step, numbers.Integral)
                    or resume_step < 0):
                raise ValueError(f"{func}: resume_step must be a non-negative integer, got "
                                 f"{resume_step!r}")
            if self.path.exists():
                kept = [r for r in _parse(self.path, func) if r["step"] <= resume_step]
                self._rewrite(kept)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def _rewrite(self, records):
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record) + "\n")
            os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
        """Append one line for ``step`` and flush it; returns the record written.

        Fetches device arrays (a device sync): write every few steps in a hot loop.
        """
        func = "mskjax.train.MetricsWriter.write"
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            step = _scalar("step", step, func)
            if not isinstance(step, int):
                raise TypeError(f"{func}: step must be an integer, got {step!r}")
        if not isinstance(metrics, Mapping):
            raise TypeError(f"{func}: metrics must be a dict, got {type(metrics).__name__}")
        record = {"step": int(step), "time": time.time()}
        for name, value in metrics.items():
            if not isinstance(name, str) or name in ("step", "time"):
                raise ValueError(f"{func}: metric names must be strings other than 'step' and "
                                 f"'time', got {name!r}")
            record[name] = _scalar(name, value, func)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        return record

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProgressBar:
    """A tqdm progress bar over training steps showing the rate (steps/s) and the loss.

    Args:
        total: the last step of the run.
        initial: the step the run starts at (keyword-only), e.g. a restored step.
        keys: the metrics shown beside the bar (keyword-only).
        disable: no output at all (keyword-only), e.g. when not on a terminal.
        **kwargs: passed to ``tqdm.tqdm`` (``desc``, ``file``, ``mininterval``, ...).
    """

    def __init__(self, total: int, *, initial: int = 0, keys=("loss",), disable: bool = False,
                 **kwargs):
        try:
            from tqdm.auto import tqdm
        except ImportError as err:
            raise ImportError("mskjax.train.ProgressBar needs tqdm: pip install tqdm",
                              name="tqdm") from err
        self.keys = tuple(keys)
        self._bar = tqdm(total=int(total), initial=int(initial), unit="step", disable=disable,
                         **kwargs)

    @property
    def n(self) -> int:
        """The step shown."""
        return self._bar.n

    def update(self, step: int, metrics: Mapping[str, Any] | None = None):
        """Move the bar to ``step`` and show ``metrics[k]`` for each of ``keys`` present.

        Fetches those metrics from the device (a device sync).
        """
        if metrics:
            shown = {k: f"{_scalar(k, metrics[k], 'mskjax.train.ProgressBar'):.4g}"
                     for k in self.keys if k in metrics}
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(int(step) - self._bar.n)

    def close(self):
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
