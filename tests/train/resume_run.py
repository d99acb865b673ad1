"""A small training run that resumes from its latest checkpoint, for the tests that kill it.

Usage: ``python -m tests.train.resume_run DIR STEPS [--sleep S] [--die-saving STEP]``. The run
trains the toy model for STEPS steps, writing DIR/metrics.jsonl at every step and a checkpoint
in DIR/ckpt every 3 steps and at the end; started again, it resumes from the latest
checkpoint. ``--die-saving STEP`` kills the process with SIGKILL while the checkpoint of STEP
is being written (its arrays written, before orbax's final rename).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

import jax

from mskjax import train
from tests.train.toy import batch, config, data, setup


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("steps", type=int)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--die-saving", type=int, default=None)
    args = parser.parse_args()
    ckpt, log = args.dir / "ckpt", args.dir / "metrics.jsonl"

    if args.die_saving is not None:
        from orbax.checkpoint._src.path import atomicity

        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def die_before_rename(self):
            if self.get().name.startswith(f"{args.die_saving}."):
                os.kill(os.getpid(), signal.SIGKILL)
            return await finalize(self)

        atomicity.AtomicRenameTemporaryPath.finalize = die_before_rename

    x, y = data()
    state, loss_fn, optimizer = setup()
    start = train.latest_step(ckpt)
    if start is not None:
        state, _ = train.restore_checkpoint(ckpt, target=state, model=config()["model"])
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)
    with train.MetricsWriter(log, resume_step=start) as writer:
        for s in range(start or 0, args.steps):
            state, metrics = step(state, batch(x, y, 0, s))
            writer.write(s + 1, metrics)
            if (s + 1) % 3 == 0 or s + 1 == args.steps:
                train.save_checkpoint(ckpt, state, config=config())
            time.sleep(args.sleep)


if __name__ == "__main__":
    main()
