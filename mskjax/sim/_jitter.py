"""Contrast jitter between subjects: each subject's own tissue relaxation times and proton
densities, drawn around :data:`mskjax.sim.TISSUE_PARAMETERS`.

Relaxation times and proton density vary between people (age, hydration, cartilage
composition, marrow conversion) and between scanners by some 5 to 15 %; a segmentation net
trained on one fixed contrast learns the intensities rather than the anatomy. Every tissue's
T1, T2 and proton density is multiplied by its own log-normal factor ``exp(scale * z)``, ``z``
standard normal; T1rho moves with T2 (the same factor), the fat fraction and the fat
component's relaxation (:data:`mskjax.sim.FAT_RELAXATION`) are kept. Tissues that share one
row of parameters (the four bones' marrow, the three cartilage plates, the two menisci, the two
fats) share their factors, so the jitter does not make a femur look different from a tibia.
The background keeps its zero proton density.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import jax
import numpy as np

from ._geometry import KNEE_LABELS
from ._phantom import check_key
from ._tissues import PARAMETER_NAMES, TISSUE_PARAMETERS, parameter_table

#: Parameters multiplied by each draw: the first factor scales T1, the second T2 and T1rho,
#: the third the proton density.
_JITTERED = (("t1",), ("t2", "t1rho"), ("proton_density",))


def jitter_parameters(key: jax.Array, *, scale: float = 0.1,
                      parameters: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """One subject's tissue parameters, as overrides for :func:`render` or
    :func:`tissue_maps` (``parameters=``).

    Runs on the host (the values come back as Python floats), so call it outside ``jit``.

    Args:
        key: a ``jax.random`` key.
        scale: standard deviation of the log of each factor (keyword-only); 0.1 moves a
            parameter by about +-10 % (one standard deviation), 0 returns the table unchanged.
        parameters: overrides applied before the jitter, as in :func:`tissue_maps`.

    Returns:
        ``{tissue: {parameter: value}}`` for every tissue of :data:`KNEE_LABELS` and every
        parameter (``proton_density``, ``t1``, ``t2``, ``t1rho``, ``fat_fraction``).
    """
    func = "mskjax.sim.jitter_parameters"
    check_key(key, func)
    if isinstance(scale, bool) or not (isinstance(scale, numbers.Real) and np.isfinite(scale)
                                       and scale >= 0):
        raise ValueError(f"{func}: scale must be a finite number >= 0, got {scale!r}")
    parameter_table(parameters, func=func)  # validates the overrides
    table = {name: {p: float(value) for p, value in TISSUE_PARAMETERS[name].items()}
             for name in KNEE_LABELS}
    for name, values in (parameters or {}).items():
        table[name].update({p: float(value) for p, value in dict(values).items()})
    z = np.asarray(jax.random.normal(key, (len(KNEE_LABELS), len(_JITTERED))), np.float64)
    names = list(KNEE_LABELS)
    out = {}
    for name in names:
        values = dict(table[name])
        first = next(i for i, other in enumerate(names) if table[other] == values)
        for draw, jittered in enumerate(_JITTERED):
            factor = float(np.exp(scale * z[first, draw]))
            for p in jittered:
                values[p] = values[p] * factor
        out[name] = {p: values[p] for p in PARAMETER_NAMES}
    return out
