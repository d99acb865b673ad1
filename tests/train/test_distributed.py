"""Multi-process data parallelism: settings, the rendezvous, and 2 processes against 1."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from mskjax import train
from mskjax.train import ProcessSet, distributed_settings
from tests.processes import free_port, run_together



# --------------------------------------------------------------------------- settings

def test_no_settings_is_one_process():
    assert distributed_settings(environ={}) == ProcessSet(None, 1, 0)
    assert distributed_settings(environ={"PATH": "/bin"}) == ProcessSet(None, 1, 0)


def test_explicit_values_win_over_the_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "a:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed_settings(environ=env) == ProcessSet("a:1", 4, 3)
    assert distributed_settings(coordinator="b:2", num_processes=2, process_id=1,
                                environ=env) == ProcessSet("b:2", 2, 1)


@pytest.mark.parametrize("env, expected", [
    ({"MASTER_ADDR": "node1", "MASTER_PORT": "29500", "WORLD_SIZE": "8", "RANK": "5"},
     ProcessSet("node1:29500", 8, 5)),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "MASTER_ADDR": "n0", "MASTER_PORT": "7"},
     ProcessSet("n0:7", 4, 2)),
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0",
      "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, ProcessSet("10.0.0.1:1234", 3, 0)),
    # JAX's own variables come before torchrun's, which come before SLURM's.
    ({"JAX_NUM_PROCESSES": "2", "WORLD_SIZE": "9", "SLURM_NTASKS": "7", "RANK": "1",
      "SLURM_PROCID": "6", "JAX_COORDINATOR_ADDRESS": "h:5", "MASTER_ADDR": "x",
      "MASTER_PORT": "6"}, ProcessSet("h:5", 2, 1)),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, ProcessSet(None, 1, 0)),
    ({"JAX_COORDINATOR_ADDRESS": "[::1]:8476", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "0"}, ProcessSet("[::1]:8476", 2, 0)),
])
def test_launcher_variables(env, expected):
    assert distributed_settings(environ=env) == expected


def test_slurm_rank_with_a_coordinator_flag():
    env = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
    assert distributed_settings(coordinator="n:9", environ=env) == ProcessSet("n:9", 2, 1)


@pytest.mark.parametrize("kwargs, env, match", [
    ({"num_processes": 2, "process_id": 2, "coordinator": "h:1"}, {}, r"process_id must be in \[0, 2\)"),
    ({"num_processes": 2, "process_id": -1, "coordinator": "h:1"}, {}, r"\[0, 2\)"),
    ({"num_processes": 0}, {}, "must be >= 1"),
    ({"num_processes": 2, "process_id": 0, "coordinator": "nohost"}, {}, "HOST:PORT"),
    ({"num_processes": 2, "process_id": 0, "coordinator": "h:99999"}, {}, "HOST:PORT"),
    ({"num_processes": 2, "process_id": 0, "coordinator": "h:port"}, {}, "HOST:PORT"),
    ({"num_processes": 2, "process_id": 0}, {}, "need a coordinator"),
    ({"coordinator": "h:1"}, {}, "not the number of processes"),
    ({"process_id": 1}, {}, "not the number of processes"),
    ({"num_processes": 2, "coordinator": "h:1"}, {}, "process id is not set"),
    ({}, {"WORLD_SIZE": "two", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
     r"num_processes \(from WORLD_SIZE\) must be an integer"),
    ({}, {"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}, "need a coordinator"),
    ({}, {"MASTER_ADDR": "h", "WORLD_SIZE": "2", "RANK": "0"}, "set together"),
    ({}, {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
     r"process_id \(from RANK\) must be in"),
])
def test_bad_settings(kwargs, env, match):
    with pytest.raises(ValueError, match=match) as info:
        distributed_settings(**kwargs, environ=env)
    assert "mskjax.train.distributed_settings" in str(info.value)


def test_bad_types():
    with pytest.raises(TypeError, match="num_processes must be an integer"):
        distributed_settings(num_processes=2.0, environ={})
    with pytest.raises(TypeError, match="num_processes must be an integer"):
        distributed_settings(num_processes=True, environ={})
    with pytest.raises(TypeError, match="environ must be a mapping"):
        distributed_settings(environ=["A=1"])
    with pytest.raises(TypeError, match="ProcessSet"):
        train.initialize_distributed(("h:1", 2, 0))
    with pytest.raises(ValueError, match="timeout_s must be a positive"):
        train.initialize_distributed(ProcessSet(None, 1, 0), timeout_s=0)
    with pytest.raises(ValueError, match="timeout_s must be a positive"):
        train.initialize_distributed(ProcessSet(None, 1, 0), timeout_s=float("nan"))


def test_one_process_initialises_nothing():
    import jax
    settings = ProcessSet(None, 1, 0)
    assert train.initialize_distributed(settings) == settings
    assert not jax.distributed.is_initialized()
    assert jax.process_count() == 1


def test_initialise_after_jax_work_is_refused():
    import jax.numpy as jnp
    jnp.zeros(1).block_until_ready()  # the backends are up in this test process
    with pytest.raises(ValueError, match="JAX computations already ran"):
        train.initialize_distributed(ProcessSet("127.0.0.1:1", 2, 1), timeout_s=1)


def test_process_shard():
    files = [f"f{i}" for i in range(7)]
    shares = [train.process_shard(files, settings=ProcessSet("h:1", 3, p)) for p in range(3)]
    assert shares == [["f0", "f3", "f6"], ["f1", "f4"], ["f2", "f5"]]
    assert sorted(sum(shares, [])) == sorted(files)
    assert train.process_shard(files) == files  # one process: everything
    assert train.process_shard(np.arange(5), settings=ProcessSet("h:1", 2, 1)).tolist() == [1, 3]
    assert train.process_shard(["a"], settings=ProcessSet("h:1", 2, 1)) == []
    with pytest.raises(TypeError, match="process_shard: items must be a sequence"):
        train.process_shard("abc")
    with pytest.raises(TypeError, match="ProcessSet or None"):
        train.process_shard([1], settings=(None, 1, 0))


def test_global_batch_on_one_process_is_shard_batch():
    batch = {"x": np.arange(8, dtype=np.float32).reshape(4, 2)}
    placed = train.global_batch(batch)
    np.testing.assert_array_equal(np.asarray(placed["x"]), batch["x"])
    assert placed["x"].sharding.spec == train.shard_batch(batch)["x"].sharding.spec
    with pytest.raises(TypeError, match="global_batch: mesh must be"):
        train.global_batch(batch, "mesh")


# --------------------------------------------------------------------------- processes

def launch(commands: list[list[str]], *, timeout: float = 150.0) -> list[tuple[int, str]]:
    """Start ``python -m tests.train.distributed_worker <args>`` for each argument list at
    once (1 CPU device each); ``[(returncode, output)]``, every process killed at ``timeout``."""
    runs = run_together([["-m", "tests.train.distributed_worker", *args] for args in commands],
                        timeout=timeout, merge_stderr=True)
    return [(rc, text) for rc, text, _ in runs]


def group(n: int, port: int, *extra: str, counts=None, ids=None) -> list[list[str]]:
    counts = counts or [n] * n
    ids = ids or list(range(n))
    return [["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(c),
             "--process-id", str(i), *extra] for c, i in zip(counts, ids)]


def error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("ERROR ")]
    assert lines, text
    return lines[-1]


def params(path: Path, prefix: str) -> list[np.ndarray]:
    with np.load(path) as data:
        keys = sorted((k for k in data if k.startswith(prefix)),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        return [data[k] for k in keys]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """2 processes with half the global batch each = 1 process with the whole batch; their
    checkpoints restore into each other's process count."""
    two, one = tmp_path / "two", tmp_path / "one"
    start = time.perf_counter()
    results = launch(group(2, free_port(), "--steps", "3", "--out", str(two),
                           "--save", str(two / "ckpt")))
    two_seconds = time.perf_counter() - start
    assert [rc for rc, _ in results] == [0, 0], results
    start = time.perf_counter()
    results = launch([["--steps", "3", "--out", str(one), "--save", str(one / "ckpt")]])
    one_seconds = time.perf_counter() - start
    assert results[0][0] == 0, results
    print(f"wall time of 3 steps: 2 processes {two_seconds:.1f} s, 1 process {one_seconds:.1f} s")

    initial = params(one / "params_0.npz", "initial_")
    final_one = params(one / "params_0.npz", "final_")
    final_two = params(two / "params_0.npz", "final_")
    for a, b, c in zip(final_two, params(two / "params_1.npz", "final_"), final_one):
        np.testing.assert_array_equal(a, b)  # the replicas agree bit for bit
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    assert max(np.max(np.abs(a - b)) for a, b in zip(final_one, initial)) > 1e-3
    losses = [json.loads((d / f"done_{p}.json").read_text())["losses"]
              for d, p in ((one, 0), (two, 0), (two, 1))]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert json.loads((two / "done_0.json").read_text())["devices"] == 2

    # written once, with the mesh in its meta
    (step,) = [p for p in (two / "ckpt").iterdir()]
    assert step.name == "3" and not list((two / "ckpt").glob("*tmp*"))
    meta = json.loads((step / "meta" / "meta.json").read_text())
    assert meta["mesh"]["axis_names"] == ["batch"] and meta["mesh"]["num_processes"] == 2

    # the 2-process checkpoint into 1 process, the 1-process checkpoint into 2 processes
    back_one, back_two = tmp_path / "back_one", tmp_path / "back_two"
    results = launch([["--steps", "1", "--out", str(back_one), "--restore", str(two / "ckpt")]])
    assert results[0][0] == 0, results
    results = launch(group(2, free_port(), "--steps", "1", "--out", str(back_two),
                           "--restore", str(one / "ckpt")))
    assert [rc for rc, _ in results] == [0, 0], results
    for a, b in zip(params(back_one / "params_0.npz", "restored_"), final_two):
        np.testing.assert_array_equal(a, b)
    for p in (0, 1):
        for a, b in zip(params(back_two / f"params_{p}.npz", "restored_"), final_one):
            np.testing.assert_array_equal(a, b)
    # and both continue to the same step 4
    for a, b in zip(params(back_one / "params_0.npz", "final_"),
                    params(back_two / "params_0.npz", "final_")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unreachable_coordinator_is_a_clear_error_in_bounded_time(tmp_path):
    port = free_port()
    start = time.perf_counter()
    ((rc, text),) = launch([["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                             "--process-id", "1", "--timeout", "3", "--out", str(tmp_path)]],
                           timeout=60)
    elapsed = time.perf_counter() - start
    assert rc == 3 and rc != -signal.SIGABRT, text
    line = error_line(text)
    assert line.startswith("ERROR TimeoutError: mskjax.train.initialize_distributed: process 1 "
                           f"could not reach the coordinator 127.0.0.1:{port} within 3 s"), line
    assert elapsed < 20


def test_missing_processes_time_out_on_the_coordinator(tmp_path):
    ((rc, text),) = launch([["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes",
                             "3", "--process-id", "0", "--timeout", "2", "--out",
                             str(tmp_path)]], timeout=60)
    assert rc == 3, text
    assert "process 0 waited 2 s" in error_line(text) and "[1, 2] never arrived" in text


@pytest.mark.slow
def test_mismatched_process_counts_fail_on_every_process(tmp_path):
    results = launch(group(2, free_port(), "--timeout", "10", "--out", str(tmp_path),
                           counts=[2, 3]), timeout=60)
    for rc, text in results:
        assert rc == 3, text
        assert ("ValueError: mskjax.train.initialize_distributed: process 1 was started with "
                "num_processes=3, process 0 with 2") in error_line(text)


@pytest.mark.slow
def test_repeated_process_ids_fail(tmp_path):
    results = launch(group(3, free_port(), "--timeout", "10", "--out", str(tmp_path),
                           ids=[0, 1, 1]), timeout=60)
    for rc, text in results:
        assert rc == 3, text
        assert "two processes were started with process_id=1" in error_line(text)


@pytest.mark.slow
def test_a_state_that_differs_between_processes_is_refused(tmp_path):
    results = launch(group(2, free_port(), "--perturb", "--out", str(tmp_path)), timeout=90)
    for rc, text in results:
        assert rc == 3, text
        assert ("ValueError: mskjax.train.data_parallel: the arrays to place on the mesh differ "
                "between processes (processes [1] differ from process 0)") in error_line(text)


# --------------------------------------------------------------------------- checkpoints

def test_a_checkpoint_from_another_mesh_is_refused(tmp_path):
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from .toy import config, setup

    state, _, _ = setup()
    mesh = train.batch_mesh()
    train.save_checkpoint(tmp_path, train.replicate(state, mesh), config=config())
    meta = json.loads((tmp_path / "0" / "meta" / "meta.json").read_text())
    assert meta["mesh"] == {"axis_names": ["batch"], "axis_sizes": [jax.device_count()],
                            "num_devices": jax.device_count(), "num_processes": 1,
                            "sharded": {}}
    # the same layout restores, on a mesh or on one device
    restored, _ = train.restore_checkpoint(tmp_path, target=train.replicate(state, mesh))
    restored, _ = train.restore_checkpoint(tmp_path, target=state)
    other = Mesh(np.array(jax.devices()), ("data",))
    target = jax.device_put(state, NamedSharding(other, PartitionSpec()))
    with pytest.raises(ValueError, match=r"is a checkpoint from another mesh: saved on mesh "
                       r"\{'batch': \d+\} over 1 processes, all leaves replicated; the target "
                       r"is on mesh \{'data': \d+\}"):
        train.restore_checkpoint(tmp_path, target=target)
    column = NamedSharding(mesh, PartitionSpec(None, "batch"))
    sharded = train.replicate(state, mesh)._replace(params=jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.device_put(leaf, column)
        if "hidden" in jax.tree_util.keystr(path) and leaf.ndim == 2 else leaf,
        train.replicate(state, mesh).params))
    with pytest.raises(ValueError, match=r"another mesh: .* sharded leaves "
                       r"params.hidden.kernel.value \[None, 'batch'\]"):
        train.restore_checkpoint(tmp_path, target=sharded)


def test_checkpoints_without_the_mesh_entry_still_restore(tmp_path):
    from .toy import config, leaves_equal, setup

    state, _, _ = setup()
    train.save_checkpoint(tmp_path, state, config=config())
    path = tmp_path / "0" / "meta" / "meta.json"
    meta = json.loads(path.read_text())
    del meta["mesh"]
    path.write_text(json.dumps(meta))
    restored, _ = train.restore_checkpoint(tmp_path, target=state)
    assert leaves_equal(restored.params, state.params)
