"""Fixtures of the knee phantom tests."""

import jax
import numpy as np
import pytest

from mskjax import sim
from tests.sim.helpers import SHAPE


@pytest.fixture(scope="session")
def healthy():
    """Three healthy subjects on the test grid (labels as numpy arrays)."""
    out = []
    for seed in range(3):
        p = sim.knee_phantom(jax.random.key(seed), shape=SHAPE)
        out.append(p.replace(labels=np.asarray(p.labels)))
    return out
