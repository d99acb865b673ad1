"""Reconstruct a stack of independent slices: sharded over devices, one slice at a time on each.

The batching rule was chosen by measurement (``benchmarks/recon_speed.py``, 32 slices of the
8-coil 230 x 180 brain, CG-SENSE, 2-core CPU): a ``jax.vmap`` over all slices was the slowest
(its working set of every slice's coil images leaves the cache at each iteration), chunks of a
few slices (``lax.map`` with ``batch_size``) came next, and ``lax.map`` one slice at a time was
the fastest on one device. One XLA CPU device keeps about one core busy in these FFT-bound
loops, so the remaining factor comes from devices: the slices are split over the devices by
``jax.shard_map`` and each device maps over its share. On CPU, ask for one device per core
before JAX starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .._checks import check_positive_int


def map_slices(fn: Callable, *, devices: Sequence[jax.Device] | None = None,
               batch_size: int | None = None) -> Callable:
    """Return ``mapped(*arrays)`` that applies ``fn`` to each index of the arrays' first axis.

    ``mapped(k, m)[i] == fn(k[i], m[i])`` (for every leaf of ``fn``'s output pytree), computed
    by ``jax.lax.map`` over the slices on each device, the slices split evenly over
    ``devices`` by ``jax.shard_map``. A count that does not divide evenly is padded with copies
    of the last slice (never degenerate input such as all-zero calibration data), cut off again
    in the result. ``fn`` runs on each device's share without collectives, so the split skips
    JAX's check of varying manual axes (``check_vma=False``), which would reject loops that
    start from constants (ESPIRiT's subspace iteration, the power iteration of FISTA's step).
    Jit the returned function: ``jax.jit(map_slices(f))(kspace, maps)``.

    Args:
        fn: a function of one slice of each argument (e.g. a ``recon.cg_sense`` call).
        devices: the devices to split over (keyword-only); default all local devices of the
            default backend.
        batch_size: slices vmapped together inside the map on each device (keyword-only);
            default 1 (the fastest measured on CPU).

    Returns:
        The mapped function; its outputs have a leading slice axis.
    """
    func = "mskjax.recon.map_slices"
    if not callable(fn):
        raise TypeError(f"{func}: fn must be callable, got {type(fn).__name__}")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", func)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError(f"{func}: devices must not be empty")

    def mapped(*arrays):
        if not arrays:
            raise TypeError(f"{func}: the mapped function needs at least one array")
        leaves = jax.tree_util.tree_leaves(arrays)
        counts = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
        if len(counts) != 1 or None in counts:
            raise ValueError(f"{func}: every argument needs the same leading slice axis, got "
                             f"shapes {[tuple(np.shape(leaf)) for leaf in leaves]}")
        (count,) = counts
        pad = -count % len(devices)
        if pad:
            arrays = jax.tree_util.tree_map(
                lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), arrays)

        def local(*shard):
            return jax.lax.map(lambda one: fn(*one), shard, batch_size=batch_size)

        if len(devices) == 1:
            out = local(*arrays)
        else:
            mesh = Mesh(np.array(devices), ("slices",))
            out = jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec("slices"),
                                out_specs=PartitionSpec("slices"), check_vma=False)(*arrays)
        return jax.tree_util.tree_map(lambda o: o[:count], out) if pad else out

    return mapped
