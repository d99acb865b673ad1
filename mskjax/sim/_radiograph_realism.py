"""What makes knee radiographs of one Kellgren-Lawrence grade differ, as options of
:func:`mskjax.sim.knee_radiograph` and :func:`mskjax.sim.radiograph_set`. Every option is off by
default; :data:`REALISTIC_RADIOGRAPH` turns all of them on at clinical-looking values.

In the order the physics has them:

* Within-grade variation (``variation``, in grades): each of the three osteoarthritic features
  (joint-space narrowing, osteophyte size, subchondral sclerosis) is read from
  :data:`KL_GRADE_TABLE` at its own continuous grade ``clip(grade + variation * u, 0, 4)``,
  ``u`` uniform in ``[-1, 1]`` and independent per feature, interpolating linearly between the
  rows of the table (then times the subject's own factor of 0.85 to 1.15, as without
  variation). With ``variation > 0.5`` the features of adjacent grades overlap, as real KL
  grades do (a grade 1 knee may have more narrowing than a grade 2 one). The grade stays the
  label. At ``variation=1`` (:data:`REALISTIC_RADIOGRAPH`) each feature of a grade ``g`` knee
  lies between the table's values for grades ``g - 1`` and ``g + 1`` (within 0..4): before the
  factor, the medial narrowing of grades 0..4 spans 0-0.10, 0-0.30, 0.10-0.55, 0.30-0.90 and
  0.55-0.90 of the joint space, the lateral 0, 0-0.05, 0-0.10, 0.05-0.25 and 0.10-0.25, the
  osteophytes 0-1.5, 0-3.0, 1.5-4.5, 3.0-6.5 and 4.5-6.5 mm, the sclerosis 0, 0-0.5, 0-1.5,
  0.5-3.0 and 1.5-3.0 mm (grades 0 and 4 spread one way only, so half of grade 0 knees have
  no feature at all).
* Positioning: the knee is rotated by ``flexion`` (about the left-right axis: the beam no
  longer runs along the tibial plateau, so its anterior and posterior rims project apart and
  the joint space blurs and narrows, as when a knee is not imaged semi-flexed and
  beam-aligned), ``axial_rotation`` (internal/external rotation, about the superior-inferior
  axis) and ``tilt`` (in-plane, about the beam), each uniform in ``[-value, value]`` degrees
  about the joint centre; shifted by ``shift`` mm (uniform in ``[-shift, shift]`` along rows
  and columns); and magnified by a factor drawn uniformly from ``magnification`` (a number or a
  range ``(low, high)``: the object's pixel is ``pixel_size / magnification``).
* Projection: the line integral ``L`` of attenuation along the beam (Beer-Lambert, as without
  realism); the primary intensity is ``P = exp(-L)`` (unattenuated intensity 1).
* Blur (``blur_fwhm``, mm at the detector): the focal spot's penumbra, the detector's
  unsharpness and the pixel aperture together, a Gaussian point-spread function of that full
  width at half maximum applied to ``P``: ``sigma = blur_fwhm / (2 sqrt(2 ln 2))``, modulation
  transfer function ``exp(-2 pi^2 sigma^2 f^2)`` (``f`` in cycles per mm), applied exactly at
  the image's frequencies with mirrored ("reflect") borders, separably along rows and columns
  (see ``filter_matrix``; for ``sigma`` of a pixel or more this is
  ``scipy.ndimage.gaussian_filter``).
* Scatter (``scatter_to_primary`` ``r``, ``scatter_fwhm`` mm): ``S = r * G(P)``, ``G`` the same
  Gaussian filter with the (wide) scatter width: a low-pass copy of the primary. So ``r`` is
  the scatter-to-primary ratio wherever the primary is uniform over the scatter kernel, and the
  image's total scatter is ``r`` times its total primary. The detector is flat-field
  corrected: the intensity read is ``(blur(P) + S) / (1 + r)`` (an open field reads 1).
* Exposure (``photons``): a number, or a range ``(low, high)`` from which each image draws its
  count log-uniformly: the mean photon count per pixel of the unattenuated beam ``N``. The
  detector counts ``Poisson(N * (blur(P) + S))`` (quantum noise), plus Gaussian electronic
  noise of standard deviation ``detector_noise`` photons (which needs ``photons``); counts
  below half a photon are read as half a photon (the logarithm of nothing is not defined), as
  without realism.
* The image is ``-log`` of the intensity read; an image with neither blur, scatter nor noise
  is ``L`` itself.
* Display (``window``): each image's display window is its 1st to 99th percentile (level the
  middle, width the difference), its level shifted by up to ``window`` widths and its width
  scaled by ``1 + window * v``, ``v`` uniform in ``[-1, 1]``; :func:`radiograph_set` returns
  ``(image - level) / width + 0.5`` (nothing is clipped).

Keys: the subject's anatomy comes from the key itself (the subject of :func:`knee_phantom`);
the feature draws from ``fold_in(key, 7)``, the positioning from ``fold_in(key, 8)``, the
exposure and window from ``fold_in(key, 9)``, quantum noise from ``fold_in(key, 6)`` (as
without realism) and electronic noise from ``fold_in(key, 10)``.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

#: Clinical-looking settings of every option of :func:`knee_radiograph` (pass as
#: ``**REALISTIC_RADIOGRAPH``): features spread over +-1 grade; a 1 mm FWHM blur (a 0.6 to
#: 1.2 mm focal spot at about 1.1 times magnification, a computed-radiography plate and the
#: pixel of a downsampled image); scatter-to-primary ratio 0.4 over a 50 mm kernel (a knee about
#: 10 to 12 cm thick, no grid); flexion off the beam-aligned view by up to 8 degrees (the
#: tibial plateau's posterior slope is about 7 to 10 degrees), axial rotation up to 5, in-plane
#: tilt up to 5, shifts up to 10 mm, magnification 1.05 to 1.15 (source-image distance 100 to
#: 120 cm, knee 5 to 15 cm from the detector); 2e4 to 1e5 detected photons per pixel of the
#: open beam; electronic noise of 10 photons; display windows varying by 10 %.
REALISTIC_RADIOGRAPH = dict(variation=1.0, blur_fwhm=1.0, scatter_to_primary=0.4,
                            scatter_fwhm=50.0, tilt=5.0, flexion=8.0, axial_rotation=5.0,
                            shift=10.0, magnification=(1.05, 1.15), photons=(2e4, 1e5),
                            detector_noise=10.0, window=0.1)

#: The options and their defaults (all off).
DEFAULTS = dict(variation=0.0, blur_fwhm=0.0, scatter_to_primary=0.0, scatter_fwhm=50.0,
                tilt=0.0, flexion=0.0, axial_rotation=0.0, shift=0.0, magnification=1.0,
                photons=None, detector_noise=0.0, window=0.0)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def _range(value, name, func, low_bound, high_bound, what):
    """A number or a (low, high) pair within the bounds, as a pair of floats."""
    pair = (value, value) if _number(value) else value
    try:
        low, high = pair
    except (TypeError, ValueError):
        low = high = None
    if not (_number(low) and _number(high) and low_bound < low <= high <= high_bound):
        raise ValueError(f"{func}: {name} must be {what}, got {value!r}")
    return float(low), float(high)


def check_realism(options, func):
    """The options validated, ranges as ``(low, high)`` floats; errors name ``func``."""
    out = dict(DEFAULTS)
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"{func}: unknown option(s) {', '.join(unknown)}; the options are "
                        f"{', '.join(DEFAULTS)}")
    out.update(options)
    bounds = dict(variation=(0.0, 4.0, "in grades"), blur_fwhm=(0.0, math.inf, "mm"),
                  scatter_to_primary=(0.0, math.inf, ""), tilt=(0.0, 45.0, "degrees"),
                  flexion=(0.0, 45.0, "degrees"), axial_rotation=(0.0, 45.0, "degrees"),
                  shift=(0.0, math.inf, "mm"), detector_noise=(0.0, math.inf, "photons"),
                  window=(0.0, 1.0, "widths"))
    for name, (low, high, unit) in bounds.items():
        v = out[name]
        if not (_number(v) and low <= v and (v < high if high == 1.0 else v <= high)):
            closing = ")" if high == 1.0 else "]"
            raise ValueError(f"{func}: {name} must be a number in [{low:g}, {high:g}"
                             f"{closing}{' (' + unit + ')' if unit else ''}, got {v!r}")
        out[name] = float(v)
    if not (_number(out["scatter_fwhm"]) and out["scatter_fwhm"] > 0):
        raise ValueError(f"{func}: scatter_fwhm must be a finite number > 0 (mm), got "
                         f"{out['scatter_fwhm']!r}")
    out["scatter_fwhm"] = float(out["scatter_fwhm"])
    out["magnification"] = _range(out["magnification"], "magnification", func, 0.0, 10.0,
                                  "a number in (0, 10] or a range (low, high) of them")
    if out["photons"] is not None:
        out["photons"] = _range(out["photons"], "photons", func, 0.0, math.inf,
                                "None or a number > 0 (or a range (low, high) of them)")
    if out["detector_noise"] > 0 and out["photons"] is None:
        raise ValueError(f"{func}: detector_noise (photons) needs photons, got photons=None "
                         f"and detector_noise={out['detector_noise']!r}")
    return out


def is_default(options):
    """Whether the validated ``options`` are all off (a single photon count is not realism: it
    is the noise ``knee_radiograph`` always had)."""
    photons = options["photons"]
    rest = {k: v for k, v in options.items() if k != "photons"}
    base = {k: v for k, v in check_realism({}, "").items() if k != "photons"}
    return rest == base and (photons is None or photons[0] == photons[1])


def filter_matrix(n, sigma):
    """float64 ``(n, n)`` matrix ``M`` with ``M @ x`` the Gaussian blur of standard deviation
    ``sigma`` (pixels) of ``x`` along its first axis, with mirrored borders: the signal extended
    half-sample symmetrically (as ``mode="reflect"`` of scipy.ndimage) and filtered by the
    Gaussian's exact transfer function ``exp(-2 pi^2 sigma^2 f^2)`` at the frequencies
    ``f = k / (2 n)`` (cycles per pixel) of that extension, which the orthonormal DCT-II
    diagonalises: ``M = C.T diag(mtf) C``. Unlike a sampled kernel, a point-spread function
    narrower than a pixel still blurs by the amount its transfer function states; from about
    one pixel up it is the (untruncated) filter of ``scipy.ndimage.gaussian_filter``. The
    identity for ``sigma == 0``; rows sum to 1 (a uniform image stays uniform)."""
    if sigma == 0:
        return np.eye(n)
    k = np.arange(n)[:, None]
    dct = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))
    dct[0] /= np.sqrt(2.0)
    mtf = np.exp(-2.0 * np.pi ** 2 * sigma ** 2 * (np.arange(n) / (2.0 * n)) ** 2)
    return dct.T @ (mtf[:, None] * dct)


def realism_arrays(options, shape, pixel_size, side):
    """The validated ``options`` as the float32 arrays the compiled radiograph takes (so no
    setting of them compiles anew): ranges, flags and the filter matrices for ``shape``."""
    rows, cols = shape
    f32 = np.float32
    sigma = [options[name] / _FWHM_PER_SIGMA / pixel_size
             for name in ("blur_fwhm", "scatter_fwhm")]
    photons = options["photons"] or (1.0, 1.0)
    arrays = dict(
        variation=options["variation"],
        angles=np.array([options["flexion"], options["axial_rotation"], options["tilt"]]),
        shift=options["shift"], magnification=np.array(options["magnification"]),
        photons=np.array(photons), detector_noise=options["detector_noise"],
        scatter_to_primary=options["scatter_to_primary"], window=options["window"],
        pixel_size=pixel_size, edge_ramp=pixel_size, depth_jitter=1.0, mirror=-1.0 if side == "left" else 1.0,
        noise=options["photons"] is not None,
        intensity=options["photons"] is not None or options["blur_fwhm"] > 0
        or options["scatter_to_primary"] > 0,
        blur_rows=filter_matrix(rows, sigma[0]), blur_cols=filter_matrix(cols, sigma[0]),
        scatter_rows=filter_matrix(rows, sigma[1]),
        scatter_cols=filter_matrix(cols, sigma[1]))
    return {k: jnp.asarray(v if isinstance(v, (bool, np.bool_)) else np.asarray(v, f32))
            for k, v in arrays.items()}


def draw_acquisition(key, grade, params):
    """Per-image draws: the features' continuous grades ``severity`` ``(3,)`` (narrowing,
    osteophytes, sclerosis), ``rotation`` ``(3,)`` degrees about (left-right, superior-inferior,
    anterior-posterior), ``shift`` ``(2,)`` mm (left-right, superior-inferior),
    ``magnification`` ``()``, ``photons`` ``()`` and the window's jitter ``(2,)``."""
    u = jax.random.uniform(jax.random.fold_in(key, 7), (3,), jnp.float32, -1.0, 1.0)
    severity = jnp.clip(grade.astype(jnp.float32) + params["variation"] * u, 0.0, 4.0)
    p = jax.random.uniform(jax.random.fold_in(key, 8), (6,), jnp.float32, -1.0, 1.0)
    low, high = params["magnification"][0], params["magnification"][1]
    e = jax.random.uniform(jax.random.fold_in(key, 9), (3,), jnp.float32)
    n_low, n_high = params["photons"][0], params["photons"][1]
    return dict(severity=severity, rotation=p[:3] * params["angles"],
                shift=p[3:5] * params["shift"],
                magnification=low + (high - low) * (0.5 * p[5] + 0.5),
                photons=n_low * (n_high / n_low) ** e[0], window_jitter=2.0 * e[1:] - 1.0)


