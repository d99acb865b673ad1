"""Run several Python processes at once for the multi-process tests (never past a timeout)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_together(commands: list[list[str]], *, timeout: float,
                 merge_stderr: bool = False) -> list[tuple[int, str, str]]:
    """``python <args>`` for each argument list at once, 1 CPU device each, from the
    repository's root; ``[(returncode, stdout, stderr)]`` (stderr ``""`` with
    ``merge_stderr``). A process still running at ``timeout`` fails the test, and every
    process is killed."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
    procs = [subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=stderr, text=True)
             for args in commands]
    deadline = time.monotonic() + timeout
    out = []
    try:
        for proc in procs:
            try:
                stdout, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, err = proc.communicate()
                pytest.fail(f"a process hung past {timeout} s:\n{stdout}\n{err or ''}")
            out.append((proc.returncode, stdout, err or ""))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out
