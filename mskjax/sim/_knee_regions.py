"""Where lesions can go in a real knee image without tissue labels, and its noise level.

Host-side (numpy and ``scipy.ndimage``) analysis of one 2D magnitude image, float32 or
float64 ``(rows, cols)``; ``pixel_size`` in mm, one number or ``(row, col)``. Every step is a
simple, stated operation, so that it can be checked by eye (``benchmarks/results/detection/
insertion_examples.png``):

1. Foreground: Otsu's threshold on the log of the image smoothed by a 1-pixel Gaussian,
   opened (1 mm disc), closed (2 mm), holes filled, largest connected component.
2. Background noise: the pixels more than 5 mm outside the foreground are magnitude noise, a
   chi distribution with ``k`` degrees of freedom and scale ``sigma`` (Rayleigh for one coil,
   ``k = 2``; about ``2 x coils`` for root-sum-of-squares). ``k`` is solved from the ratio
   mean / standard deviation, then ``sigma`` from the standard deviation. Where the signal is
   well above the noise (SNR above about 3), the magnitude's noise is close to Gaussian with
   standard deviation ``sigma`` for any ``k``: that is the level lesions are given.
3. Receive bias: the foreground's intensity smoothed by a 20 mm Gaussian (normalised by the
   smoothed foreground mask). Intensities below are in units of this bias ("normalised").
4. Bone marrow: on fat-suppressed images (the default) the darkest large, textured region; on
   images without fat suppression the brightest. The seed is the deepest point of the
   normalised image (smoothed by 1 mm) on the marrow's side of Otsu's threshold inside the
   foreground (eroded by 2 mm): the femur on axial slices. The marrow's level ``m`` and spread
   ``s`` (10th to 90th percentile / 2.56) are read in a disc around the seed (0.8 of its
   depth); marrow is then every pixel on the marrow's side of ``m + 3 s`` whose trabecular
   texture (local RMS of the image minus its 3 x 3 mean, over 1.5 mm, in units of ``sigma``)
   exceeds the midpoint between pure noise (1) and the seed's texture, opened by a 2.5 mm
   disc; connected components at least 150 mm^2 in area and 4.5 mm deep, holes filled.
   Subcutaneous fat, suppressed too, is smooth, and so is left out.
5. Reference intensities (normalised): fluid ``F``, the 99th percentile of the smoothed
   foreground; marrow ``M``, the median of the marrow.
6. Cartilage (fat-suppressed images only; empty otherwise): the band up to 3 mm outside the
   marrow brighter than ``M + 0.3 (F - M)`` (cartilage and joint fluid are bright on
   fat-suppressed PD images; cortex, ligaments and suppressed fat are not), opened by a
   0.75 mm disc. With ``articular_axis`` (default 0, rows anterior-posterior as in the axial
   knees), only the band whose outward normal is within 45 degrees of that axis and that
   lies in the outer 30 % of its bone's extent along it, on the side it faces: the trochlea
   and the posterior condyles, not the medial and lateral walls or the notch. Pieces of at
   least 8 mm^2.
7. Subchondral marrow (where oedema is centred): marrow within 6 mm of the cartilage band
   (of the marrow's edge without fat suppression) and at least 1.5 mm inside it.

On the axial PD-weighted fat-suppressed knees of ``knee_axial_rss`` this finds the distal
femur (and the patella where it is thick enough) and its articular cartilage; the menisci are
not in those slices. The analysis knows no anatomy beyond this: check the figure before
trusting it on other images, and pass a region of your own where it fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.special import gammaln

from .._checks import check_spacing

#: The ratio mean / std of a chi distribution with k degrees of freedom, tabulated once.
_CHI_K = np.exp(np.linspace(0.0, np.log(2000.0), 2000))


def _chi_mean(k):
    return np.sqrt(2.0) * np.exp(gammaln((k + 1.0) / 2.0) - gammaln(k / 2.0))


_CHI_RATIO = _chi_mean(_CHI_K) / np.sqrt(np.maximum(_CHI_K - _chi_mean(_CHI_K) ** 2, 1e-300))


@dataclasses.dataclass(frozen=True)
class CandidateRegions:
    """The analysis of one image (numpy arrays of the image's shape).

    Fields:
        foreground, marrow, cartilage, subchondral: bool ``(rows, cols)`` masks.
        receive_bias: float64 ``(rows, cols)`` smooth intensity scale (image units).
        noise_sigma: float, the Gaussian noise level in the tissue (image units).
        fluid_level, marrow_level: floats, reference intensities in units of the bias.
        pixel_size: ``(row, col)`` mm.
    """

    foreground: np.ndarray
    marrow: np.ndarray
    cartilage: np.ndarray
    subchondral: np.ndarray
    receive_bias: np.ndarray
    noise_sigma: float
    fluid_level: float
    marrow_level: float
    pixel_size: tuple


def _otsu(values, bins=256):
    """Otsu's threshold of a 1D sample (the bin edge maximising between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = hist.sum() - w0
    m0 = np.cumsum(hist * centres)[:-1]
    mean = (hist * centres).sum() / hist.sum()
    ok = (w0 > 0) & (w1 > 0)
    between = np.where(ok, (mean * w0 - m0) ** 2 / np.maximum(w0 * w1, 1.0), -1.0)
    return edges[1:-1][np.argmax(between)]


def _disc(radius_mm, pixel_size):
    ry, rx = (max(1, int(round(radius_mm / p))) for p in pixel_size)
    y, x = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (y * pixel_size[0]) ** 2 + (x * pixel_size[1]) ** 2 <= radius_mm ** 2 + 1e-9


def _sigma_px(mm, pixel_size):
    return tuple(mm / p for p in pixel_size)


def _distance_mm(mask, pixel_size):
    """Distance (mm) from every pixel outside ``mask`` to it (0 inside)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask, sampling=pixel_size)


def _foreground(smooth, pixel_size):
    positive = smooth[smooth > 0]
    fg = smooth > np.exp(_otsu(np.log(positive)))
    fg = ndimage.binary_opening(fg, _disc(1.0, pixel_size))
    fg = ndimage.binary_closing(fg, _disc(2.0, pixel_size))
    fg = ndimage.binary_fill_holes(fg)
    labels, n = ndimage.label(fg)
    if n == 0:
        return fg
    return labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])


def _chi_sigma(background, func):
    mean, std = float(np.mean(background)), float(np.std(background))
    ratio = mean / std if std > 0 else np.inf
    if not _CHI_RATIO[0] <= ratio <= _CHI_RATIO[-1]:
        raise ValueError(
            f"{func}: the background (pixels far outside the foreground) does not look like "
            f"magnitude noise (mean / std = {ratio:.3g}, expected {_CHI_RATIO[0]:.3g} to "
            f"{_CHI_RATIO[-1]:.3g}); pass noise_sigma explicitly")
    k = float(np.interp(ratio, _CHI_RATIO, _CHI_K))
    return std / np.sqrt(k - _chi_mean(k) ** 2)


def _marrow(norm, texture, inner, pixel_size, fat_suppressed):
    sign = 1.0 if fat_suppressed else -1.0  # marrow is dark (fat-suppressed) or bright
    values = sign * norm
    threshold = _otsu(values[inner])
    side = inner & (values < threshold)
    depth = ndimage.distance_transform_edt(side, sampling=pixel_size)
    if depth.max() <= 0:
        return np.zeros_like(inner), np.nan
    seed = np.unravel_index(np.argmax(depth), depth.shape)
    rows, cols = np.indices(norm.shape)
    around = side & (np.hypot((rows - seed[0]) * pixel_size[0],
                              (cols - seed[1]) * pixel_size[1]) < 0.8 * depth.max())
    level = float(np.median(values[around]))
    q10, q90 = np.percentile(values[around], [10, 90])
    upper = level + 3.0 * (q90 - q10) / 2.56
    texture_cut = 0.5 * (1.0 + float(np.median(texture[around])))
    marrow = inner & (values < upper) & (texture > texture_cut)
    marrow = ndimage.binary_opening(marrow, _disc(2.5, pixel_size))
    labels, n = ndimage.label(marrow)
    area = np.bincount(labels.ravel()) * pixel_size[0] * pixel_size[1]
    keep = [j for j, sl in enumerate(ndimage.find_objects(labels), start=1)
            if area[j] >= 150.0 and ndimage.distance_transform_edt(
                labels[sl] == j, sampling=pixel_size).max() >= 4.5]
    marrow = ndimage.binary_fill_holes(np.isin(labels, keep))
    if not marrow.any():
        return marrow, np.nan
    return marrow, float(np.median(norm[marrow]))


def _cartilage(norm, fg, marrow, level, fluid, pixel_size, articular_axis):
    """The bright band outside the marrow (module docstring, step 5)."""
    ring = fg & ~marrow & (_distance_mm(marrow, pixel_size) <= 3.0)
    band = ring & (norm > level + 0.3 * (fluid - level))
    band = ndimage.binary_opening(band, _disc(0.75, pixel_size))
    if articular_axis is not None:
        inside = ndimage.gaussian_filter(marrow.astype(np.float64), _sigma_px(2.0, pixel_size))
        normal = np.gradient(inside)[articular_axis] / pixel_size[articular_axis]
        across = np.gradient(inside)[1 - articular_axis] / pixel_size[1 - articular_axis]
        band &= np.abs(normal) >= np.abs(across)
        # The ends of each bone along the axis: the outer 30 % of its extent, on the side the
        # band faces (the trochlea and the posterior condyles, not the notch).
        bones, _ = ndimage.label(marrow)
        _, nearest = ndimage.distance_transform_edt(~marrow, sampling=pixel_size,
                                                    return_indices=True)
        owner = bones[nearest[0], nearest[1]]
        position = np.indices(marrow.shape)[articular_axis]
        keep = np.zeros_like(band)
        for j, sl in enumerate(ndimage.find_objects(bones), start=1):
            lo, hi = sl[articular_axis].start, sl[articular_axis].stop - 1
            margin = 0.3 * (hi - lo)
            # The outward normal points down the gradient of the smoothed marrow mask.
            keep |= (owner == j) & (((normal < 0) & (position >= hi - margin))
                                    | ((normal > 0) & (position <= lo + margin)))
        band &= keep
    labels, _ = ndimage.label(band)
    area = np.bincount(labels.ravel()) * pixel_size[0] * pixel_size[1]
    big = np.flatnonzero(area >= 8.0)
    return np.isin(labels, big[big > 0])


def candidate_regions(image, *, pixel_size=0.5, fat_suppressed: bool = True,
                      articular_axis=0, noise_sigma=None, _func="mskjax.sim.candidate_regions") -> CandidateRegions:
    """Candidate places for lesions in a real knee image, found from the image alone.

    Args:
        image: float ``(rows, cols)`` magnitude image, finite and non-negative in the body.
        pixel_size: mm per pixel, one number or ``(row, col)`` (default 0.5 mm, the axial
            knees of ``knee_axial_rss``).
        fat_suppressed: whether fat (and so marrow) is suppressed, as on the PD-weighted
            fat-suppressed axial knees and water-excited qDESS; False for T1 or PD without.
        articular_axis: keep the parts of the cartilage band that face along this image axis
            (outward normal within 45 degrees of it): 0 (default) for axial knees with rows
            running anterior to posterior, which leaves out the non-articular medial and
            lateral walls of the condyles and of the notch; None keeps the whole band.
        noise_sigma: the Gaussian noise level in image units; None estimates it from the
            background (module docstring, step 2).

    Returns:
        :class:`CandidateRegions`. The masks may be empty where the analysis finds nothing.
    """
    x = _check_image(image, _func)
    pixel_size = check_spacing(pixel_size, 2, _func, what="image", optional=False)
    if articular_axis not in (None, 0, 1) or isinstance(articular_axis, bool):
        raise ValueError(f"{_func}: articular_axis must be None, 0 or 1, got "
                         f"{articular_axis!r}")
    smooth = ndimage.gaussian_filter(x, 1.0)
    fg = _foreground(smooth, pixel_size)
    if fg.sum() < 100 or fg.all():
        raise ValueError(f"{_func}: found no body in the image (foreground of {int(fg.sum())} "
                         f"of {fg.size} pixels)")
    if noise_sigma is None:
        far = _distance_mm(fg, pixel_size) > 5.0
        if far.sum() < 500:
            raise ValueError(f"{_func}: too little background ({int(far.sum())} pixels more "
                             "than 5 mm from the body) to estimate the noise; pass noise_sigma")
        noise_sigma = _chi_sigma(x[far], _func)
    sigma = float(noise_sigma)
    wide = _sigma_px(20.0, pixel_size)
    bias = (ndimage.gaussian_filter(np.where(fg, smooth, 0.0), wide)
            / np.maximum(ndimage.gaussian_filter(fg.astype(np.float64), wide), 1e-6))
    bias = np.where(bias > 0, bias, np.max(bias))
    norm = ndimage.gaussian_filter(x, _sigma_px(1.0, pixel_size)) / bias
    inner = ndimage.binary_erosion(fg, _disc(2.0, pixel_size))
    residual = x - ndimage.uniform_filter(x, 3)
    scale = sigma if sigma > 0 else max(float(np.std(residual[fg])), 1e-30)
    texture = np.sqrt(ndimage.gaussian_filter(residual ** 2, _sigma_px(1.5, pixel_size))) / scale
    marrow, level = _marrow(norm, texture, inner, pixel_size, fat_suppressed)
    fluid = float(np.percentile((smooth / bias)[fg], 99))
    if fat_suppressed and marrow.any():
        cartilage = _cartilage(norm, fg, marrow, level, fluid, pixel_size, articular_axis)
        subchondral = marrow & (_distance_mm(cartilage, pixel_size) <= 6.0)
    else:
        cartilage = np.zeros_like(fg)
        subchondral = marrow & (_distance_mm(~marrow, pixel_size) <= 6.0)
    # Centres at least 1.5 mm inside the bone (the oedema itself reaches the plate).
    subchondral &= _distance_mm(~marrow, pixel_size) >= 1.5
    return CandidateRegions(
        foreground=fg, marrow=marrow, cartilage=cartilage, subchondral=subchondral,
        receive_bias=bias, noise_sigma=sigma,
        fluid_level=fluid, marrow_level=level,
        pixel_size=pixel_size)


def background_noise_sigma(image, *, pixel_size=0.5) -> float:
    """The Gaussian noise level (image units) of a magnitude image, from its background.

    The background (pixels more than 5 mm outside the body, found by Otsu's threshold) is
    taken as chi-distributed magnitude noise; its degrees of freedom follow from mean / std
    and its scale from the std (module docstring, step 2). ``image``: float ``(rows, cols)``.
    """
    func = "mskjax.sim.background_noise_sigma"
    x = _check_image(image, func)
    pixel_size = check_spacing(pixel_size, 2, func, what="image", optional=False)
    fg = _foreground(ndimage.gaussian_filter(x, 1.0), pixel_size)
    far = _distance_mm(fg, pixel_size) > 5.0
    if far.sum() < 500:
        raise ValueError(f"{func}: too little background ({int(far.sum())} pixels more than "
                         "5 mm from the body) to estimate the noise")
    return float(_chi_sigma(x[far], func))


def _check_image(image, func):
    """The image as float64 numpy after the checks every public function shares."""
    if not isinstance(image, np.ndarray) and not hasattr(image, "__array__"):
        raise TypeError(f"{func}: image must be an array, got {type(image).__name__}")
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{func}: image must be 2D (rows, cols), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{func}: image must be a real floating-point magnitude image, got "
                        f"{arr.dtype}; convert explicitly, e.g. image.astype(np.float32)")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{func}: image must be finite, got {bad} NaN or infinite values")
    if min(arr.shape) < 32:
        raise ValueError(f"{func}: image must be at least 32 x 32 pixels, got {arr.shape}")
    return arr.astype(np.float64)
