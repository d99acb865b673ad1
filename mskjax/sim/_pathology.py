"""Pathologies of the knee phantom, each with an exact boolean mask.

Four kinds, each present or absent per subject (drawn from the key with a probability, or
forced), at a site from :data:`PATHOLOGY_SITES`:

* ``cartilage_lesion``: a focal defect in one cartilage plate. The defect (partial or full
  thickness, 3.5 to 7 mm across) becomes joint fluid; a 2.5 mm rim of the remaining cartilage
  around it keeps the cartilage label but has raised T2, T1rho and proton density (see
  :data:`mskjax.sim.LESION_RIM_CHANGE`). The mask is defect plus rim, inside the healthy plate.
* ``meniscal_tear``: a fluid-filled cleft from the free edge into one meniscus, horizontal
  (parallel to the plateau) or radial (a vertical plane across the meniscus), in the posterior
  half. The mask is the cleft, inside the healthy meniscus; its voxels become joint fluid. The
  cleft is 0.8 to 1.5 mm wide, widened where the grid is coarser than that (to the voxel
  spacing across the cleft) so that the grid samples it; on very coarse grids (5 mm slices) a
  small radial tear can still fall between the samples, leaving the mask empty while
  ``present`` is True.
* ``bone_marrow_oedema``: an ellipsoidal subchondral region of femoral or tibial marrow with
  more water, a longer water T2 and a lower fat fraction (:data:`mskjax.sim.OEDEMA_CHANGE`).
  The mask lies inside the bone's marrow label, which it keeps.
* ``effusion``: enlarged joint recesses (suprapatellar, posterior) and thicker fluid films.
  The mask is the fluid that is there only because of the effusion.

Masks are exact in the sense that they are computed from the same implicit surfaces as the
labels, on the same grid.

Conspicuity (``knee_phantom(..., conspicuity=...)``). By default the sizes and contrasts above
are drawn as stated. A pathology can instead be given a conspicuity ``c`` in [0, 1] that scales
its size (linearly in ``c``) and its contrast (as ``c ** 2``, so that the range from invisible
to plainly visible is not squeezed into the lowest tenth) together; ``c = 0`` leaves every
tissue parameter as in the healthy knee (the mask is still there, the image does not show it),
``c = 1`` is as large and as contrasted as the defaults. With ``u0, u1, ...`` the pathology's
own uniform draws (the same as without conspicuity, so a key keeps its site and shape):

* ``cartilage_lesion``: defect radius ``(1.5 + 4.5 c) (0.8 + 0.4 u0)`` mm (1.2 to 7.2 mm),
  depth ``min(1, (0.25 + 0.75 c) (0.8 + 0.4 u1))`` of the local thickness, rim change
  ``LESION_RIM_CHANGE ** (c ** 2)``, and a fluid fill ``c ** 2``: the defect holds degenerated
  cartilage (with the rim's parameters) whose proton density, fat fraction and relaxation rates
  (``1 / T1``, ``1 / T2``, ``1 / T1rho``) are interpolated linearly towards joint fluid's by the
  fill (a fast-exchange mixture; 1 is pure fluid, as by default). The defect keeps the
  ``joint_fluid`` label.
* ``meniscal_tear``: cleft width ``(0.8 + 0.7 u3) (0.4 + 0.6 c)`` mm (before the widening to
  the grid), extent (how far from the free edge towards the rim) the default's times
  ``0.4 + 0.6 c``, and a fluid fill ``c ** 2`` interpolating the cleft's parameters from
  meniscus to joint fluid as above (a tear with little fluid in it, or intrasubstance
  degeneration).
* ``bone_marrow_oedema``: semi-axes the default's times ``0.4 + 0.6 c``, change
  ``OEDEMA_CHANGE ** (c ** 2)``.
* ``effusion``: severity ``c`` (0: no extra fluid; the default draws 0.5 to 1).

:func:`pathology_shape` returns these numbers for a subject's draws.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from . import _sdf as sdf
from ._geometry import KNEE_LABELS as L
from ._geometry import TIBIA_TOP, meniscus_frame

#: Sites of each pathology; a pathology's ``site`` is an index into its tuple.
PATHOLOGY_SITES = {
    "cartilage_lesion": ("medial_femoral", "lateral_femoral", "medial_tibial", "lateral_tibial",
                         "patellar"),
    "meniscal_tear": ("medial", "lateral"),
    "bone_marrow_oedema": ("medial_femoral", "lateral_femoral", "medial_tibial",
                           "lateral_tibial"),
    "effusion": ("joint",),
}

#: Probabilities used by ``pathology="random"``.
DEFAULT_PATHOLOGY_PROBABILITIES = {
    "cartilage_lesion": 0.5,
    "meniscal_tear": 0.4,
    "bone_marrow_oedema": 0.3,
    "effusion": 0.3,
}

#: Kinds of meniscal tear (``KneePathology.kind["meniscal_tear"]`` indexes this).
MENISCAL_TEAR_KINDS = ("horizontal", "radial")


@dataclasses.dataclass(frozen=True)
class KneePathology:
    """The pathologies of one phantom, keyed by the names in :data:`PATHOLOGY_SITES`.

    Fields:
        masks: name -> boolean ``(*spatial)`` mask (all False when absent).
        present: name -> boolean ``()``.
        site: name -> int32 ``()`` index into ``PATHOLOGY_SITES[name]``, -1 when absent.
        kind: name -> int32 ``()``: for ``meniscal_tear`` an index into
            :data:`MENISCAL_TEAR_KINDS`, otherwise 0; -1 when absent.
        conspicuity: name -> float32 ``()``, the conspicuity the pathology was drawn with
            (module docstring); NaN when absent or drawn the default way. ``None`` (a
            pathology built by hand) counts as all NaN.
    """

    masks: Any
    present: Any
    site: Any
    kind: Any
    conspicuity: Any = None


jax.tree_util.register_dataclass(KneePathology,
                                 data_fields=["masks", "present", "site", "kind", "conspicuity"],
                                 meta_fields=[])


def parse_pathology(pathology, func):
    """Normalise the ``pathology`` argument to a static tuple of (name, probability, site)."""
    spec = {name: (0.0, -1) for name in PATHOLOGY_SITES}
    if pathology is None:
        return tuple((n, *spec[n]) for n in PATHOLOGY_SITES)
    if isinstance(pathology, str):
        if pathology == "random":
            pathology = dict(DEFAULT_PATHOLOGY_PROBABILITIES)
        else:
            pathology = [pathology]
    if isinstance(pathology, (list, tuple)):
        pathology = {name: True for name in pathology}
    if not isinstance(pathology, dict):
        raise TypeError(
            f"{func}: pathology must be None, 'random', a pathology name, a list of names or a "
            f"dict name -> probability/bool/site, got {type(pathology).__name__}")
    for name, value in pathology.items():
        if name not in PATHOLOGY_SITES:
            raise ValueError(f"{func}: unknown pathology {name!r}; expected one of "
                             f"{list(PATHOLOGY_SITES)}")
        sites = PATHOLOGY_SITES[name]
        if isinstance(value, bool):
            spec[name] = (float(value), -1)
        elif isinstance(value, str):
            if value not in sites:
                raise ValueError(f"{func}: unknown site {value!r} for {name}; expected one of "
                                 f"{list(sites)}")
            spec[name] = (1.0, sites.index(value))
        elif isinstance(value, numbers.Real) and 0.0 <= float(value) <= 1.0:
            spec[name] = (float(value), -1)
        else:
            raise ValueError(f"{func}: pathology[{name!r}] must be a probability in [0, 1], a "
                             f"bool or a site name from {list(sites)}, got {value!r}")
    return tuple((n, *spec[n]) for n in PATHOLOGY_SITES)


def draw_pathology(key, spec):
    """Presence, site and shape parameters of each pathology, drawn from ``key``.

    ``spec`` holds (name, probability, site) or (name, probability, site, conspicuity) in the
    order of :data:`PATHOLOGY_SITES`; the probability, site (-1 for a random site) and
    conspicuity (NaN for the default draws) may be traced."""
    draws = {}
    uniforms = jax.random.uniform(key, (len(spec), 10), jnp.float32)
    for i, (name, probability, site, *rest) in enumerate(spec):
        n_sites = len(PATHOLOGY_SITES[name])
        u = uniforms[i]
        drawn_site = jnp.minimum(jnp.floor(u[0] * n_sites), n_sites - 1).astype(jnp.int32)
        site = jnp.asarray(site, jnp.int32)
        conspicuity = jnp.asarray(rest[0] if rest else jnp.nan, jnp.float32)
        draws[name] = dict(present=u[1] < probability,
                           site=jnp.where(site < 0, drawn_site, site), u=u[2:],
                           conspicuity=conspicuity)
    return draws


def contrast_scale(conspicuity):
    """The fraction of a pathology's full contrast at ``conspicuity`` (``c ** 2``; NaN, the
    default draws, stays NaN)."""
    return conspicuity * conspicuity


def _scaled(d, default, scaled):
    """``default`` where the draw has no conspicuity (NaN), else ``scaled(c)``."""
    c = d.get("conspicuity", jnp.float32(jnp.nan))
    finite = jnp.isfinite(c)
    return jnp.where(finite, scaled(jnp.where(finite, c, 1.0)), default)


def pathology_shape(draws, name):
    """The size and contrast parameters of pathology ``name`` from its draws (module
    docstring), a dict of float32 ``()``:

    * ``cartilage_lesion``: ``radius`` (mm), ``depth`` (fraction of the thickness), ``fill``
      (fluid fraction of the defect), ``rim_change`` (the exponent of
      :data:`LESION_RIM_CHANGE`: 1 is the full change);
    * ``meniscal_tear``: ``width`` (mm, before widening to the grid), ``extent`` (fraction of
      the meniscal width from the free edge), ``fill``;
    * ``bone_marrow_oedema``: ``radii`` ``(3,)`` (mm), ``change`` (the exponent of
      :data:`OEDEMA_CHANGE`);
    * ``effusion``: ``severity``."""
    d = draws[name]
    u = d["u"]
    one = jnp.float32(1.0)
    if name == "cartilage_lesion":
        return dict(
            radius=_scaled(d, 3.5 + 3.5 * u[0], lambda c: (1.5 + 4.5 * c) * (0.8 + 0.4 * u[0])),
            depth=_scaled(d, 0.5 + 0.5 * u[1],
                          lambda c: jnp.minimum(1.0, (0.25 + 0.75 * c) * (0.8 + 0.4 * u[1]))),
            fill=_scaled(d, one, contrast_scale), rim_change=_scaled(d, one, contrast_scale))
    if name == "meniscal_tear":
        # How far from the free edge towards the rim: horizontal tears 55 to 90 % of the width,
        # radial tears 60 % to all of it.
        extent = jnp.where(_tear_is_radial(d), 0.6 + 0.45 * u[2], 0.55 + 0.35 * u[2])
        width = 0.8 + 0.7 * u[3]
        return dict(width=_scaled(d, width, lambda c: width * (0.4 + 0.6 * c)),
                    extent=_scaled(d, extent, lambda c: extent * (0.4 + 0.6 * c)),
                    fill=_scaled(d, one, contrast_scale))
    if name == "bone_marrow_oedema":
        radii = jnp.stack([5.0 + 6.0 * u[0], 4.0 + 5.0 * u[1], 7.0 + 8.0 * u[2]])
        return dict(radii=_scaled(d, radii, lambda c: radii * (0.4 + 0.6 * c)),
                    change=_scaled(d, one, contrast_scale))
    return dict(severity=_scaled(d, 0.5 + 0.5 * u[0], lambda c: c))


def effusion_severity(draws):
    """0 without effusion, 0.5 to 1 with it (or its conspicuity)."""
    d = draws["effusion"]
    return jnp.where(d["present"], pathology_shape(draws, "effusion")["severity"], 0.0)


def _pick(index, values):
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in values])[index]


def _lesion_centre(lay, d):
    """Knee-frame centre ``(cx, cy, cz)`` of a cartilage lesion (on the plate's bone)."""
    u, site = d["u"], d["site"]
    centres = []
    for i in (0, 1):
        phi = jnp.deg2rad(-35.0 + 55.0 * u[2])  # along the condyle, positive is posterior
        centres.append((lay["xc"][i] + (u[3] - 0.5) * 0.8 * (lay["hw"][i] - lay["rounding"][i]),
                        lay["yc"][i] - lay["ay"][i] * jnp.cos(phi),
                        lay["zc"] - lay["az"][i] * jnp.sin(phi)))
    for i in (0, 1):
        centres.append((lay["xc"][i] + (u[3] - 0.5) * 0.6 * lay["mrx"][i], TIBIA_TOP,
                        lay["zm"] + (u[2] - 0.5) * 0.6 * lay["mrz"][i]))
    centres.append((lay["xp"] + (u[3] - 0.5) * 0.8 * lay["patella"][0],
                    lay["yp"] + (u[2] - 0.5) * 0.8 * lay["patella"][1],
                    lay["zp"] - lay["patella_post"]))
    return tuple(_pick(site, [c[k] for c in centres]) for k in range(3))


def _cartilage_lesion(a, lay, fd, labels, draws, x, y, z):
    d = draws["cartilage_lesion"]
    site = d["site"]
    shape = pathology_shape(draws, "cartilage_lesion")
    radius, depth = shape["radius"], shape["depth"]
    cx, cy, cz = _lesion_centre(lay, d)
    plate = jnp.array([L["femoral_cartilage"]] * 2 + [L["tibial_cartilage"]] * 2
                      + [L["patellar_cartilage"]])[site]
    femoral, tibial = site < 2, site < 4
    host = jnp.where(femoral, fd["femur"], jnp.where(tibial, fd["tibia"], fd["patella"]))
    thickness = jnp.where(femoral, fd["t_fc"],
                          jnp.where(tibial, fd["t_tc"], a.patellar_cartilage_thickness))
    from_surface = thickness - host
    distance = jnp.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
    in_plate = (labels == plate) & d["present"]
    defect = in_plate & (distance < radius) & (from_surface <= depth * thickness + 1e-3)
    rim = in_plate & (distance < radius + 2.5)
    return defect | rim, defect


def _sampled_width(width, normal, rotation, spacing):
    """The cleft width, widened where needed so that the grid samples it: a slab with unit
    normal ``n`` (knee frame) holds a grid point on every grid line along an axis ``k`` that
    crosses it once it is ``spacing[k] * |n_k|`` wide (scanner axes; a sliced axis has infinite
    spacing and is left out). The width is made enough for every axis the slab is not nearly
    parallel to (``|n_k| >= 0.3``)."""
    n = jnp.abs(rotation @ normal)
    use = (n >= 0.3) & jnp.isfinite(spacing)
    need = jnp.max(jnp.where(use, spacing * n, 0.0))
    need = jnp.where(need > 0, need, jnp.min(spacing))
    return jnp.maximum(width, 1.05 * need)


def _meniscal_tear(a, lay, fd, labels, draws, x, y, z, rotation, spacing):
    d = draws["meniscal_tear"]
    u, i = d["u"], d["site"]
    shape = pathology_shape(draws, "meniscal_tear")
    xc, mrx, mrz = (_pick(i, lay[k]) for k in ("xc", "mrx", "mrz"))
    rho_in = _pick(i, lay["rho_in"])
    rho, du, dv = meniscus_frame(dict(xc=jnp.stack([xc]), mrx=jnp.stack([mrx]),
                                      mrz=jnp.stack([mrz]), zm=lay["zm"]), 0, x, z)
    horizontal = ~_tear_is_radial(d)
    theta = _tear_angle(d)
    reach = rho < rho_in + (1.0 - rho_in) * shape["extent"]
    width = shape["width"]
    # Horizontal: a slab at a fixed fraction of the local meniscal height, in a sector.
    bottom = TIBIA_TOP + _pick(i, a.tibial_cartilage_thickness)
    top = jnp.minimum(y + fd["f_out"] - _pick(i, lay["gap"]),
                      bottom + _pick(i, a.meniscus_height))
    middle = bottom + (0.35 + 0.3 * u[4]) * (top - bottom)
    sector = jnp.cos(jnp.arctan2(du, dv) - theta) > jnp.cos(0.6)
    horizontal_width = _sampled_width(width, jnp.array([0.0, 1.0, 0.0]), rotation, spacing)
    slab = (jnp.abs(y - middle) < 0.5 * horizontal_width) & sector
    # Radial: a vertical plane through the ring's centre along the direction theta.
    dx, dz = jnp.sin(theta) * mrx, jnp.cos(theta) * mrz
    norm = jnp.sqrt(dx * dx + dz * dz)
    dx, dz = dx / norm, dz / norm
    ox, oz = x - xc, z - lay["zm"]
    radial_width = _sampled_width(width, jnp.stack([dz, 0.0, -dx]), rotation, spacing)
    plane = (jnp.abs(ox * dz - oz * dx) < 0.5 * radial_width) & (ox * dx + oz * dz > 0)
    cleft = jnp.where(horizontal, slab, plane) & reach
    host = jnp.where(i == 0, L["medial_meniscus"], L["lateral_meniscus"])
    return cleft & (labels == host) & d["present"]


def _tear_is_radial(d):
    return d["u"][0] >= 0.5


def _tear_angle(d):
    """Angle of the tear around the meniscal ring (pi: the posterior horn)."""
    return jnp.pi + (d["u"][1] - 0.5) * 1.6


def _oedema_centre(lay, d, radii):
    u, site = d["u"], d["site"]
    centres = []
    for i in (0, 1):
        centres.append((lay["xc"][i] + (u[3] - 0.5) * 0.6 * lay["hw"][i],
                        lay["y_bottom"][i] + 0.5 * radii[1] + 1.0,
                        lay["zc"] + (u[4] - 0.5) * 0.8 * lay["az"][i]))
    for i in (0, 1):
        centres.append((lay["xc"][i] + (u[3] - 0.5) * 0.6 * lay["mrx"][i],
                        TIBIA_TOP - 0.5 * radii[1] - 1.0,
                        lay["zm"] + (u[4] - 0.5) * 0.6 * lay["mrz"][i]))
    return tuple(_pick(site, [c[k] for c in centres]) for k in range(3))


def _oedema(lay, labels, draws, x, y, z):
    d = draws["bone_marrow_oedema"]
    site = d["site"]
    r = pathology_shape(draws, "bone_marrow_oedema")["radii"]
    radii = (r[0], r[1], r[2])
    centre = _oedema_centre(lay, d, radii)
    host = jnp.where(site < 2, L["femur"], L["tibia"])
    inside = sdf.ellipsoid(x, y, z, centre, radii) < 0
    return inside & (labels == host) & d["present"]


def pathology_centre(a, lay, draws, name):
    """Knee-frame point ``(3,)`` (mm) at the heart of pathology ``name`` as drawn, whether
    present or not (the same draws give the same point): the lesion's centre on the plate's
    bone surface, the point of a tear's cleft halfway along its extent (at mid-height of the
    meniscus), the oedema's centre. Not defined for ``effusion``."""
    d = draws[name]
    if name == "cartilage_lesion":
        return jnp.stack(_lesion_centre(lay, d))
    if name == "bone_marrow_oedema":
        r = pathology_shape(draws, name)["radii"]
        return jnp.stack(_oedema_centre(lay, d, (r[0], r[1], r[2])))
    if name != "meniscal_tear":
        raise ValueError(f"pathology_centre: no centre for {name!r}")
    i = d["site"]
    xc, mrx, mrz, rho_in = (_pick(i, lay[k]) for k in ("xc", "mrx", "mrz", "rho_in"))
    extent = jnp.minimum(pathology_shape(draws, name)["extent"], 1.0)
    rho = rho_in + 0.5 * (1.0 - rho_in) * extent
    theta = _tear_angle(d)
    y = TIBIA_TOP + _pick(i, a.tibial_cartilage_thickness) + 0.5 * _pick(i, a.meniscus_height)
    return jnp.stack([xc + rho * jnp.sin(theta) * mrx, y, lay["zm"] + rho * jnp.cos(theta) * mrz])


def apply_pathology(a, lay, fd, labels, draws, x, y, z, rotation, spacing):
    """Masks of every pathology, and the labels with defects and clefts turned to fluid.

    ``rotation`` takes knee-frame directions to scanner axes; ``spacing`` is the grid spacing
    (mm) along each scanner axis, infinite along a sliced one. Returns ``(labels, masks)``."""
    masks = {}
    lesion, defect = _cartilage_lesion(a, lay, fd, labels, draws, x, y, z)
    masks["cartilage_lesion"] = lesion
    masks["meniscal_tear"] = _meniscal_tear(a, lay, fd, labels, draws, x, y, z, rotation,
                                            spacing)
    masks["bone_marrow_oedema"] = _oedema(lay, labels, draws, x, y, z)
    masks["effusion"] = (fd["fluid"] & ~fd["fluid_normal"] & (labels == L["joint_fluid"])
                         & draws["effusion"]["present"])
    labels = jnp.where(defect | masks["meniscal_tear"], L["joint_fluid"], labels)
    return labels, {name: masks[name] for name in PATHOLOGY_SITES}


def pathology_flags(draws):
    """Presence, site and kind of each pathology (the per-subject labels), from the draws."""
    present = {name: draws[name]["present"] for name in PATHOLOGY_SITES}
    site = {name: jnp.where(present[name], draws[name]["site"], -1).astype(jnp.int32)
            for name in PATHOLOGY_SITES}
    kind = {name: jnp.where(present[name], 0, -1).astype(jnp.int32) for name in PATHOLOGY_SITES}
    radial = _tear_is_radial(draws["meniscal_tear"]).astype(jnp.int32)
    kind["meniscal_tear"] = jnp.where(present["meniscal_tear"], radial, -1).astype(jnp.int32)
    return present, site, kind
