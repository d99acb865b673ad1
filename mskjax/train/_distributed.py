"""Multi-process data parallelism on ``jax.distributed``: settings, start-up, shares, batches.

A run of ``N`` processes (one or more devices each; on CPU the collectives are gloo) is

1. :func:`distributed_settings`: who is the coordinator (``HOST:PORT``), how many processes,
   which one this is: explicit values first, then the variables launchers set
   (``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``; torchrun's
   ``MASTER_ADDR``+``MASTER_PORT``/``WORLD_SIZE``/``RANK``; SLURM's ``SLURM_NTASKS``/
   ``SLURM_PROCID`` and Open MPI's ``OMPI_COMM_WORLD_SIZE``/``OMPI_COMM_WORLD_RANK``, which
   need the coordinator from a flag, ``MASTER_ADDR``/``MASTER_PORT`` or
   ``JAX_COORDINATOR_ADDRESS``). Nothing set at all means one process.
2. :func:`initialize_distributed`: a rendezvous over plain TCP on the coordinator's port
   (process 0 listens, the others connect and say who they are; mismatched process counts,
   repeated ids, an unreachable coordinator or missing processes raise a clear error on every
   process within the timeout), then ``jax.distributed.initialize``. The rendezvous comes first
   because JAX aborts the process (an uncatchable C++ check) when its coordinator is not
   reachable.
3. :func:`process_shard`: this process's share of a list (of files, of subjects),
   ``items[process_id::num_processes]``.
4. :func:`global_batch`: the global batch, split along the mesh's ``"batch"`` axis, from each
   process's local rows (process ``p`` holds the ``p``-th block of rows). The train state is
   replicated (identical on all processes: every process builds it from the same seed, or
   restores the same checkpoint), and :func:`~mskjax.train.data_parallel` runs the step on
   the global mesh; the gradient is the mean over the global batch, so ``N`` processes
   with ``B / N`` rows each compute the step of one process with ``B`` rows.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._sharding import AXIS, _check_mesh, shard_batch


class ProcessSet(NamedTuple):
    """Who takes part in a run: the coordinator ``"HOST:PORT"`` (``None`` for one process),
    the number of processes and this process's id in ``[0, num_processes)``."""

    coordinator: str | None
    num_processes: int
    process_id: int


_MAGIC = "mskjax-rendezvous 1"


def parse_coordinator(value, func: str) -> tuple[str, int]:
    """``(host, port)`` of ``"HOST:PORT"`` (``"[v6-address]:PORT"`` for IPv6)."""
    if not isinstance(value, str):
        raise TypeError(f"{func}: coordinator must be a string HOST:PORT, got "
                        f"{type(value).__name__}")
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{func}: coordinator must be HOST:PORT with a port in 1..65535 "
                         f"(e.g. 10.0.0.1:12345), got {value!r}")
    return host, int(port)


def _int_setting(value, label: str, func: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{func}: {label} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}: {label} must be an integer, got {type(value).__name__}")
    return int(value)


