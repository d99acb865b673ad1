"""Cartilage thickness from a segmentation: nearest-surface distances from the bone-cartilage
interface to the articular surface.

Definitions (``mask`` the cartilage, ``bone_mask`` the bone it covers, both boolean arrays of
one shape, 2D or 3D; "adjacent" means sharing a face, inside the array):

- the *interface* is the set of cartilage voxels adjacent to a bone voxel;
- the *articular surface* is the set of cartilage voxels adjacent to a voxel that is neither
  cartilage nor bone (joint fluid, the other cartilage, meniscus, ...) and not adjacent to bone.
  Voxels outside the array count as neither: a crop through the cartilage adds no surface.
- the *thickness* at an interface voxel is the distance (mm) between its centre and the
  nearest articular-surface voxel centre of the same connected piece of cartilage (voxels
  touching by a face, an edge or a corner), plus the voxel-centre correction below. A piece
  without interface or without articular surface (e.g. a sliver cut off by the edge of the
  array) is left out.

The bone mask is required: from the cartilage mask alone the side that faces the bone cannot be
told from the side that faces the joint. For a label map such as the phantom's, pass
``mask=labels == 4`` and ``bone_mask=np.isin(labels, (1, 12))`` (femur and cortical bone).

Voxel-centre correction. Both surfaces are sampled by voxel centres inside the cartilage: the
interface voxel's centre lies up to one voxel above the bone boundary (half a voxel on average)
and the nearest articular voxel's centre up to one voxel below the articular boundary, so the
centre-to-centre distance underestimates the thickness by about one voxel along the normal
(exactly one voxel for a sheet aligned with the grid). The correction adds one voxel along the
measured direction ``u`` (the unit vector from the interface voxel to its nearest articular
voxel): ``max_k(spacing_k |u_k|)``, the spacing of the grid planes that face the direction
``u`` (``spacing_k`` for a sheet normal to axis ``k``, ``h / sqrt(2)`` for an isotropic grid
along a diagonal). The residual bias is a fraction of a voxel; keep voxels well below the
thickness (0.3 to 0.5 mm for 2 mm cartilage).

Near the edges of a cartilage plate the nearest articular voxel can lie on the plate's rim, so
the map falls off there, as any nearest-surface thickness does; the mean over a central region
(a crop, whose edges add no surface) avoids the rims.

numpy and scipy on the host (the numerical core); distances are exact nearest-neighbour
queries (``scipy.spatial.cKDTree``) between voxel centres scaled by ``spacing``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from .._checks import as_array, check_spacing


class CartilageThickness(NamedTuple):
    """Result of :func:`cartilage_thickness`.

    Fields:
        thickness_map: float32 ``(*spatial)``, thickness in mm at the interface voxels, 0
            elsewhere (``interface`` says where it is defined; never NaN).
        mean_thickness: float, the mean of the map over the interface voxels (mm).
        interface: bool ``(*spatial)``, the bone-cartilage interface voxels that were measured
            (those of pieces that also have an articular surface).
        articular_surface: bool ``(*spatial)``, the articular surface.
    """

    thickness_map: np.ndarray
    mean_thickness: float
    interface: np.ndarray
    articular_surface: np.ndarray


def _boolean(x, name, func):
    x = as_array(x, name, func)
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{func}: {name} must be a concrete array; cartilage_thickness runs on "
                        "the host and cannot be traced by jit or vmap")
    x = np.asarray(x)
    if x.dtype != np.bool_:
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 1)):
            raise TypeError(f"{func}: {name} must be a boolean mask (or integers 0/1), got "
                            f"{x.dtype}" + (f" with values in {x.min()}..{x.max()}"
                                            if np.issubdtype(x.dtype, np.integer) else ""))
        x = x.astype(bool)
    return x


def adjacent_to(region: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour in ``region`` (inside the array)."""
    out = np.zeros_like(region)
    for axis in range(region.ndim):
        n = region.shape[axis]
        low = (slice(None),) * axis + (slice(0, n - 1),)
        high = (slice(None),) * axis + (slice(1, n),)
        out[low] |= region[high]
        out[high] |= region[low]
    return out


