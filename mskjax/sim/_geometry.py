"""The knee's solids as signed distance functions in the knee's own frame.

Knee frame (mm): x left-right with the medial side of a right knee at ``+x``, y superior
(up), z anterior; the origin is the centre of the femorotibial joint, the tibial plateau's
bone surface is the plane ``y = TIBIA_TOP``. :func:`layout` turns a :class:`KneeAnatomy` into the
derived positions, :func:`fields` evaluates every solid at given points, and :func:`paint`
turns those fields into integer labels (later tissues overwrite earlier ones).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from . import _sdf as sdf
from ._anatomy import JOINT_GAP_MM

#: Label index of each tissue; the order is the label value.
KNEE_LABELS = {
    "background": 0,
    "femur": 1,
    "tibia": 2,
    "patella": 3,
    "femoral_cartilage": 4,
    "tibial_cartilage": 5,
    "patellar_cartilage": 6,
    "medial_meniscus": 7,
    "lateral_meniscus": 8,
    "muscle": 9,
    "subcutaneous_fat": 10,
    "joint_fluid": 11,
    "cortical_bone": 12,
    "tendon_ligament": 13,
    "periarticular_fat": 14,
    "fibula": 15,
}
L = KNEE_LABELS

#: y of the tibial plateau's bone surface in the knee frame (mm).
TIBIA_TOP = -2.5
#: Medial is +x, lateral -x (right knee); index 0 is medial, 1 lateral.
SIDE_SIGN = (1.0, -1.0)


def _pair(x, values):
    """A ``(2,)`` medial/lateral parameter shaped to broadcast against ``x`` with a new leading
    axis of two (one evaluation for both compartments keeps the compiled program small)."""
    return jnp.reshape(values, (2,) + (1,) * jnp.ndim(x))


def _blend_ml(x, medial, lateral):
    """A per-compartment value, medial for x > 4 mm, lateral for x < -4 mm, smooth between."""
    w = sdf.smoothstep(-4.0, 4.0, x)
    return lateral + (medial - lateral) * w


def layout(a, effusion=0.0):
    """Derived positions (knee frame, mm) of one anatomy; ``effusion`` in [0, 1] scales the
    joint recesses."""
    s = a.size_scale
    sign = jnp.asarray(SIDE_SIGN, jnp.float32)
    gap = JOINT_GAP_MM * (1.0 - a.joint_space_narrowing)
    hw, ay, az = a.condyle_semi_axes[:, 0], a.condyle_semi_axes[:, 1], a.condyle_semi_axes[:, 2]
    y_bottom = TIBIA_TOP + a.tibial_cartilage_thickness + gap + a.femoral_cartilage_thickness
    lay = dict(
        s=s, sign=sign, gap=gap, hw=hw, ay=ay, az=az, rounding=0.55 * hw,
        xc=sign * a.condyle_separation / 2, yc=y_bottom + ay, y_bottom=y_bottom,
        zc=-6.0 * s, zt=-4.0 * s, zm=-5.0 * s,
        plateau=a.tibial_plateau_semi_axes,
        patella=a.patella_semi_axes, yp=a.patella_height, xp=-2.0 * s,
        effusion=jnp.asarray(effusion, jnp.float32),
    )
    # Menisci: elliptical rings per compartment (centre xc, zm) with radii rx, rz.
    lay["mrx"] = hw + 2.0 * s
    lay["mrz"] = 0.72 * az
    mean_r = 0.5 * (lay["mrx"] + lay["mrz"])
    lay["rho_in"] = 1.0 - a.meniscus_width / mean_r
    # Patella sits on the trochlea: find the femur's anterior surface at the patella's height.
    t_troch = _blend_ml(lay["xp"], a.femoral_cartilage_thickness[0],
                        a.femoral_cartilage_thickness[1])
    lay["y_supra"] = lay["yp"] + lay["patella"][1] + 8.0 * s
    z_front, lay["z_supra"] = _anterior_surface(a, lay, jnp.stack([lay["xp"], 0.0]),
                                                jnp.stack([lay["yp"], lay["y_supra"]]))
    post = 1.15 * lay["patella"][2]
    lay["zp"] = z_front + t_troch + JOINT_GAP_MM + a.patellar_cartilage_thickness + post
    lay["patella_post"], lay["patella_ant"] = post, 0.85 * lay["patella"][2]
    return lay


def _anterior_surface(a, lay, x, y):
    """z of the femur's anterior bone surface at points (x, y) (each ``(n,)``): the last sign
    change of the distance along z, sampled every 1.5 mm and interpolated linearly."""
    z = jnp.arange(0.0, 90.0, 1.5, dtype=jnp.float32)
    d = femur(a, lay, x[:, None], y[:, None], z[None, :])
    inside = d < 0
    last = (z.size - 1) - jnp.argmax(inside[:, ::-1], axis=1)  # last sample inside the bone
    d0 = jnp.take_along_axis(d, last[:, None], 1)[:, 0]
    d1 = jnp.take_along_axis(d, jnp.minimum(last + 1, z.size - 1)[:, None], 1)[:, 0]
    return z[last] + 1.5 * d0 / jnp.minimum(d0 - d1, -1e-6)


def femur(a, lay, x, y, z):
    """Signed distance to the femur: two condyles, trochlea, metaphysis, shaft, osteophytes."""
    s = lay["s"]
    pair = functools.partial(_pair, x)
    condyles = sdf.rounded_disc_x(x, y, z, (pair(lay["xc"]), pair(lay["yc"]), lay["zc"]),
                                  pair(lay["hw"]), pair(lay["ay"]), pair(lay["az"]),
                                  pair(lay["rounding"]))
    parts = [condyles[0], condyles[1]]
    # Trochlea: the anterior articular surface for the patella.
    parts.append(sdf.ellipsoid(x, y, z, (0.0, 30.0 * s, 10.0 * s), (27.0 * s, 20.0 * s, 16.0 * s)))
    # Metaphysis: widest at the epicondyles, narrowing to the shaft.
    parts.append(sdf.ellipsoid(x, y, z, (0.0, 34.0 * s, -1.0 * s), (37.0 * s, 26.0 * s, 23.0 * s)))
    d = sdf.smooth_union(parts, 6.0 * s)
    shaft = jnp.maximum(sdf.elliptic_cylinder_y(x, z, 0.0, 2.0 * s, 15.0 * s, 14.0 * s),
                        45.0 * s - y)
    d = sdf.smooth_min(d, shaft, 14.0 * s)
    d = sdf.smooth_max(d, -notch(lay, x, y, z), 2.0 * s)
    # Osteophytes: lips at the outer distal margins of the condyles, pointing down and out.
    o = a.osteophyte_size
    oi = jnp.maximum(o * jnp.array([1.0, 0.7]), 1e-3)
    centre = (pair(lay["xc"] + lay["sign"] * (lay["hw"] - 0.1 * oi)),
              pair(lay["y_bottom"] + 1.5 + 0.6 * oi), lay["zc"])
    spurs = sdf.ellipsoid(x, y, z, centre, (pair(0.9 * oi), pair(1.3 * oi), pair(2.5 * oi)))
    spurs = jnp.where(o > 0.05, spurs, sdf.FAR)
    return sdf.smooth_min(sdf.smooth_min(d, spurs[0], 2.0), spurs[1], 2.0)


def notch(lay, x, y, z):
    """Signed distance to the intercondylar notch: the space between the condyles, behind and
    below the notch roof (Blumensaat's line)."""
    s = lay["s"]
    half_width = 0.5 * ((lay["xc"][0] - lay["hw"][0]) - (lay["xc"][1] + lay["hw"][1])) + s
    y0 = jnp.min(lay["y_bottom"])
    across = sdf.ellipse(x, y - (y0 - 5.0 * s), half_width, 33.0 * s)
    # Roof from anterior-inferior (za, ya) to posterior-superior (zb, yb).
    za, ya = lay["zc"] + 0.55 * lay["az"][0], y0 + 2.0 * s
    zb, yb = lay["zc"] - 0.6 * lay["az"][0], y0 + 28.0 * s
    nz, ny = yb - ya, za - zb
    norm = jnp.sqrt(nz * nz + ny * ny)
    roof = (nz * (z - za) + ny * (y - ya)) / norm
    return jnp.maximum(across, roof)


def tibia(a, lay, x, y, z):
    """Signed distance to the tibia: plateau, eminence, metaphysis, tuberosity, shaft."""
    s, zt = lay["s"], lay["zt"]
    rx, rz = lay["plateau"][0], lay["plateau"][1]
    # A flat-topped epiphysis that flares from the shaft to the plateau rim.
    epi = sdf.ellipsoid(x, y, z, (0.0, TIBIA_TOP - 4.0 * s, zt), (rx, 34.0 * s, rz))
    d = sdf.smooth_max(epi, y - TIBIA_TOP, 2.0 * s)
    shaft = jnp.maximum(sdf.elliptic_cylinder_y(x, z, 0.0, zt + 4.0 * s, 15.0 * s, 13.0 * s),
                        y - (TIBIA_TOP - 20.0 * s))
    d = sdf.smooth_min(d, shaft, 12.0 * s)
    tuber = sdf.ellipsoid(x, y, z, (0.0, TIBIA_TOP - 30.0 * s, zt + 0.8 * rz),
                          (12.0 * s, 12.0 * s, 7.0 * s))
    d = sdf.smooth_min(d, tuber, 6.0 * s)
    pair = functools.partial(_pair, x)
    spines = sdf.ellipsoid(x, y, z, (pair(jnp.array([5.0, -5.0]) * s), TIBIA_TOP, zt - s),
                           (3.0 * s, 5.0 * s, 7.0 * s))
    d = sdf.smooth_min(sdf.smooth_min(d, spines[0], 1.5 * s), spines[1], 1.5 * s)
    # Osteophytes: lips at the plateau margins, pointing up and out.
    o = a.osteophyte_size
    oi = jnp.maximum(o * jnp.array([1.0, 0.7]), 1e-3)
    centre = (pair(lay["sign"] * (rx - 0.2 * oi)), pair(TIBIA_TOP - 1.0 + 0.3 * oi), zt)
    spurs = sdf.ellipsoid(x, y, z, centre, (pair(0.9 * oi), pair(1.1 * oi), pair(2.5 * oi)))
    spurs = jnp.where(o > 0.05, spurs, sdf.FAR)
    return sdf.smooth_min(sdf.smooth_min(d, spurs[0], 2.0), spurs[1], 2.0)


def patella(lay, x, y, z):
    """Signed distance to the patella (thicker behind its centre than in front)."""
    rz = jnp.where(z < lay["zp"], lay["patella_post"], lay["patella_ant"])
    return sdf.ellipsoid(x, y, z, (lay["xp"], lay["yp"], lay["zp"]),
                         (lay["patella"][0], lay["patella"][1], rz))


def fibula(lay, x, y, z):
    """Signed distance to the fibular head and shaft (posterolateral, below the plateau)."""
    s, zt = lay["s"], lay["zt"]
    xh = -0.8 * lay["plateau"][0]
    head = sdf.ellipsoid(x, y, z, (xh, TIBIA_TOP - 22.0 * s, zt - 16.0 * s),
                         (10.0 * s, 11.0 * s, 10.0 * s))
    shaft = sdf.capsule(x, y, z, (xh, TIBIA_TOP - 22.0 * s, zt - 16.0 * s),
                        (xh - 3.0 * s, -300.0, zt - 14.0 * s), 7.0 * s)
    return sdf.smooth_min(head, shaft, 6.0 * s)


def meniscus_frame(lay, i, x, z):
    """Normalised radius and inward direction of compartment ``i``'s meniscal ring."""
    du, dv = (x - lay["xc"][i]) / lay["mrx"][i], (z - lay["zm"]) / lay["mrz"][i]
    return jnp.sqrt(du * du + dv * dv), du, dv


def menisci(a, lay, x, y, z, f_out, t_sdf):
    """Boolean regions ``(2, *spatial)`` of the medial and lateral menisci: wedge-shaped C
    (medial) and nearly O (lateral) rings on the plateau, below the femoral cartilage."""
    pair = functools.partial(_pair, x)
    du = (x - pair(lay["xc"])) / pair(lay["mrx"])
    dv = (z - lay["zm"]) / pair(lay["mrz"])
    rho = jnp.sqrt(du * du + dv * dv)
    # Up to the rim height, below the femoral cartilage: the condyle's curvature makes the wedge.
    height = pair(a.meniscus_height) * (1.0 - 0.15 * dv)  # posterior horn a little higher
    top = TIBIA_TOP + pair(a.tibial_cartilage_thickness) + height
    # The horns do not meet towards the intercondylar area.
    opening = (-pair(lay["sign"]) * du > 0.45) & (jnp.abs(dv) < pair(jnp.array([0.4, 0.22])))
    return ((rho >= pair(lay["rho_in"])) & (rho <= 1.0) & (y <= top) & (y > TIBIA_TOP - 0.5)
            & (t_sdf > 0) & (f_out > pair(lay["gap"])) & ~opening)


def fields(a, lay, x, y, z):
    """Every distance and region the labels and the pathologies need, at points (x, y, z)."""
    s, sev = lay["s"], lay["effusion"]
    f = femur(a, lay, x, y, z)
    t = tibia(a, lay, x, y, z)
    p = patella(lay, x, y, z)
    fib = fibula(lay, x, y, z)
    t_fc = _blend_ml(x, a.femoral_cartilage_thickness[0], a.femoral_cartilage_thickness[1])
    t_tc = _blend_ml(x, a.tibial_cartilage_thickness[0], a.tibial_cartilage_thickness[1])
    t_pc = a.patellar_cartilage_thickness
    f_out, t_out, p_out = f - t_fc, t - t_tc, p - t_pc
    out = dict(femur=f, tibia=t, patella=p, fibula=fib, t_fc=t_fc, t_tc=t_tc, f_out=f_out)

    # Cartilage: shells of the local thickness on the articular surfaces only.
    condylar = jnp.zeros_like(x, bool)
    for i in (0, 1):
        band = jnp.abs(x - lay["xc"][i]) < lay["hw"][i] - 0.25 * lay["rounding"][i]
        condylar = condylar | (band & (y < lay["yc"][i] + 0.35 * lay["ay"][i]))
    trochlear = ((z > lay["zc"] + 0.25 * lay["az"][0]) & (jnp.abs(x) < 24.0 * s)
                 & (y < lay["yp"] + 0.75 * lay["patella"][1]) & (notch(lay, x, y, z) > 1.0))
    out["femoral_cartilage"] = (f > 0) & (f <= t_fc) & (condylar | trochlear)
    plates = jnp.zeros_like(x, bool)
    for i in (0, 1):
        plates = plates | (meniscus_frame(lay, i, x, z)[0] < 0.97)
    out["tibial_cartilage"] = (t > 0) & (t <= t_tc) & (y > TIBIA_TOP - 1.0) & plates
    out["patellar_cartilage"] = ((p > 0) & (p <= t_pc)
                                 & (z < lay["zp"] - 0.25 * lay["patella_post"])
                                 & (jnp.abs(y - lay["yp"]) < 0.8 * lay["patella"][1]))
    out["medial_meniscus"], out["lateral_meniscus"] = menisci(a, lay, x, y, z, f_out, t)

    # Cortex: thin at the epiphyses, thick along the shafts, thicker under sclerotic plates.
    sclerosis = _blend_ml(x, a.subchondral_sclerosis, 0.4 * a.subchondral_sclerosis)
    cortex = a.cortical_thickness
    out["femur_cortex"] = (1.0 + (cortex - 1.0) * sdf.smoothstep(45.0 * s, 75.0 * s, y)
                           + sclerosis * (1.0 - sdf.smoothstep(lay["y_bottom"].min() + 4.0,
                                                               lay["y_bottom"].min() + 12.0, y)))
    out["tibia_cortex"] = (1.0 + (cortex - 1.0) * sdf.smoothstep(TIBIA_TOP - 35.0 * s,
                                                                 TIBIA_TOP - 65.0 * s, y)
                           + sclerosis * sdf.smoothstep(TIBIA_TOP - 12.0, TIBIA_TOP - 4.0, y))

    # Soft tissue: the limb's outline, bulging over the patella and the patellar tendon.
    up = sdf.smoothstep(10.0 * s, 80.0 * s, y)
    down = sdf.smoothstep(-15.0 * s, -70.0 * s, y)
    ax = a.limb_semi_axes[0] * (1.0 + 0.12 * up - 0.06 * down)
    az = a.limb_semi_axes[1] * (1.0 + 0.08 * up + 0.06 * down)
    limb = sdf.ellipse(x, z - (-10.0 * s - 5.0 * s * down), ax, az)
    fat = a.subcutaneous_fat_thickness
    tendons = _tendons(lay, x, y, z)
    front = sdf.smooth_union([p, tendons["patellar"]], 4.0 * s) - (0.6 * fat + 1.5)
    outer = sdf.smooth_min(limb, front, 12.0 * s)
    out["body"] = outer < 0
    out["inner"] = outer < -fat
    # Muscle everywhere inside the fat shell except an ellipsoidal region around the front and
    # sides of the joint (the fat pads, retinacula and capsule) in front of the popliteal line.
    around = sdf.ellipsoid(x, y, z, (0.0, 8.0 * s, lay["zt"] + 20.0 * s), (70.0 * s, 50.0 * s,
                                                                           55.0 * s))
    behind = (lay["zc"] - 0.45 * lay["az"][0]) - z
    out["muscle"] = sdf.smooth_max(around, behind, 6.0 * s) > 0
    out["popliteal_fat"] = sdf.ellipsoid(
        x, y, z, (0.0, 5.0 * s, lay["zc"] - lay["az"][0] - 14.0 * s),
        (12.0 * s, 35.0 * s, 9.0 * s)) < 0
    out["tendon_ligament"] = jnp.minimum(jnp.minimum(tendons["patellar"], tendons["quadriceps"]),
                                         jnp.minimum(tendons["acl"], tendons["pcl"])) < 0

    # Joint fluid: films where articular surfaces nearly touch, and the recesses; evaluated for
    # a healthy joint and for the drawn effusion at once (a leading axis of two).
    severity = _pair(x, jnp.stack([jnp.float32(0.0), sev]))
    e = 1.0 + 1.5 * severity
    fluid = ((f_out < e) & (t_out < e)) | ((f_out < e) & (p_out < e))
    rz = 1.5 + 7.0 * severity
    supra = sdf.ellipsoid(x, y, z, (0.0, lay["y_supra"], lay["z_supra"] + rz),
                          (20.0 * s * (1 + 0.3 * severity), 14.0 * s * (1 + 0.8 * severity), rz))
    fluid = fluid | (supra < 0)
    for i in (0, 1):
        rz = 1.2 + 5.0 * severity
        centre = (lay["xc"][i], lay["yc"][i],
                  lay["zc"] - lay["az"][i] - a.femoral_cartilage_thickness[i] - rz - 0.3)
        fluid = fluid | (sdf.ellipsoid(x, y, z, centre,
                                       (9.0 * s, 12.0 * s * (1 + 0.6 * severity), rz)) < 0)
    out["fluid_normal"] = fluid[0]
    out["fluid"] = fluid[0] | fluid[1]  # an effusion only adds fluid
    return out


def _tendons(lay, x, y, z):
    s, zt = lay["s"], lay["zt"]
    ap, sp = lay["patella"], lay["patella_post"]
    x_in = lay["xc"][0] - lay["hw"][0]  # inner wall of the medial condyle (> 0)
    x_in_l = -(lay["xc"][1] + lay["hw"][1])  # inner wall of the lateral condyle (> 0)
    patellar = sdf.capsule(x, y, z, (lay["xp"], lay["yp"] - 0.7 * ap[1], lay["zp"] + 0.1 * sp),
                           (0.0, TIBIA_TOP - 30.0 * s, zt + 0.8 * lay["plateau"][1] + 6.0 * s),
                           3.0 * s, x_scale=4.0)
    quadriceps = sdf.capsule(x, y, z, (lay["xp"], lay["yp"] + 0.7 * ap[1], lay["zp"]),
                             (0.0, lay["yp"] + 70.0 * s, lay["zp"] - 12.0 * s), 3.5 * s,
                             x_scale=3.5)
    acl = sdf.capsule(x, y, z, (-x_in_l + 1.0 * s, lay["yc"][1] + 0.1 * lay["ay"][1],
                                lay["zc"] - 0.35 * lay["az"][1]),
                      (-2.0 * s, TIBIA_TOP + 0.5, zt + 0.35 * lay["plateau"][1]), 4.0 * s)
    pcl = sdf.capsule(x, y, z, (x_in - 1.0 * s, lay["yc"][0] + 0.05 * lay["ay"][0],
                                lay["zc"] + 0.1 * lay["az"][0]),
                      (1.0 * s, TIBIA_TOP - 8.0 * s, zt - 0.85 * lay["plateau"][1]), 5.0 * s)
    return dict(patellar=patellar, quadriceps=quadriceps, acl=acl, pcl=pcl)


def paint(fd):
    """Integer labels from :func:`fields`; later tissues overwrite earlier ones."""
    lab = jnp.where(fd["body"], L["subcutaneous_fat"], L["background"])
    inner = fd["inner"]
    lab = jnp.where(inner, jnp.where(fd["muscle"], L["muscle"], L["periarticular_fat"]), lab)
    lab = jnp.where(inner & fd["popliteal_fat"], L["periarticular_fat"], lab)
    lab = jnp.where(inner & fd["fluid"], L["joint_fluid"], lab)
    lab = jnp.where(fd["body"] & fd["tendon_ligament"], L["tendon_ligament"], lab)
    lab = jnp.where(fd["medial_meniscus"], L["medial_meniscus"], lab)
    lab = jnp.where(fd["lateral_meniscus"], L["lateral_meniscus"], lab)
    for name in ("tibial_cartilage", "femoral_cartilage", "patellar_cartilage"):
        lab = jnp.where(fd[name], L[name], lab)
    bones = (("fibula", fd["fibula"], 1.5), ("tibia", fd["tibia"], fd["tibia_cortex"]),
             ("femur", fd["femur"], fd["femur_cortex"]), ("patella", fd["patella"], 1.0))
    for name, d, cortex in bones:
        lab = jnp.where(d < 0, jnp.where(d > -cortex, L["cortical_bone"], L[name]), lab)
    return lab.astype(jnp.int32)


#: Bone index of :func:`bone_index`.
BONES = ("none", "femur", "tibia", "patella", "fibula")


def bone_index(fd):
    """Which bone (index into :data:`BONES`) each point is in, with the precedence of
    :func:`paint`."""
    index = jnp.where(fd["fibula"] < 0, 4, 0)
    index = jnp.where(fd["tibia"] < 0, 2, index)
    index = jnp.where(fd["femur"] < 0, 1, index)
    return jnp.where(fd["patella"] < 0, 3, index).astype(jnp.int32)