def distributed_settings(*, coordinator: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None,
                         environ: Mapping[str, str] | None = None) -> ProcessSet:
    """The :class:`ProcessSet` of this process from explicit values and launcher variables.

    Each field is taken from its explicit value if given, else from the first of these that
    is set in ``environ`` (default ``os.environ``):

    - coordinator: ``JAX_COORDINATOR_ADDRESS``, then ``MASTER_ADDR`` + ``MASTER_PORT``;
    - num_processes: ``JAX_NUM_PROCESSES``, ``WORLD_SIZE``, ``SLURM_NTASKS``,
      ``OMPI_COMM_WORLD_SIZE``;
    - process_id: ``JAX_PROCESS_ID``, ``RANK``, ``SLURM_PROCID``, ``OMPI_COMM_WORLD_RANK``.

    Nothing set means one process, ``ProcessSet(None, 1, 0)``.

    Raises:
        ValueError: ``num_processes < 1``; ``process_id`` outside ``[0, num_processes)``; a
            coordinator that is not ``HOST:PORT``; more than one process without a
            coordinator; a coordinator or process id without a process count.
    """
    func = "mskjax.train.distributed_settings"
    if environ is None:
        environ = os.environ
    if not isinstance(environ, Mapping):
        raise TypeError(f"{func}: environ must be a mapping of str to str, got "
                        f"{type(environ).__name__}")

    def first(*names):
        for name in names:
            value = environ.get(name)
            if value is not None and str(value).strip() != "":
                return str(value).strip(), name
        return None, None

    source = {}
    if coordinator is None:
        coordinator, source["coordinator"] = first("JAX_COORDINATOR_ADDRESS")
        if coordinator is None:
            addr, _ = first("MASTER_ADDR")
            port, _ = first("MASTER_PORT")
            if addr is not None and port is not None:
                coordinator, source["coordinator"] = f"{addr}:{port}", "MASTER_ADDR/MASTER_PORT"
            elif addr is not None or port is not None:
                raise ValueError(f"{func}: MASTER_ADDR and MASTER_PORT must be set together, "
                                 f"got MASTER_ADDR={addr!r}, MASTER_PORT={port!r}")
    if num_processes is None:
        num_processes, source["num_processes"] = first(
            "JAX_NUM_PROCESSES", "WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    if process_id is None:
        process_id, source["process_id"] = first(
            "JAX_PROCESS_ID", "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")

    def label(name):
        where = source.get(name)
        return f"{name} (from {where})" if where else name

    if num_processes is None:
        if coordinator is not None or process_id is not None:
            given = label("coordinator") if coordinator is not None else label("process_id")
            raise ValueError(f"{func}: {given} is set but not the number of processes; set "
                             "num_processes (--num-processes, JAX_NUM_PROCESSES or WORLD_SIZE)")
        return ProcessSet(None, 1, 0)
    num_processes = _int_setting(num_processes, label("num_processes"), func)
    if num_processes < 1:
        raise ValueError(f"{func}: {label('num_processes')} must be >= 1, got {num_processes}")
    if process_id is None:
        if num_processes > 1:
            raise ValueError(f"{func}: {label('num_processes')} is {num_processes} but the "
                             "process id is not set (--process-id, JAX_PROCESS_ID or RANK)")
        process_id = 0
    process_id = _int_setting(process_id, label("process_id"), func)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"{func}: {label('process_id')} must be in [0, {num_processes}) for "
                         f"{num_processes} processes, got {process_id}")
    if coordinator is not None:
        parse_coordinator(coordinator, func)
        coordinator = coordinator.strip()
    elif num_processes > 1:
        raise ValueError(f"{func}: {num_processes} processes need a coordinator HOST:PORT "
                         "(--coordinator, JAX_COORDINATOR_ADDRESS, or MASTER_ADDR and "
                         "MASTER_PORT)")
    return ProcessSet(coordinator, num_processes, process_id)


# --------------------------------------------------------------------------- rendezvous

def _send(conn: socket.socket, message: dict):
    conn.sendall((json.dumps(message) + "\n").encode())


def _receive(conn: socket.socket, deadline: float, what: str) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        conn.settimeout(left)
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            raise TimeoutError(what) from None
        if not chunk:
            raise ConnectionError(f"{what}: the connection was closed")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError(f"{what}: not a mskjax rendezvous (too much data)")
    try:
        message = json.loads(data)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("magic") != _MAGIC:
        raise ConnectionError(f"{what}: the peer is not a mskjax rendezvous")
    return message


