"""Shared fixtures: the tolerance table, the real data folder, and random inputs."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

#: Relative tolerances keyed by dtype (DESIGN.md section 9).
TOL = {
    np.dtype(np.float32): 1e-5,
    np.dtype(np.complex64): 1e-5,
    np.dtype(np.float64): 1e-12,
    np.dtype(np.complex128): 1e-12,
}


def tol(dtype) -> float:
    return TOL[np.dtype(dtype)]


def data_dir() -> Path | None:
    """The real-data folder: $MSKJAX_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("MSKJAX_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the real data folder is missing: set MSKJAX_DATA or put "
                        "shared/data beside the checkout")
        pytest.skip("real data not found: set MSKJAX_DATA or put shared/data beside the checkout")
    return path


def random_complex(rng: np.random.Generator, shape, dtype=np.complex64) -> np.ndarray:
    real_dtype = np.float32 if np.dtype(dtype) == np.complex64 else np.float64
    return (rng.standard_normal(shape, dtype=real_dtype)
            + 1j * rng.standard_normal(shape, dtype=real_dtype)).astype(dtype)


def fft_ranks(fn, *args) -> list[int]:
    """The number of transformed axes of every FFT in the jaxpr of ``fn(*args)``, in order."""
    import jax.extend

    ranks = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "fft":
                ranks.append(len(eqn.params["fft_lengths"]))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return ranks


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_configure(config):
    jax.config.update("jax_platforms", "cpu")