def _filter(rows, cols, image):
    high = jax.lax.Precision.HIGHEST
    return jnp.matmul(jnp.matmul(rows, image, precision=high), cols.T, precision=high)


def detect(line, key, acquisition, params):
    """The image read from the line integral ``line`` float32 ``(rows, cols)``: blur, scatter,
    quantum and electronic noise, ``-log`` (see the module docstring)."""
    primary = jnp.exp(-line)
    r = params["scatter_to_primary"]
    signal = (_filter(params["blur_rows"], params["blur_cols"], primary)
              + r * _filter(params["scatter_rows"], params["scatter_cols"], primary))
    gain = 1.0 + r
    photons = acquisition["photons"]
    counts = jax.random.poisson(jax.random.fold_in(key, 6), photons * signal).astype(jnp.float32)
    counts = counts + params["detector_noise"] * jax.random.normal(
        jax.random.fold_in(key, 10), line.shape, jnp.float32)
    noisy = -jnp.log(jnp.maximum(counts, 0.5) / (photons * gain))
    smooth = -jnp.log(signal / gain)
    image = jnp.where(params["noise"], noisy, jnp.where(params["intensity"], smooth, line))
    return image.astype(jnp.float32)


def display_window(image, jitter, amount):
    """``(level, width)`` float32 ``(2,)``: the 1st to 99th percentile of ``image``, the level
    shifted by ``amount * jitter[0]`` widths and the width scaled by ``1 + amount * jitter[1]``.
    A flat image (no width) gets width 1 rather than a division by zero."""
    low, high = jnp.percentile(image, jnp.array([1.0, 99.0]))
    width = jnp.where(high > low, high - low, 1.0)
    level = 0.5 * (low + high) + amount * jitter[0] * width
    return jnp.stack([level, width * (1.0 + amount * jitter[1])]).astype(jnp.float32)