def _serve(settings: ProcessSet, host: str, port: int, timeout_s: float, func: str):
    """Process 0: wait for the others, check them, answer everyone."""
    n = settings.num_processes
    where = f"coordinator {settings.coordinator}"
    try:
        if socket.has_dualstack_ipv6():  # IPv4 and IPv6 clients ("[::1]:PORT")
            server = socket.create_server(("", port), family=socket.AF_INET6,
                                          dualstack_ipv6=True)
        else:
            server = socket.create_server(("", port))
    except OSError as err:
        raise ConnectionError(f"{func}: process 0 cannot listen on the {where}: "
                              f"{err.strerror or err}") from None
    clients: dict[int, socket.socket] = {}
    others: list[socket.socket] = []
    deadline = time.monotonic() + timeout_s
    error = None
    try:
        while len(clients) < n - 1 and error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, n)) - set(clients))
                error = TimeoutError(
                    f"{func}: process 0 waited {timeout_s:g} s on the {where} for "
                    f"{n} processes; processes {missing} never arrived")
                break
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            try:
                hello = _receive(conn, min(deadline, time.monotonic() + 10.0), "hello")
                pid, count = int(hello["process_id"]), int(hello["num_processes"])
            except (OSError, ValueError, KeyError, TypeError):
                conn.close()  # not one of ours (or it gave up): ignore it
                continue
            if count != n:
                others.append(conn)
                error = ValueError(
                    f"{func}: process {pid} was started with num_processes={count}, process "
                    f"0 with {n} (coordinator {settings.coordinator}); start all processes "
                    "with the same count")
            elif pid in clients or pid == 0 or not 0 <= pid < n:
                others.append(conn)
                error = ValueError(
                    f"{func}: two processes were started with process_id={pid} (coordinator "
                    f"{settings.coordinator}); give each process its own id in [0, {n})")
            else:
                clients[pid] = conn
        reply = ({"magic": _MAGIC, "ok": True} if error is None else
                 {"magic": _MAGIC, "ok": False, "error": str(error).split(": ", 1)[-1]})
        conns = [*clients.values(), *others]
        for conn in conns:
            try:
                _send(conn, reply)
            except OSError:
                pass
        # The clients close first, so that none of the port's connections waits in TIME_WAIT
        # on this side and jax.distributed's coordinator can bind the port at once.
        close_by = time.monotonic() + 5.0
        for conn in conns:
            try:
                conn.settimeout(max(0.01, close_by - time.monotonic()))
                conn.recv(1)
            except OSError:
                pass
    finally:
        for conn in [*clients.values(), *others]:
            conn.close()
        server.close()
    if error is not None:
        raise error


def _join(settings: ProcessSet, host: str, port: int, timeout_s: float, func: str):
    """Process > 0: connect to process 0 (retrying), say who this is, read the answer."""
    where = f"coordinator {settings.coordinator}"
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{func}: process {settings.process_id} could not reach the "
                               f"{where} within {timeout_s:g} s ({last or 'no answer'}); is "
                               "process 0 running, and is HOST:PORT right?")
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 5.0))
        except OSError as err:
            last = err.strerror or str(err)
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            continue
        try:
            _send(conn, {"magic": _MAGIC, "process_id": settings.process_id,
                         "num_processes": settings.num_processes})
            # Process 0 answers at the latest when its own wait ends.
            reply = _receive(conn, time.monotonic() + timeout_s + 10.0, "reply")
        except TimeoutError:
            conn.close()
            raise TimeoutError(f"{func}: process {settings.process_id} reached the {where} "
                               f"but got no answer within {timeout_s + 10:g} s") from None
        except (ConnectionError, OSError) as err:
            conn.close()
            last = str(err)
            if isinstance(err, ConnectionError) and "not a mskjax" in str(err):
                raise ConnectionError(f"{func}: the {where} is another service, not process "
                                      "0 of this run") from None
            time.sleep(0.2)
            continue
        conn.close()
        if not reply.get("ok"):
            raise ValueError(f"{func}: {reply.get('error', 'refused by process 0')}")
        return


_ACTIVE: ProcessSet | None = None


