"""CT numbers of the simulated knee: linear attenuation and Hounsfield units, voxel by voxel.

One attenuation map serves both CT uses of the phantom: the target of MR-to-pseudo-CT synthesis
and the object of simulated (low-dose) CT. Each label gets the linear attenuation of
:data:`mskjax.sim.ATTENUATION_PER_CM` (1/cm at an effective energy of about 60 keV, the values
the radiographs use): the bone labels ``femur``, ``tibia``, ``patella`` and ``fibula`` are
marrow-filled cancellous bone and ``cortical_bone`` is the cortex. Hounsfield units are

    HU = 1000 * (mu - mu_water) / (mu_water - mu_air),   mu_air = 0,

with ``mu_water`` = :data:`WATER_ATTENUATION_PER_CM` (0.205/cm, the table's joint fluid), so
air (the background) is -1000 HU, fat about -122 HU, cartilage, muscle, menisci and tendons
about +24 HU, joint fluid 0 HU, cancellous bone about +366 HU and cortical bone about +1780 HU.
The map comes from the labels only: pathologies (oedema, lesions) do not change it.

For evaluation the labels fall into four CT classes, :data:`CT_TISSUE_CLASSES`: air, fat, soft
tissue (cartilage, menisci, muscle, tendons and ligaments, joint fluid) and bone (cancellous and
cortical). Arrays are float32 ``(*spatial)``; class maps int32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array
from ._geometry import KNEE_LABELS
from ._tissues import _labels_of
from ._xray import ATTENUATION_PER_CM

#: Linear attenuation of water (1/cm) at the table's energy: 0 HU.
WATER_ATTENUATION_PER_CM = ATTENUATION_PER_CM["joint_fluid"]
#: The CT classes of :func:`ct_tissue_classes`, by index.
CT_TISSUE_CLASSES = ("air", "fat", "soft_tissue", "bone")

_CLASS_OF_LABEL = {
    "background": "air", "subcutaneous_fat": "fat", "periarticular_fat": "fat",
    "femur": "bone", "tibia": "bone", "patella": "bone", "fibula": "bone",
    "cortical_bone": "bone",
}


def _label_table(values: dict[str, Any], dtype) -> jax.Array:
    table = [None] * len(KNEE_LABELS)
    for name, index in KNEE_LABELS.items():
        table[index] = values[name]
    return jnp.asarray(table, dtype)


def attenuation_map(phantom_or_labels: Any) -> jax.Array:
    """Linear attenuation (1/cm) of each voxel of a simulated knee (module docstring).

    Args:
        phantom_or_labels: a :class:`mskjax.sim.KneePhantom`, or an integer label array
            ``(*spatial)`` with values of :data:`mskjax.sim.KNEE_LABELS`.

    Returns:
        float32 ``(*spatial)``: 0 in air, 0.18 in fat, 0.205 in fluid, 0.21 in soft tissue,
        0.28 in cancellous and 0.57 in cortical bone.
    """
    labels, _ = _labels_of(phantom_or_labels, "mskjax.sim.attenuation_map")
    return _label_table(ATTENUATION_PER_CM, jnp.float32)[labels]


def hounsfield_units(attenuation: ArrayLike, *,
                     water: float = WATER_ATTENUATION_PER_CM) -> jax.Array:
    """Hounsfield units ``1000 * (mu - water) / water`` of a linear attenuation map.

    Args:
        attenuation: linear attenuation (1/cm), any shape, real.
        water: the attenuation of water at the same energy (keyword-only), positive.

    Returns:
        HU, float32 for float32 input (air -1000, water 0).
    """
    func = "mskjax.sim.hounsfield_units"
    mu = _real(attenuation, "attenuation", func)
    water = _positive(water, "water", func, mu.dtype)
    return 1000.0 * ((mu - water) / water)


def attenuation_from_hounsfield(hu: ArrayLike, *,
                                water: float = WATER_ATTENUATION_PER_CM) -> jax.Array:
    """The inverse of :func:`hounsfield_units`: ``water * (1 + hu / 1000)`` in 1/cm."""
    func = "mskjax.sim.attenuation_from_hounsfield"
    hu = _real(hu, "hu", func)
    water = _positive(water, "water", func, hu.dtype)
    return water * (1.0 + hu / 1000.0)


def ct_tissue_classes(phantom_or_labels: Any) -> jax.Array:
    """The CT class of each voxel, an index into :data:`CT_TISSUE_CLASSES` (0 air, 1 fat,
    2 soft tissue, 3 bone).

    Args:
        phantom_or_labels: a :class:`mskjax.sim.KneePhantom` or an integer label array.

    Returns:
        int32 ``(*spatial)``.
    """
    labels, _ = _labels_of(phantom_or_labels, "mskjax.sim.ct_tissue_classes")
    classes = {name: CT_TISSUE_CLASSES.index(_CLASS_OF_LABEL.get(name, "soft_tissue"))
               for name in KNEE_LABELS}
    return _label_table(classes, jnp.int32)[labels]


def _real(x, name, func):
    x = as_array(x, name, func)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)) or (
            jnp.issubdtype(x.dtype, jnp.bool_)):
        raise TypeError(f"{func}: {name} must be real, got {x.dtype}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _positive(value, name, func, dtype):
    # kept within the square roots of the dtype's smallest normal and largest numbers, so that
    # neither ``1 / water`` nor a ratio of ordinary attenuations to it overflows or flushes to 0
    info = jnp.finfo(dtype)
    low, high = float(np.sqrt(info.tiny)), float(np.sqrt(info.max))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise ValueError(f"{func}: {name} must be a positive finite number in [{low:.3g}, "
                         f"{high:.3g}] for {dtype} data, got {value!r}")
    return float(value)
