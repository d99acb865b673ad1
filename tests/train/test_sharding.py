"""Data parallelism: batch sharded over a mesh, state replicated, same result as one device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from mskjax import train

from .toy import batch, data, jitted_step, leaves_equal, setup

ROOT = Path(__file__).resolve().parents[2]

FOUR_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    from jax.sharding import PartitionSpec
    from mskjax import train
    from tests.train.toy import data, setup

    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    x, y = data()
    batches = [{"x": x[8 * s:8 * s + 8], "y": y[8 * s:8 * s + 8]} for s in range(3)]

    state, loss_fn, optimizer = setup()
    single = jax.jit(train.make_train_step(loss_fn, optimizer))
    for b in batches:
        state, _ = single(state, b)

    mesh = train.batch_mesh()
    parallel_state, _, _ = setup()
    parallel = train.data_parallel(train.make_train_step(loss_fn, optimizer), mesh=mesh,
                                   donate_state=True)
    first = parallel_state
    for b in batches:
        parallel_state, metrics = parallel(parallel_state, b)
    donated = all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(first.params))

    placed = train.shard_batch(batches[0], mesh)["x"]
    shards = sorted((s.device.id, s.data.shape, s.index[0].start) for s in
                    placed.addressable_shards)
    compiled = parallel.lower(parallel_state, batches[0]).compile()
    batch_spec = compiled.input_shardings[0][1]["x"].spec
    state_leaves = jax.tree_util.tree_leaves(parallel_state)
    replicated = all(leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
                     for leaf in state_leaves)
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
             for a, b in zip(jax.tree_util.tree_leaves(parallel_state.params),
                             jax.tree_util.tree_leaves(state.params))]
    try:
        parallel(parallel_state, {"x": x[:6], "y": y[:6]})
        error = ""
    except ValueError as err:
        error = str(err)
    print(repr({"diff": max(diffs), "shards": shards, "spec": tuple(batch_spec),
                "replicated": replicated, "donated": donated, "error": error,
                "steps": int(parallel_state.step), "skipped": int(metrics["skipped"])}))
""")


def test_sharded_step_equals_single_device_step():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-c", FOUR_DEVICES], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = eval(result.stdout.strip().splitlines()[-1])
    assert out["diff"] < 1e-5, out  # float32 round-off (sums in another order)
    assert out["shards"] == [(0, (2, 3), 0), (1, (2, 3), 2), (2, (2, 3), 4), (3, (2, 3), 6)]
    assert out["spec"] == ("batch",)
    assert out["replicated"] and out["donated"]
    assert out["steps"] == 3 and out["skipped"] == 0
    assert "data_parallel: every array of the batch needs a leading batch axis divisible by " \
           "the 4 devices" in out["error"]


def test_one_device_mesh_equals_jit():
    x, y = data()
    state, loss_fn, optimizer = setup()
    step = train.make_train_step(loss_fn, optimizer)
    expected, _ = jitted_step()(state, batch(x, y, 0, 0))
    got, _ = train.data_parallel(step)(state, batch(x, y, 0, 0))
    assert leaves_equal(got, expected)
    assert leaves_equal(state.params, setup()[0].params)  # not donated by default
    metrics = train.data_parallel(train.make_eval_step(
        lambda p, b: {"n": b["x"].shape[0]}))(state, batch(x, y, 0, 0))
    assert int(metrics["n"]) == 4


def test_bad_mesh_and_batch():
    bad = Mesh(np.array(jax.devices()), ("data",))
    with pytest.raises(ValueError, match=r"mskjax.train.data_parallel: mesh must have an axis "
                                         r"named 'batch', got axes \('data',\)"):
        train.data_parallel(lambda s, b: (s, {}), mesh=bad)
    with pytest.raises(TypeError, match="data_parallel: step must be callable"):
        train.data_parallel(None)
    with pytest.raises(ValueError, match="shard_batch: every array of the batch needs a leading "
                                         "batch axis"):
        train.shard_batch({"x": np.float32(1.0)})
    with pytest.raises(ValueError, match="batch_mesh: devices must not be empty"):
        train.batch_mesh([])
    placed = train.replicate({"w": np.ones(3, np.float32)})
    assert placed["w"].sharding.is_fully_replicated