def initialize_distributed(settings: ProcessSet, *, timeout_s: float = 60.0) -> ProcessSet:
    """Start this process's part of a multi-process run (a no-op for one process).

    Every process calls it with its own :class:`ProcessSet` before any other JAX work. It
    first meets the other processes over plain TCP on the coordinator's port: process 0
    listens, the others connect (retrying until ``timeout_s``) and send their id and process
    count; process 0 checks that all agree on the count and that no id is repeated and
    answers every process. Then it sets the CPU collectives to gloo (unless another
    implementation was chosen) and calls ``jax.distributed.initialize``, after which
    ``jax.devices()`` lists the devices of all processes. Calling it again with the same
    settings does nothing.

    Args:
        settings: from :func:`distributed_settings`.
        timeout_s: how long to wait for the other processes, in seconds (keyword-only).

    Returns:
        ``settings``.

    Raises:
        ValueError: the processes disagree on the process count, or two have the same id
            (raised on every process that took part); another call already started this
            process with other settings; JAX computations ran before this call.
        TimeoutError: the coordinator could not be reached, or not all processes arrived,
            within ``timeout_s``.
        ConnectionError: process 0 could not listen on the coordinator's port.
    """
    global _ACTIVE
    func = "mskjax.train.initialize_distributed"
    if not isinstance(settings, ProcessSet):
        raise TypeError(f"{func}: settings must be a ProcessSet (from distributed_settings), "
                        f"got {type(settings).__name__}")
    if (isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real)
            or not (math.isfinite(timeout_s) and timeout_s > 0)):
        raise ValueError(f"{func}: timeout_s must be a positive number of seconds, got "
                         f"{timeout_s!r}")
    if _ACTIVE is not None:
        if _ACTIVE == settings:
            return settings
        raise ValueError(f"{func}: this process already takes part in the run {_ACTIVE}; it "
                         f"cannot join another ({settings})")
    if settings.num_processes == 1:
        return settings
    if settings.coordinator is None or not 0 <= settings.process_id < settings.num_processes:
        raise ValueError(f"{func}: settings {settings} are not valid; build them with "
                         "distributed_settings")
    host, port = parse_coordinator(settings.coordinator, func)
    if jax.distributed.is_initialized():
        raise ValueError(f"{func}: jax.distributed was already initialised outside "
                         "mskjax.train.initialize_distributed")
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        raise ValueError(f"{func}: JAX computations already ran in this process; call it "
                         "before any other JAX work (first thing after the imports)")
    if settings.process_id == 0:
        _serve(settings, host, port, float(timeout_s), func)
    else:
        _join(settings, host, port, float(timeout_s), func)
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(settings.coordinator, settings.num_processes,
                               settings.process_id,
                               initialization_timeout=max(1, math.ceil(timeout_s)))
    _ACTIVE = settings
    return settings


# --------------------------------------------------------------------------- data

def process_shard(items, *, settings: ProcessSet | None = None):
    """This process's share of ``items``: ``items[process_id::num_processes]``.

    Args:
        items: a sequence (list, tuple, array) that every process holds in the same order,
            for instance the sorted list of training files.
        settings: the run's :class:`ProcessSet` (keyword-only); default this process's
            ``jax.process_index()`` of ``jax.process_count()``.

    Returns:
        The same type as ``items`` (a slice); empty when there are fewer items than processes.
    """
    func = "mskjax.train.process_shard"
    if isinstance(items, (str, bytes)) or not hasattr(items, "__getitem__") or not hasattr(
            items, "__len__"):
        raise TypeError(f"{func}: items must be a sequence (list, tuple, array), got "
                        f"{type(items).__name__}")
    if settings is None:
        pid, n = jax.process_index(), jax.process_count()
    elif isinstance(settings, ProcessSet):
        pid, n = settings.process_id, settings.num_processes
    else:
        raise TypeError(f"{func}: settings must be a ProcessSet or None, got "
                        f"{type(settings).__name__}")
    return items[pid::n]


def global_batch(local_batch: Any, mesh: Mesh | None = None) -> Any:
    """The global batch, split over ``mesh``'s ``"batch"`` axis, from each process's rows.

    Every process calls it with its own rows (a pytree of arrays with the same structure,
    shapes and dtypes on every process); the global arrays have ``process_count`` times as
    many rows, process ``p``'s rows being the ``p``-th block. On one process this is
    :func:`~mskjax.train.shard_batch`.

    Args:
        local_batch: pytree of arrays ``(local_rows, ...)``; ``local_rows`` must be divisible
            by this process's number of devices on the ``"batch"`` axis.
        mesh: a mesh with a ``"batch"`` axis over the devices of all processes; default
            :func:`~mskjax.train.batch_mesh` (all devices).

    Returns:
        The same pytree of global ``jax.Array`` s, ``(local_rows * process_count, ...)``.
    """
    func = "mskjax.train.global_batch"
    mesh = _check_mesh(mesh, func)
    if jax.process_count() == 1:
        return shard_batch(local_batch, mesh)
    leaves = jax.tree_util.tree_leaves(local_batch)
    if not leaves:
        raise ValueError(f"{func}: the batch has no arrays")
    local_devices = {d for d in mesh.devices.flat if d.process_index == jax.process_index()}
    per_process = max(1, len(local_devices))
    shapes = [tuple(np.shape(x)) for x in leaves]
    rows = {s[0] if s else None for s in shapes}
    if None in rows or len(rows) != 1 or next(iter(rows)) % per_process:
        raise ValueError(f"{func}: every array of the local batch needs the same leading "
                         f"batch axis, divisible by this process's {per_process} devices of "
                         f"the mesh, got shapes {shapes}")
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
        local_batch)