def cartilage_thickness(mask: ArrayLike, *, spacing, bone_mask: ArrayLike) -> CartilageThickness:
    """Thickness map of a cartilage plate and its mean, in mm.

    Args:
        mask: boolean ``(*spatial)`` cartilage mask, 2D or 3D (e.g. ``labels == 4`` of
            :func:`mskjax.sim.knee_phantom`).
        spacing: voxel size in mm, one number per axis or one for all (keyword-only).
        bone_mask: boolean ``(*spatial)`` mask of the bone under the cartilage (keyword-only;
            e.g. the femur with its cortex for the femoral cartilage). It must not overlap
            ``mask``.

    Returns:
        :class:`CartilageThickness`; see the module docstring for the definitions and the
        voxel-centre correction.

    Raises:
        ValueError: for empty input, overlapping masks, or cartilage without an interface or
            without an articular surface (no thickness can be measured: the map would be
            empty and its mean undefined).
    """
    func = "mskjax.quant.cartilage_thickness"
    mask = _boolean(mask, "mask", func)
    bone = _boolean(bone_mask, "bone_mask", func)
    if mask.shape != bone.shape:
        raise ValueError(f"{func}: mask and bone_mask must have the same shape, got "
                         f"{mask.shape} and {bone.shape}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"{func}: mask must be 2D or 3D, got shape {mask.shape}")
    scale = np.asarray(check_spacing(spacing, mask.ndim, func, what="mask", optional=False))
    overlap = int(np.count_nonzero(mask & bone))
    if overlap:
        raise ValueError(f"{func}: mask and bone_mask overlap in {overlap} voxels; they must "
                         "be disjoint tissues")
    if not mask.any():
        raise ValueError(f"{func}: mask is empty; there is no cartilage to measure")
    interface = mask & adjacent_to(bone)
    articular = mask & adjacent_to(~mask & ~bone) & ~interface
    # Each connected piece of cartilage is measured on its own: a piece cut off by the edge of
    # the array, or a separate plate, never borrows another piece's articular surface.
    pieces, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    measured = np.zeros_like(interface)
    thickness = []
    for piece, box in enumerate(ndimage.find_objects(pieces), start=1):
        own = pieces[box] == piece
        piece_interface, piece_articular = interface[box] & own, articular[box] & own
        if not (piece_interface.any() and piece_articular.any()):
            continue
        offset = np.array([axis.start for axis in box])
        points = (np.argwhere(piece_interface) + offset) * scale
        tree = cKDTree((np.argwhere(piece_articular) + offset) * scale, balanced_tree=False,
                       compact_nodes=False)
        distance, nearest = tree.query(points, k=1, eps=0.0, p=2.0, workers=-1)
        direction = (tree.data[nearest] - points) / distance[:, None]
        measured[box] |= piece_interface
        thickness.append((piece_interface, box, distance + np.max(np.abs(direction) * scale,
                                                                   axis=1)))
    if not measured.any():
        what = ("no cartilage voxel touches bone_mask (no bone-cartilage interface); check "
                "that bone_mask is the bone under this cartilage") if not interface.any() else (
                "no piece of cartilage has both an interface with the bone and an articular "
                "surface (a voxel next to other tissue away from the bone)")
        raise ValueError(f"{func}: {what}")
    thickness_map = np.zeros(mask.shape, np.float32)
    for piece_interface, box, values in thickness:
        view = thickness_map[box]
        view[piece_interface] = values
    mean = float(np.concatenate([values for _, _, values in thickness]).mean())
    return CartilageThickness(thickness_map=thickness_map, mean_thickness=mean,
                              interface=measured, articular_surface=articular)
