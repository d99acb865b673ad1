"""The multi-process flags of the training commands: ``--coordinator``, ``--num-processes``,
``--process-id``, ``--distributed-timeout``.

Each process of a run is started with the same command and its own ``--process-id`` (or under
a launcher that sets ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``,
torchrun's ``MASTER_ADDR``/``MASTER_PORT``/``WORLD_SIZE``/``RANK``, SLURM's ``SLURM_NTASKS``/
``SLURM_PROCID`` or Open MPI's ``OMPI_COMM_WORLD_SIZE``/``OMPI_COMM_WORLD_RANK``; flags win);
:func:`start_distributed` meets the other processes and starts ``jax.distributed`` before any
JAX work (see :mod:`mskjax.train._distributed`). Without any of them a command runs as one
process, as before.
"""

from __future__ import annotations

import argparse
import math

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mskjax.train needs flax and optax: imported when a command runs
    from ..train import ProcessSet

#: The library's function names in its messages, replaced by the command's.
_LIBRARY = ("mskjax.train.distributed_settings: ", "mskjax.train.initialize_distributed: ")


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--coordinator HOST:PORT``, ``--num-processes N``, ``--process-id I`` and
    ``--distributed-timeout SECONDS`` (default 60) to ``parser``."""
    group = parser.add_argument_group(
        "multi-process training (jax.distributed; flags win over launcher variables)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="process 0's address and a free port, the same for every process "
                            "(default JAX_COORDINATOR_ADDRESS or MASTER_ADDR:MASTER_PORT)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="how many processes take part (default JAX_NUM_PROCESSES, "
                            "WORLD_SIZE, SLURM_NTASKS or OMPI_COMM_WORLD_SIZE; else 1)")
    group.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process's id in [0, N) (default JAX_PROCESS_ID, RANK, "
                            "SLURM_PROCID or OMPI_COMM_WORLD_RANK)")
    group.add_argument("--distributed-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the other processes (default 60)")


def _message(err: BaseException, func: str) -> str:
    text = " ".join(str(err).split())
    for prefix in _LIBRARY:
        text = text.replace(prefix, "")
    return f"{func}: {text}"


def process_settings(args: argparse.Namespace, func: str) -> ProcessSet:
    """The :class:`~mskjax.train.ProcessSet` of the flags and the launcher variables, checked
    (errors name ``func``); nothing is started."""
    from ..train import distributed_settings

    try:
        return distributed_settings(coordinator=getattr(args, "coordinator", None),
                                    num_processes=getattr(args, "num_processes", None),
                                    process_id=getattr(args, "process_id", None))
    except (ValueError, TypeError) as err:
        raise type(err)(_message(err, func)) from None


def start_distributed(args: argparse.Namespace, func: str) -> ProcessSet:
    """Resolve the settings (:func:`process_settings`) and start this process's part of the
    run (:func:`~mskjax.train.initialize_distributed`; nothing for one process). Call it
    before any JAX work. Errors are one line naming ``func``: ValueError for bad or
    mismatched settings (exit status 2), TimeoutError or ConnectionError when the processes
    do not meet (exit status 1)."""
    from ..train import initialize_distributed

    settings = process_settings(args, func)
    timeout = getattr(args, "distributed_timeout", 60.0)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{func}: --distributed-timeout must be a positive number of seconds, "
                         f"got {timeout!r}")
    try:
        return initialize_distributed(settings, timeout_s=float(timeout))
    except (ValueError, TypeError, TimeoutError, ConnectionError) as err:
        raise type(err)(_message(err, func)) from None
