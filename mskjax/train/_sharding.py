"""Data parallelism: the batch split over a mesh's ``"batch"`` axis, the state replicated."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over ``devices`` (default all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("mskjax.train.batch_mesh: devices must not be empty")
    return Mesh(np.array(devices), (AXIS,))


def _check_mesh(mesh, func) -> Mesh:
    if mesh is None:
        return batch_mesh()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{func}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if AXIS not in mesh.axis_names:
        raise ValueError(f"{func}: mesh must have an axis named {AXIS!r}, got axes "
                         f"{mesh.axis_names}")
    return mesh


def _check_batch(batch, size, func):
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves:
        raise ValueError(f"{func}: the batch has no arrays")
    for leaf in leaves:
        shape = np.shape(leaf)
        if not shape or shape[0] % size:
            raise ValueError(f"{func}: every array of the batch needs a leading batch axis "
                             f"divisible by the {size} devices of the mesh's {AXIS!r} axis, got "
                             f"shapes {[tuple(np.shape(x)) for x in leaves]}")


def shard_batch(batch: Any, mesh: Mesh | None = None) -> Any:
    """Place every array of ``batch`` split along its leading axis over ``mesh``'s "batch" axis.

    The leading axis must be divisible by the number of devices along that axis.
    """
    func = "mskjax.train.shard_batch"
    mesh = _check_mesh(mesh, func)
    _check_batch(batch, mesh.shape[AXIS], func)
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(AXIS)))


def _spans_processes(mesh: Mesh) -> bool:
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _is_global(leaf) -> bool:
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def _fingerprint(leaves) -> np.ndarray:
    digest = hashlib.blake2b(digest_size=16)
    for leaf in leaves:
        host = np.asarray(leaf)
        digest.update(f"{host.dtype}{host.shape}".encode())
        digest.update(np.ascontiguousarray(host).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint32)


def _place_global(tree: Any, sharding: NamedSharding, func: str) -> Any:
    """``device_put`` onto a mesh over several processes, where each process holds the full
    value: host and single-device arrays go through ``make_array_from_callback`` (JAX's
    ``device_put`` refuses devices of other processes), after a check that every process
    holds the same values (a different value would silently become a corrupt global array)."""
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    local = []
    for i, leaf in enumerate(leaves):
        if _is_global(leaf):
            continue
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                jax.dtypes.prng_key):
            local.append((i, np.asarray(jax.device_get(jax.random.key_data(leaf))),
                          jax.random.key_impl(leaf)))
        else:
            local.append((i, np.asarray(jax.device_get(leaf)), None))
    if not local:
        return jax.tree_util.tree_unflatten(treedef, [
            leaf if leaf.sharding == sharding else jax.device_put(leaf, sharding)
            for leaf in leaves])
    fingerprints = multihost_utils.process_allgather(_fingerprint([h for _, h, _ in local]))
    differing = [p for p in range(len(fingerprints))
                 if not np.array_equal(fingerprints[p], fingerprints[0])]
    if differing:
        raise ValueError(f"{func}: the arrays to place on the mesh differ between processes "
                         f"(processes {differing} differ from process 0); every process must "
                         "hold the same values (the same seed, the same checkpoint), or pass "
                         "global arrays (mskjax.train.global_batch)")
    out = list(leaves)
    for i, host, impl in local:
        placed = jax.make_array_from_callback(host.shape, sharding,
                                              lambda index, host=host: host[index])
        out[i] = placed if impl is None else jax.random.wrap_key_data(placed, impl=impl)
    out = [leaf if not _is_global(leaf) or leaf.sharding == sharding
           else jax.device_put(leaf, sharding) for leaf in out]
    return jax.tree_util.tree_unflatten(treedef, out)


def _place(tree: Any, mesh: Mesh, spec: PartitionSpec, func: str) -> Any:
    sharding = NamedSharding(mesh, spec)
    if _spans_processes(mesh):
        return _place_global(tree, sharding, func)
    return jax.device_put(tree, sharding)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """Place a full copy of every array of ``tree`` on every device of ``mesh``.

    On a mesh over several processes (``jax.distributed``), every process must pass the same
    values (checked: a ValueError names the processes that differ); arrays already placed
    over the mesh (global arrays) are kept.
    """
    func = "mskjax.train.replicate"
    mesh = _check_mesh(mesh, func)
    return _place(tree, mesh, PartitionSpec(), func)


class DataParallelStep:
    """A step jitted with the state replicated and the batch sharded (see
    :func:`data_parallel`). ``jitted`` is the underlying ``jax.jit`` function."""

    def __init__(self, step: Callable, mesh: Mesh, donate_state: bool):
        self.mesh = mesh
        replicated = NamedSharding(mesh, PartitionSpec())
        sharded = NamedSharding(mesh, PartitionSpec(AXIS))
        self.jitted = jax.jit(step, in_shardings=(replicated, sharded),
                              out_shardings=replicated,
                              donate_argnums=(0,) if donate_state else ())

    def place(self, state, batch):
        """``(replicate(state), shard_batch(batch))`` on this step's mesh.

        On a mesh over several processes the batch is best a global array
        (:func:`~mskjax.train.global_batch`); a host batch must then be the whole global
        batch, the same on every process. Arrays already placed so are kept as they are.
        """
        func = "mskjax.train.data_parallel"
        _check_batch(batch, self.mesh.shape[AXIS], func)
        if not (_spans_processes(self.mesh) or any(
                _is_global(leaf) for leaf in jax.tree_util.tree_leaves((state, batch)))):
            return (replicate(state, self.mesh),
                    jax.device_put(batch, NamedSharding(self.mesh, PartitionSpec(AXIS))))
        return (_place(state, self.mesh, PartitionSpec(), func),
                _place(batch, self.mesh, PartitionSpec(AXIS), func))

    def __call__(self, state, batch):
        return self.jitted(*self.place(state, batch))

    def lower(self, state, batch):
        """``jitted.lower`` on the placed arguments (to inspect the compiled shardings)."""
        return self.jitted.lower(*self.place(state, batch))


def data_parallel(step: Callable, *, mesh: Mesh | None = None,
                  donate_state: bool = False) -> DataParallelStep:
    """Jit ``step(state, batch)`` for data parallelism over ``mesh``'s ``"batch"`` axis.

    The batch (every array, along its leading axis) is split over the devices of the
    ``"batch"`` axis, the state (parameters, optimiser state, key) and all outputs are
    replicated; XLA inserts the reduction of the gradients over devices, so a step on the
    mesh computes the same as on one device (up to the order of floating-point sums). Each
    call places its arguments first (a no-op for arrays already placed so).

    Args:
        step: a pure step, ``make_train_step(...)`` (returns ``(state, metrics)``) or
            ``make_eval_step(...)`` (returns metrics).
        mesh: a mesh with an axis named ``"batch"`` (keyword-only); default
            :func:`batch_mesh` over all devices.
        donate_state: donate the state's buffers to the step (keyword-only); ``True`` for a
            train step (the old state is then invalid), ``False`` for an eval step.

    Returns:
        A :class:`DataParallelStep`, called like ``step``; the batch's leading axis must be
        divisible by the number of devices of the ``"batch"`` axis.
    """
    func = "mskjax.train.data_parallel"
    if not callable(step):
        raise TypeError(f"{func}: step must be callable, got {type(step).__name__}")
    return DataParallelStep(step, _check_mesh(mesh, func), bool(donate_state))
