"""MR tissue parameters of the knee at 3 T, and parameter maps of a phantom.

Each voxel is a mixture of a water component (with the tissue's T1, T2 and T1rho) and a fat
component (fat fraction ``fat_fraction`` of the protons, with :data:`FAT_RELAXATION`). Times are
in ms; proton density is relative to joint fluid (1.0).

Values at 3 T, rounded as published or as ranges allow (approximate; do not read more precision
into them than the sources give):

===================  =====  ======  ======  ======  =====  ==========================
tissue               PD     T1      T2      T1rho   FF     source
===================  =====  ======  ======  ======  =====  ==========================
cartilage (3 plates) 0.75   ~1240   ~37     ~40     0      [G], [S] T1; [L] T1rho
meniscus             0.65   ~1000*  ~12     ~16     0      [R] T2, T1rho; T1 assumed
muscle               0.75   ~1420   ~32     ~38*    0.03   [G], [S]
joint fluid          1.0    ~3600   ~770    ~920*   0      [G]
bone marrow (water)  0.9    ~1100*  ~40*    ~48*    0.8    fat fraction [K]
subcutaneous fat     0.95   ~1100*  ~40*    ~48*    0.9    fat component [G]
periarticular fat    0.95   ~1100*  ~40*    ~48*    0.9    as subcutaneous fat
cortical bone        0.15   ~250    ~0.5    ~0.6*   0      [D] (T2* with UTE)
tendon / ligament    0.5    ~900*   ~2      ~2.4*   0      short T2 [D]; T1 assumed
fat component        --     ~370    ~130    --      --     [G] marrow and fat
===================  =====  ======  ======  ======  =====  ==========================

``*``: no direct 3 T value in these sources; a rounded assumption (T1rho set to 1.2 x T2 where no
value is cited). Proton densities are rounded water (and fat) contents, not measurements.
Fibula, femur, tibia and patella share the bone-marrow row.

Sources:
    [G] Gold GE et al. Musculoskeletal MRI at 3.0 T: relaxation times and image contrast.
        AJR 2004;183:343-351 (knee: cartilage, synovial fluid, muscle, marrow, fat at 3 T).
    [S] Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T.
        Magn Reson Med 2005;54:507-512 (cartilage, skeletal muscle).
    [L] Li X et al. In vivo T1rho and T2 mapping of articular cartilage in osteoarthritis of
        the knee using 3 T MRI. Osteoarthritis Cartilage 2007;15:789-797; Regatte RR et al.,
        T1rho of human knee cartilage (about 40 ms in healthy cartilage at 3 T).
    [R] Rauscher I et al. Meniscal measurements of T1rho and T2 at MR imaging in healthy
        subjects and patients with osteoarthritis. Radiology 2008;249:591-600 (short T2 and
        T1rho, of the order of 10 to 20 ms).
    [D] Du J et al. Qualitative and quantitative ultrashort echo time (UTE) imaging of
        cortical bone. J Magn Reson 2010;207:304-311 (cortical bone T1 about 200-250 ms,
        T2* below 1 ms); tendons and ligaments likewise have T2 of a few ms.
    [K] Adult epiphyseal marrow is mostly yellow (fatty) marrow; fat fractions of 0.6 to 0.9
        are reported with chemical-shift-encoded MRI.

Pathology changes (model choices, not measurements): bone-marrow oedema scales the fat
fraction by :data:`OEDEMA_CHANGE` (more water, longer water T2); the rim of a cartilage lesion
has raised T2, T1rho and proton density (:data:`LESION_RIM_CHANGE`). A pathology drawn with a
conspicuity ``c`` (``knee_phantom(..., conspicuity=...)``) has these changes raised to the power
``c ** 2``, and its fluid (a lesion's defect, a tear's cleft) mixed with the host tissue.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import _sdf as sdf
from ._geometry import KNEE_LABELS
from ._pathology import contrast_scale

if TYPE_CHECKING:
    from ._phantom import KneePhantom

#: The fat component's relaxation times at 3 T (ms).
FAT_RELAXATION = {"t1": 370.0, "t2": 130.0}

_CARTILAGE = dict(proton_density=0.75, t1=1240.0, t2=37.0, t1rho=40.0, fat_fraction=0.0)
_MENISCUS = dict(proton_density=0.65, t1=1000.0, t2=12.0, t1rho=16.0, fat_fraction=0.0)
_MARROW = dict(proton_density=0.9, t1=1100.0, t2=40.0, t1rho=48.0, fat_fraction=0.8)
_FAT = dict(proton_density=0.95, t1=1100.0, t2=40.0, t1rho=48.0, fat_fraction=0.9)

#: Tissue name -> proton_density, t1, t2, t1rho (ms, water component), fat_fraction.
TISSUE_PARAMETERS = {
    "background": dict(proton_density=0.0, t1=1000.0, t2=10.0, t1rho=10.0, fat_fraction=0.0),
    "femur": _MARROW,
    "tibia": _MARROW,
    "patella": _MARROW,
    "femoral_cartilage": _CARTILAGE,
    "tibial_cartilage": _CARTILAGE,
    "patellar_cartilage": _CARTILAGE,
    "medial_meniscus": _MENISCUS,
    "lateral_meniscus": _MENISCUS,
    "muscle": dict(proton_density=0.75, t1=1420.0, t2=32.0, t1rho=38.0, fat_fraction=0.03),
    "subcutaneous_fat": _FAT,
    "joint_fluid": dict(proton_density=1.0, t1=3600.0, t2=770.0, t1rho=920.0, fat_fraction=0.0),
    "cortical_bone": dict(proton_density=0.15, t1=250.0, t2=0.5, t1rho=0.6, fat_fraction=0.0),
    "tendon_ligament": dict(proton_density=0.5, t1=900.0, t2=2.0, t1rho=2.4, fat_fraction=0.0),
    "periarticular_fat": _FAT,
    "fibula": _MARROW,
}

#: Bone-marrow oedema: multiplies fat fraction, water T2, T1rho and proton density.
OEDEMA_CHANGE = {"fat_fraction": 0.3, "t2": 2.0, "t1rho": 2.0, "proton_density": 1.05}
#: The rim of a cartilage lesion: multiplies T2, T1rho and proton density.
LESION_RIM_CHANGE = {"t2": 1.6, "t1rho": 1.5, "proton_density": 1.1}

PARAMETER_NAMES = ("proton_density", "t1", "t2", "t1rho", "fat_fraction")


@dataclasses.dataclass(frozen=True)
class TissueMaps:
    """Parameter maps, each float32 ``(*spatial)``; times in ms.

    Fields:
        proton_density: relative proton density (joint fluid = 1).
        fat_fraction: fraction of the protons in fat, in [0, 1].
        t1, t2, t1rho: relaxation times of the water component.
        t1_fat, t2_fat: relaxation times of the fat component (``()`` or ``(*spatial)``).
    """

    proton_density: Any
    fat_fraction: Any
    t1: Any
    t2: Any
    t1rho: Any
    t1_fat: Any
    t2_fat: Any

    def replace(self, **changes) -> TissueMaps:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    TissueMaps, data_fields=[f.name for f in dataclasses.fields(TissueMaps)], meta_fields=[])


def parameter_table(parameters=None, *, func="mskjax.sim.tissue_maps"):
    """``(labels, 5)`` float32 table (columns :data:`PARAMETER_NAMES`), with overrides."""
    table = {name: dict(values) for name, values in TISSUE_PARAMETERS.items()}
    for name, values in (parameters or {}).items():
        if name not in table:
            raise ValueError(f"{func}: unknown tissue {name!r} in parameters; expected one of "
                             f"{list(table)}")
        for key, value in dict(values).items():
            if key not in PARAMETER_NAMES:
                raise ValueError(f"{func}: unknown parameter {key!r} for {name}; expected one "
                                 f"of {list(PARAMETER_NAMES)}")
            table[name][key] = value
    rows = [[table[name][p] for p in PARAMETER_NAMES] for name in KNEE_LABELS]
    return np.asarray(rows, np.float32)


def smooth_field(white, correlation=2.0):
    """Zero-mean, unit-variance Gaussian random field with the given correlation (voxels),
    from white noise of the same shape."""
    shape = white.shape
    spectrum = jnp.fft.fftn(white)
    gauss = 1.0
    for axis, n in enumerate(shape):
        f = jnp.fft.fftfreq(n)
        g = jnp.exp(-2.0 * (jnp.pi * correlation * f) ** 2)
        gauss = gauss * g.reshape([n if a == axis else 1 for a in range(len(shape))])
    field = jnp.real(jnp.fft.ifftn(spectrum * gauss))
    return (field - field.mean()) / jnp.maximum(field.std(), 1e-12)


def tissue_maps(phantom_or_labels: KneePhantom | ArrayLike, *,
                parameters: Mapping[str, Mapping[str, float]] | None = None,
                key: jax.Array | None = None, texture: float = 0.0) -> TissueMaps:
    """Parameter maps from a :class:`KneePhantom` (with its pathologies) or from labels.

    Args:
        phantom_or_labels: a :class:`KneePhantom`, or an integer label array ``(*spatial)``
            with values of :data:`KNEE_LABELS`.
        parameters: optional overrides, ``{tissue: {parameter: value}}`` (keyword-only).
        key: a ``jax.random`` key, needed when ``texture > 0``.
        texture: relative standard deviation of a smooth multiplicative proton-density texture
            (0 for none; e.g. 0.05).

    Returns:
        :class:`TissueMaps` of float32 ``(*spatial)`` maps.
    """
    func = "mskjax.sim.tissue_maps"
    labels, pathology = _labels_of(phantom_or_labels, func)
    table = jnp.asarray(parameter_table(parameters, func=func))
    texture = check_texture(texture, key, func)
    return _tissue_maps(labels, pathology, table, key, texture=texture)


def check_texture(texture, key, func):
    """``texture`` as a float >= 0; a key is needed when it is positive."""
    if isinstance(texture, bool) or not (isinstance(texture, numbers.Real)
                                         and np.isfinite(texture) and texture >= 0):
        raise ValueError(f"{func}: texture must be a finite number >= 0, got {texture!r}")
    if texture and key is None:
        raise ValueError(f"{func}: texture > 0 needs a key")
    return float(texture)


def _factor(factor, c):
    """``factor ** c``, exactly ``factor`` where ``c`` is NaN (the default draws)."""
    finite = jnp.isfinite(c)
    return jnp.where(finite, jnp.float32(factor) ** jnp.where(finite, c, 1.0), factor)


def _fill(values, where, host, fill, table):
    """Inside ``where``, the tissue ``host`` (a dict of parameter scalars) mixed with joint
    fluid by ``fill`` (NaN: left as it is): proton density and fat fraction linearly, the
    relaxation rates ``1 / T`` linearly (fast exchange)."""
    fluid = table[KNEE_LABELS["joint_fluid"]]
    where = where & jnp.isfinite(fill)
    f = jnp.where(jnp.isfinite(fill), fill, 1.0)
    out = dict(values)
    for i, name in enumerate(PARAMETER_NAMES):
        if name in ("proton_density", "fat_fraction"):
            mixed = (1.0 - f) * host[name] + f * fluid[i]
        else:
            mixed = 1.0 / ((1.0 - f) / host[name] + f / fluid[i])
        out[name] = jnp.where(where, mixed, values[name])
    return out


def maps_from_labels(labels, pathology, table, white, texture):
    """:class:`TissueMaps` from labels, pathology masks (or None) and a parameter table;
    ``white`` is standard normal noise shaped like ``labels``, smoothed into the texture.

    A pathology drawn with a conspicuity (``mskjax.sim._pathology``) scales its changes by
    ``s = contrast_scale(c)``: the oedema and rim factors become ``factor ** s``, and the defect
    of a cartilage lesion and the cleft of a meniscal tear (fluid-labelled voxels of their
    masks) hold their host tissue mixed with joint fluid by the fill ``s``."""
    values = {name: table[:, i][labels] for i, name in enumerate(PARAMETER_NAMES)}
    if pathology is not None:
        conspicuity = getattr(pathology, "conspicuity", None) or {}
        nan = jnp.float32(jnp.nan)
        c = {name: contrast_scale(jnp.asarray(conspicuity.get(name, nan), jnp.float32))
             for name in ("cartilage_lesion", "meniscal_tear", "bone_marrow_oedema")}
        oedema = pathology.masks["bone_marrow_oedema"]
        for name, factor in OEDEMA_CHANGE.items():
            values[name] = jnp.where(
                oedema, values[name] * _factor(factor, c["bone_marrow_oedema"]), values[name])
        cartilage = ((labels == KNEE_LABELS["femoral_cartilage"])
                     | (labels == KNEE_LABELS["tibial_cartilage"])
                     | (labels == KNEE_LABELS["patellar_cartilage"]))
        rim = pathology.masks["cartilage_lesion"] & cartilage
        rim_factor = {name: _factor(factor, c["cartilage_lesion"])
                      for name, factor in LESION_RIM_CHANGE.items()}
        for name, factor in rim_factor.items():
            values[name] = jnp.where(rim, values[name] * factor, values[name])
        fluid = labels == KNEE_LABELS["joint_fluid"]
        # The defect: degenerated cartilage of the lesion's plate (with the rim's change),
        # filled with fluid by the conspicuity.
        site = jnp.clip(jnp.asarray(pathology.site["cartilage_lesion"]), 0, 4)
        plate = jnp.asarray([KNEE_LABELS[n] for n in ("femoral_cartilage",) * 2
                             + ("tibial_cartilage",) * 2 + ("patellar_cartilage",)])[site]
        host = {name: table[plate, i] * rim_factor.get(name, 1.0)
                for i, name in enumerate(PARAMETER_NAMES)}
        values = _fill(values, pathology.masks["cartilage_lesion"] & fluid, host,
                       c["cartilage_lesion"], table)
        # The cleft: the torn meniscus filled with fluid by the conspicuity.
        site = jnp.clip(jnp.asarray(pathology.site["meniscal_tear"]), 0, 1)
        meniscus = jnp.where(site == 0, KNEE_LABELS["medial_meniscus"],
                             KNEE_LABELS["lateral_meniscus"])
        host = {name: table[meniscus, i] for i, name in enumerate(PARAMETER_NAMES)}
        values = _fill(values, pathology.masks["meniscal_tear"] & fluid, host,
                       c["meniscal_tear"], table)
    if texture:
        field = smooth_field(white)
        values["proton_density"] = values["proton_density"] * jnp.maximum(1.0 + texture * field,
                                                                          0.0)
    return TissueMaps(t1_fat=jnp.float32(FAT_RELAXATION["t1"]),
                      t2_fat=jnp.float32(FAT_RELAXATION["t2"]), **values)


@functools.partial(sdf.jit, static_argnames=("texture",))
def _tissue_maps(labels, pathology, table, key, *, texture):
    white = jax.random.normal(key, labels.shape, jnp.float32) if texture else None
    return maps_from_labels(labels, pathology, table, white, texture)


def _labels_of(phantom_or_labels, func):
    labels = getattr(phantom_or_labels, "labels", None)
    if labels is not None:
        return labels, phantom_or_labels.pathology
    labels = phantom_or_labels
    if not hasattr(labels, "dtype") or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{func}: expected a KneePhantom or an integer label array, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if not isinstance(labels, jax.core.Tracer) and jnp.size(labels):
        low, high = int(jnp.min(labels)), int(jnp.max(labels))
        if low < 0 or high >= len(KNEE_LABELS):
            raise ValueError(f"{func}: labels must be in 0..{len(KNEE_LABELS) - 1} "
                             f"(KNEE_LABELS), got values from {low} to {high}")
    return jnp.asarray(labels), None
