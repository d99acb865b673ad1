"""Hypothesis profiles and the one property every fuzz test asserts.

``ci`` (the default) keeps the example count small so the suite runs with the others; ``fuzz``
(``MSKJAX_FUZZ_PROFILE=fuzz``, what ``make fuzz`` sets) draws many more. The property, for any
call into the public API: it returns finite values, or a result whose ``status`` says why not,
or it raises ``ValueError``/``TypeError`` whose message starts with the public function's name.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz", max_examples=400, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("MSKJAX_FUZZ_PROFILE", "ci"))


class Raised(Exception):
    """Carries the clean ValueError/TypeError that a call raised."""


def outcome(name: str, call, *args, **kwargs):
    """Call ``call``; return its result, or ``None`` when it raised a clean error naming ``name``.

    Any other exception, or a ValueError/TypeError whose message does not start with
    ``"<name>:"``, fails the test with the message.
    """
    try:
        return call(*args, **kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        if not msg.startswith(name + ":"):
            pytest.fail(f"{name} raised {type(err).__name__} not naming the function: {msg!r}")
        return None


def finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x))))


def assert_finite(name: str, x) -> None:
    arr = np.asarray(x)
    assert np.all(np.isfinite(arr)), f"{name} returned non-finite values without a status"


def assert_status_or_finite(name: str, result, converged_codes=(0, 1)) -> None:
    """A solver result: finite estimate with an ordinary status, or a status saying why not."""
    status = int(np.asarray(result.status))
    x = result.x if hasattr(result, "x") else result.image
    if status in converged_codes:
        assert_finite(name, x)
    else:
        assert status in (2, 3), f"{name}: unknown status {status}"
