"""Linear X-ray attenuation of the phantom's tissues, for radiographs.

Values in 1/cm at an effective energy of about 60 keV: mass attenuation coefficients (Hubbell and
Seltzer, NIST X-ray attenuation tables) times typical densities, rounded: cortical bone about
0.57, marrow-filled cancellous bone about 0.28, muscle, cartilage and tendon about 0.21, water
about 0.205, fat about 0.18.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._geometry import KNEE_LABELS

_BONE, _CORTEX, _SOFT, _FAT, _FLUID = 0.28, 0.57, 0.21, 0.18, 0.205

#: Tissue name -> linear attenuation (1/cm) at about 60 keV.
ATTENUATION_PER_CM = {
    "background": 0.0, "femur": _BONE, "tibia": _BONE, "patella": _BONE,
    "femoral_cartilage": _SOFT, "tibial_cartilage": _SOFT, "patellar_cartilage": _SOFT,
    "medial_meniscus": _SOFT, "lateral_meniscus": _SOFT, "muscle": _SOFT,
    "subcutaneous_fat": _FAT, "joint_fluid": _FLUID, "cortical_bone": _CORTEX,
    "tendon_ligament": _SOFT, "periarticular_fat": _FAT, "fibula": _BONE,
}


def attenuation(fd, labels, step):
    """Attenuation (1/cm) at each point. Soft tissues come from the labels; bone and cortex
    from their signed distances with a linear ramp ``step`` mm wide (the ray step), so that thin
    cortices do not alias in a line integral."""
    soft = dict(ATTENUATION_PER_CM)
    for name in ("femur", "tibia", "patella", "fibula", "cortical_bone"):
        soft[name] = _SOFT
    mu = jnp.asarray([soft[name] for name in KNEE_LABELS], jnp.float32)[labels]

    def occupancy(d):
        return jnp.clip(0.5 - d / step, 0.0, 1.0)

    for d, cortex in ((fd["femur"], fd["femur_cortex"]), (fd["tibia"], fd["tibia_cortex"]),
                      (fd["patella"], 1.0), (fd["fibula"], 1.5)):
        bone = occupancy(d)
        mu = mu + (_BONE - _SOFT) * bone + (_CORTEX - _BONE) * (bone - occupancy(d + cortex))
    return mu
