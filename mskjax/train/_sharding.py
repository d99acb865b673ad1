"""Data parallelism: the batch split over a mesh's ``"batch"`` axis, the state replicated."""

from __future__ import annotations

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


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """Place a full copy of every array of ``tree`` on every device of ``mesh``."""
    mesh = _check_mesh(mesh, "mskjax.train.replicate")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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
        """``(replicate(state), shard_batch(batch))`` on this step's mesh."""
        _check_batch(batch, self.mesh.shape[AXIS], "mskjax.train.data_parallel")
        return (replicate(state, self.mesh),
                jax.device_put(batch, NamedSharding(self.mesh, PartitionSpec(AXIS))))

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
