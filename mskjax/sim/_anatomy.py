"""The per-subject anatomy of the knee phantom: the parameters drawn from a key.

Lengths are in mm, angles in degrees. Two-element fields are ``(medial, lateral)``; three-element
fields follow the phantom's axes ``(left-right, superior-inferior, anterior-posterior)``. Every
field is a float32 (or int32) JAX array, so a batch of anatomies comes out of ``jax.vmap``.

Sizes are scaled adult dimensions: bicondylar width about 75 to 85 mm, tibial plateau about 75 by
50 mm, patella about 42 mm across and 22 mm thick, articular cartilage about 2 mm (femoral,
tibial) and 2.4 to 3.2 mm (patellar), menisci 5 to 6.5 mm high at the rim.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Kellgren-Lawrence-like grades 0..4 -> (medial narrowing, lateral narrowing, osteophyte size
#: in mm, subchondral sclerosis in mm). Narrowing is the fraction of cartilage thickness (and of
#: the femorotibial gap) lost; osteophytes are spurs at the medial and lateral joint margins.
KL_GRADE_TABLE = (
    (0.00, 0.00, 0.0, 0.0),
    (0.10, 0.00, 1.5, 0.0),
    (0.30, 0.05, 3.0, 0.5),
    (0.55, 0.10, 4.5, 1.5),
    (0.90, 0.25, 6.5, 3.0),
)

#: Fluid film between femoral and tibial cartilage (mm) in a healthy joint.
JOINT_GAP_MM = 0.3


@dataclasses.dataclass(frozen=True)
class KneeAnatomy:
    """The anatomy of one simulated knee (all fields are JAX arrays; lengths in mm).

    Fields:
        size_scale: ``()`` overall size factor (1 is an average adult).
        condyle_separation: ``()`` distance between the medial and lateral condyle centres (LR).
        condyle_semi_axes: ``(2, 3)`` per condyle (medial, lateral): half-width (LR), and the
            superior-inferior and anterior-posterior semi-axes of its sagittal outline.
        tibial_plateau_semi_axes: ``(2,)`` (LR, AP) semi-axes of the plateau outline.
        patella_semi_axes: ``(3,)`` (LR, SI, AP) semi-axes of the patella.
        patella_height: ``()`` height of the patella centre above the joint line.
        femoral_cartilage_thickness: ``(2,)`` (medial, lateral), after any narrowing.
        tibial_cartilage_thickness: ``(2,)`` (medial, lateral), after any narrowing.
        patellar_cartilage_thickness: ``()``.
        meniscus_height: ``(2,)`` height at the outer rim (medial, lateral).
        meniscus_width: ``(2,)`` radial width (medial, lateral).
        subcutaneous_fat_thickness: ``()``.
        cortical_thickness: ``()`` cortex of the femoral and tibial shafts.
        limb_semi_axes: ``(2,)`` (LR, AP) semi-axes of the limb's outline at the joint line.
        rotation: ``(3,)`` degrees about the (LR, SI, AP) axes: flexion, internal/external
            rotation, varus/valgus.
        translation: ``(3,)`` position of the joint centre in scanner coordinates.
        kl_grade: ``()`` int32 Kellgren-Lawrence-like grade 0..4.
        joint_space_narrowing: ``(2,)`` fraction of the joint space lost (medial, lateral).
        osteophyte_size: ``()`` size of the marginal osteophytes (medial; lateral is 0.7 times).
        subchondral_sclerosis: ``()`` extra thickness of the subchondral bone plate.
        condyle_centres: ``(2, 3)`` centres of the medial and lateral femoral condyles in
            scanner coordinates (filled in by :func:`knee_phantom`).
        patella_centre: ``(3,)`` centre of the patella in scanner coordinates (likewise).
    """

    size_scale: Any
    condyle_separation: Any
    condyle_semi_axes: Any
    tibial_plateau_semi_axes: Any
    patella_semi_axes: Any
    patella_height: Any
    femoral_cartilage_thickness: Any
    tibial_cartilage_thickness: Any
    patellar_cartilage_thickness: Any
    meniscus_height: Any
    meniscus_width: Any
    subcutaneous_fat_thickness: Any
    cortical_thickness: Any
    limb_semi_axes: Any
    rotation: Any
    translation: Any
    kl_grade: Any
    joint_space_narrowing: Any
    osteophyte_size: Any
    subchondral_sclerosis: Any
    condyle_centres: Any
    patella_centre: Any

    @property
    def joint_space_width(self):
        """``(2,)`` femorotibial joint space width in mm (medial, lateral): the two cartilage
        layers plus the fluid film, as a radiograph would show it."""
        gap = JOINT_GAP_MM * (1.0 - self.joint_space_narrowing)
        return self.femoral_cartilage_thickness + self.tibial_cartilage_thickness + gap

    def replace(self, **changes) -> KneeAnatomy:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)


_FIELDS = [f.name for f in dataclasses.fields(KneeAnatomy)]
jax.tree_util.register_dataclass(KneeAnatomy, data_fields=_FIELDS, meta_fields=[])


class _Uniforms:
    """Consecutive slices of one vector of uniform draws (one random call compiles fast)."""

    def __init__(self, key, n):
        self.values, self.used = jax.random.uniform(key, (n,), jnp.float32), 0

    def __call__(self, low, high, shape=()):
        size = int(np.prod(shape))
        u = self.values[self.used:self.used + size].reshape(shape)
        self.used += size
        return low + (high - low) * u


def grade_features(severity):
    """The osteoarthritic features at continuous grades: ``severity`` float ``(3,)`` holds the
    grades (0..4) at which the narrowing, the osteophytes and the sclerosis are read from
    :data:`KL_GRADE_TABLE`, interpolated linearly between its rows. Returns float32 ``(4,)``
    (medial narrowing, lateral narrowing, osteophyte size, sclerosis), like a row of the table."""
    table = jnp.asarray(KL_GRADE_TABLE, jnp.float32)
    grades = jnp.arange(5, dtype=jnp.float32)
    severity = jnp.asarray(severity, jnp.float32)
    column = (0, 0, 1, 2)  # which severity each column of the table follows
    return jnp.stack([jnp.interp(severity[c], grades, table[:, i]) for i, c in enumerate(column)])


def draw_anatomy(key, kl_grade, severity=None) -> KneeAnatomy:
    """Draw one knee's anatomy from ``key``; ``kl_grade`` (int or int32 array) sets the
    osteoarthritic changes without changing anything else that is drawn. ``severity`` (float
    ``(3,)``, optional) reads the narrowing, osteophytes and sclerosis at those continuous
    grades instead (see :func:`grade_features`); ``kl_grade`` stays the subject's grade."""
    u = _Uniforms(key, 40)
    s = u(0.88, 1.12)
    condyle_separation = 40.0 * s * u(0.94, 1.06)
    base = jnp.array([[13.0, 21.5, 30.0], [12.5, 20.5, 28.0]], jnp.float32)
    condyle_semi_axes = base * s * u(0.93, 1.07, (2, 3))
    plateau = jnp.array([38.0, 25.0], jnp.float32) * s * u(0.95, 1.05, (2,))
    patella = jnp.array([21.0, 21.0, 11.0], jnp.float32) * s * u(0.92, 1.08, (3,))
    patella_height = 30.0 * s + u(-5.0, 5.0)
    femoral = u(1.7, 2.5) * u(0.92, 1.08, (2,))
    tibial = u(1.6, 2.4) * jnp.array([1.0, 1.1]) * u(0.92, 1.08, (2,))
    patellar = u(2.4, 3.2)
    meniscus_height = s * u(5.0, 6.5, (2,))
    meniscus_width = s * u(9.0, 11.5, (2,))
    fat = u(4.0, 15.0)
    cortex = s * u(3.0, 5.0)
    limb = jnp.stack([43.0 * s + fat + u(2.0, 8.0), 45.0 * s + fat + u(0.0, 8.0)])
    rotation = u(-1.0, 1.0, (3,)) * jnp.array([6.0, 10.0, 4.0], jnp.float32)
    translation = u(-5.0, 5.0, (3,))
    jitter = u(0.85, 1.15)
    table = jnp.asarray(KL_GRADE_TABLE, jnp.float32)
    grade = jnp.clip(jnp.asarray(kl_grade, jnp.int32), 0, 4)
    row = table[grade] if severity is None else grade_features(severity)
    narrowing = jnp.clip(row[:2] * jitter, 0.0, 0.95)
    return KneeAnatomy(
        size_scale=s,
        condyle_separation=condyle_separation,
        condyle_semi_axes=condyle_semi_axes,
        tibial_plateau_semi_axes=plateau,
        patella_semi_axes=patella,
        patella_height=patella_height,
        femoral_cartilage_thickness=femoral * (1.0 - narrowing),
        tibial_cartilage_thickness=tibial * (1.0 - narrowing),
        patellar_cartilage_thickness=patellar,
        meniscus_height=meniscus_height,
        meniscus_width=meniscus_width,
        subcutaneous_fat_thickness=fat,
        cortical_thickness=cortex,
        limb_semi_axes=limb,
        rotation=rotation,
        translation=translation,
        kl_grade=grade,
        joint_space_narrowing=narrowing,
        osteophyte_size=row[2] * jitter,
        subchondral_sclerosis=row[3] * jitter,
        condyle_centres=jnp.zeros((2, 3), jnp.float32),
        patella_centre=jnp.zeros((3,), jnp.float32),
    )
