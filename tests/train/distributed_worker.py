"""One process of a data-parallel toy run on jax.distributed (started by test_distributed.py).

    python -m tests.train.distributed_worker --coordinator 127.0.0.1:PORT --num-processes 2 \
        --process-id 0 --steps 3 --out OUT [--save CKPT] [--restore CKPT]

With ``--num-processes 1`` (and no coordinator) it is the single-process reference. Each step's
global batch is the same fixed rows of the toy data set; process ``p`` feeds block ``p`` of them
through ``global_batch``. ``--restore`` starts from a checkpoint (the restored parameters are
written too). Process ``p`` writes ``OUT/params_<p>.npz`` (``initial_*``, ``restored_*`` and
``final_*`` leaves) and ``OUT/done_<p>.json``. Errors print one line ``ERROR <type>: <message>``
and exit with status 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", required=True)
    parser.add_argument("--save")
    parser.add_argument("--restore")
    parser.add_argument("--perturb", action="store_true",
                        help="process 1 starts from other parameters (must be refused)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    from mskjax import train
    try:
        settings = train.distributed_settings(coordinator=args.coordinator,
                                              num_processes=args.num_processes,
                                              process_id=args.process_id, environ={})
        train.initialize_distributed(settings, timeout_s=args.timeout)
        train.initialize_distributed(settings, timeout_s=args.timeout)  # again: nothing
        if settings.num_processes > 1:
            other = settings._replace(num_processes=settings.num_processes + 1)
            try:
                train.initialize_distributed(other)
            except ValueError as err:
                assert "already takes part in the run" in str(err), err
            else:
                raise AssertionError("a second run's settings were accepted")
        run(args, settings, start)
    except Exception as err:  # noqa: BLE001 - reported to the test in one line
        print(f"ERROR {type(err).__name__}: {err}", flush=True)
        return 3
    return 0


def run(args, settings, start):
    import jax
    import numpy as np

    from mskjax import train
    from tests.train.toy import config, data, setup

    pid, n = settings.process_id, settings.num_processes
    if args.batch % n:
        raise ValueError(f"batch {args.batch} is not divisible by {n} processes")
    local = args.batch // n
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def host(tree):
        return [np.asarray(leaf.addressable_data(0)) if isinstance(leaf, jax.Array) else
                np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]

    mesh = train.batch_mesh()
    state, loss_fn, optimizer = setup()
    if args.perturb and pid == 1:
        state = state._replace(params=jax.tree_util.tree_map(lambda v: v + 1, state.params))
    arrays = {f"initial_{i}": a for i, a in enumerate(host(state.params))}
    step = train.data_parallel(train.make_train_step(loss_fn, optimizer), mesh=mesh,
                               donate_state=True)
    if args.restore:
        target = train.replicate(state, mesh)
        state, _ = train.restore_checkpoint(args.restore, target=target,
                                            model=config()["model"])
        arrays.update({f"restored_{i}": a for i, a in enumerate(host(state.params))})
    x, y = data()
    losses = []
    first = int(np.asarray(jax.device_get(state.step.addressable_data(0)))
                if isinstance(state.step, jax.Array) else state.step)
    step_seconds = []
    for s in range(first, first + args.steps):
        tick = time.perf_counter()
        index = train.batch_indices(0, s, num_examples=len(x), batch_size=args.batch)
        rows = index[pid * local:(pid + 1) * local]
        batch = train.global_batch({"x": x[rows], "y": y[rows]}, mesh)
        state, metrics = step(state, batch)
        losses.append(float(np.asarray(metrics["loss"].addressable_data(0))))
        step_seconds.append(time.perf_counter() - tick)
    arrays.update({f"final_{i}": a for i, a in enumerate(host(state.params))})
    if args.save:
        train.save_checkpoint(args.save, state, config=config())
    np.savez(out / f"params_{pid}.npz", **arrays)
    (out / f"done_{pid}.json").write_text(json.dumps({
        "losses": losses, "seconds": time.perf_counter() - start,
        "first_step_s": step_seconds[0] if step_seconds else None,
        "median_later_step_s": float(np.median(step_seconds[1:])) if step_seconds[1:] else None,
        "devices": jax.device_count(), "processes": jax.process_count()}))


if __name__ == "__main__":
    sys.exit(main())
