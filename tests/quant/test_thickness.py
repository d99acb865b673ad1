"""cartilage_thickness against exact slabs, a spherical shell, brute force and the knee phantom's
drawn thicknesses."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mskjax.quant import CartilageThickness, cartilage_thickness
from mskjax.sim import knee_phantom


def brute_neighbours(region):
    """Voxels with a face neighbour in ``region`` inside the array, written with padding."""
    padded = np.pad(region, 1, constant_values=False)
    out = np.zeros_like(region)
    for axis in range(region.ndim):
        for shift in (-1, 1):
            index = [slice(1, -1)] * region.ndim
            index[axis] = slice(1 + shift, padded.shape[axis] - 1 + shift)
            out |= padded[tuple(index)]
    return out


def brute_thickness(mask, bone, spacing):
    """The module docstring's definition, all pairs, one connected piece assumed per call."""
    interface = mask & brute_neighbours(bone)
    articular = mask & brute_neighbours(~mask & ~bone) & ~interface
    spacing = np.asarray(spacing, np.float64)
    pi, pa = np.argwhere(interface) * spacing, np.argwhere(articular) * spacing
    diff = pa[None, :, :] - pi[:, None, :]
    dist = np.sqrt((diff ** 2).sum(-1))
    nearest = dist.argmin(axis=1)
    d = dist[np.arange(len(pi)), nearest]
    u = diff[np.arange(len(pi)), nearest] / d[:, None]
    out = np.zeros(mask.shape)
    out[interface] = d + np.max(np.abs(u) * spacing, axis=1)
    return out, interface, articular


def test_slab_aligned_with_each_axis_is_exact():
    spacing = (0.3, 0.5, 0.7)
    for axis in range(3):
        shape = [9, 8, 7]
        shape[axis] = 12
        labels = np.zeros(shape, np.int32)
        index = [slice(None)] * 3
        index[axis] = slice(0, 4)
        labels[tuple(index)] = 1   # bone
        index[axis] = slice(4, 9)
        labels[tuple(index)] = 2   # cartilage, 5 voxels thick; fluid above
        result = cartilage_thickness(labels == 2, spacing=spacing, bone_mask=labels == 1)
        assert isinstance(result, CartilageThickness)
        # Every interface voxel, the ones on the edges of the array too (a crop adds no
        # surface), measures exactly 5 voxels: 4 between centres plus the correction.
        assert result.interface.sum() == np.prod(shape) // 12
        np.testing.assert_allclose(result.thickness_map[result.interface], 5 * spacing[axis],
                                   rtol=1e-6)
        assert result.mean_thickness == pytest.approx(5 * spacing[axis], rel=1e-12)
        assert np.all(result.thickness_map[~result.interface] == 0)
        assert result.thickness_map.dtype == np.float32


def shell(spacing, radius=6.0, thickness=2.0, offset=(0.13, 0.29, 0.41)):
    """A ball of bone and a spherical shell of cartilage on it, sampled off-centre."""
    spacing = np.asarray(spacing, np.float64)
    n = np.ceil(2 * (radius + thickness + 1.5) / spacing).astype(int)
    axes = [(np.arange(k) - (k - 1) / 2) * h + o for k, h, o in zip(n, spacing, offset)]
    r = np.sqrt(sum(a ** 2 for a in np.meshgrid(*axes, indexing="ij")))
    return r <= radius, (r > radius) & (r <= radius + thickness)


@pytest.mark.parametrize("spacing", [(0.25, 0.25, 0.25), (0.2, 0.3, 0.5)])
def test_spherical_shell_every_orientation(spacing):
    bone, cartilage = shell(spacing)
    result = cartilage_thickness(cartilage, spacing=spacing, bone_mask=bone)
    values = result.thickness_map[result.interface]
    # The surface normals take every direction; the residual bias is a fraction of a voxel.
    assert result.mean_thickness == pytest.approx(2.0, rel=0.06)
    assert np.percentile(values, 5) > 1.6 and np.percentile(values, 95) < 2.2


def test_matches_brute_force_and_measures_pieces_apart(rng):
    spacing = (0.4, 0.7)
    labels = np.zeros((30, 26), np.int32)
    labels[18:, :13] = 1  # bone
    height = 4 + np.round(1.5 * np.sin(np.arange(13) / 2)).astype(int)
    for col, h in enumerate(height):
        labels[18 - h:18, col] = 2  # cartilage of varying height
    labels[18:, 16:] = 1  # a second bone, with its own plate
    labels[14:18, 16:22] = 2
    # A third piece in the corner, enclosed by bone and the edge of the array: an interface
    # but no articular surface. Measured with the others it would borrow the second plate's.
    labels[0:3, 21:26] = 1
    labels[0:2, 23:26] = 2
    mask, bone = labels == 2, labels == 1
    corner = np.zeros_like(mask)
    corner[0:2, 23:26] = True
    result = cartilage_thickness(mask, spacing=spacing, bone_mask=bone)
    expected = np.zeros(mask.shape)
    for cols in (slice(0, 14), slice(14, 26)):
        sub, interface, articular = brute_thickness(mask[:, cols] & ~corner[:, cols],
                                                    bone[:, cols], spacing)
        expected[:, cols] = sub
        np.testing.assert_array_equal(result.interface[:, cols], interface)
        np.testing.assert_array_equal(result.articular_surface[:, cols], articular)
    np.testing.assert_allclose(result.thickness_map, expected, rtol=1e-6)
    assert not result.interface[corner].any() and np.all(result.thickness_map[corner] == 0)
    assert result.mean_thickness == pytest.approx(expected[result.interface].mean(), rel=1e-6)
    # Away from the steps of the varying height (the nearest articular voxel can lie on a
    # step's wall), the map is the column height: 5 and 3 voxels of 0.4 mm.
    assert height[2:5].tolist() == [5, 5, 5] and height[7:12].tolist() == [3] * 5
    np.testing.assert_allclose(result.thickness_map[17, 2:5], 2.0, rtol=1e-6)
    np.testing.assert_allclose(result.thickness_map[17, 7:12], 1.2, rtol=1e-6)


def joint_centre(key, anatomy, side):
    """Scanner coordinates of the femorotibial contact below a condyle's centre: the middle of
    the cartilage voxels on a vertical line through it."""
    centre = np.asarray(anatomy.condyle_centres)[side]
    column = np.asarray(knee_phantom(key, shape=(1, 321, 1), voxel_size=0.25,
                                     centre=tuple(centre)).labels)[0, :, 0]
    rows = np.flatnonzero((column == 4) | (column == 5))
    assert rows.size > 10
    y = ((321 - 1) / 2 - rows.mean()) * 0.25 + centre[1]  # y falls with the row index
    return (float(centre[0]), float(y), float(centre[2]))


@pytest.mark.parametrize("seed", [3, 7])
def test_phantom_central_regions_within_ten_percent_of_the_drawn_thickness(seed):
    """Femoral and tibial cartilage of both compartments, in an 8 x 16 x 8 mm crop at 0.3 mm
    around the contact point (the central weight-bearing regions; the crop's edges add no
    surface, so the plates' rims stay out)."""
    key = jax.random.key(seed)
    anatomy = knee_phantom(key, shape=(8, 8, 8)).anatomy
    for side in (0, 1):
        labels = np.asarray(knee_phantom(key, shape=(27, 55, 27), voxel_size=0.3,
                                         centre=joint_centre(key, anatomy, side)).labels)
        for label, bones, drawn in ((4, (1, 12), anatomy.femoral_cartilage_thickness[side]),
                                    (5, (2, 12), anatomy.tibial_cartilage_thickness[side])):
            result = cartilage_thickness(labels == label, spacing=0.3,
                                         bone_mask=np.isin(labels, bones))
            assert result.interface.sum() > 400
            assert result.mean_thickness == pytest.approx(float(drawn), rel=0.10), (side, label)


def test_bad_input():
    func = "mskjax.quant.cartilage_thickness"
    labels = np.zeros((6, 7), np.int32)
    labels[4:] = 1
    labels[2:4] = 2
    mask, bone = labels == 2, labels == 1
    with pytest.raises(ValueError, match=f"{func}: mask and bone_mask overlap in 14 voxels"):
        cartilage_thickness(mask, spacing=1.0, bone_mask=mask)
    with pytest.raises(ValueError, match=f"{func}: mask and bone_mask must have the same shape"):
        cartilage_thickness(mask, spacing=1.0, bone_mask=bone.T)
    with pytest.raises(ValueError, match=f"{func}: mask is empty"):
        cartilage_thickness(labels == 3, spacing=1.0, bone_mask=bone)
    with pytest.raises(ValueError, match=f"{func}: no cartilage voxel touches bone_mask"):
        cartilage_thickness(mask, spacing=1.0, bone_mask=np.zeros_like(bone))
    with pytest.raises(ValueError, match=f"{func}: no piece of cartilage has both"):
        cartilage_thickness(mask, spacing=1.0, bone_mask=~mask)  # no other tissue
    with pytest.raises(ValueError, match=rf"{func}: spacing must have one value per axis \(2 "
                                         r"for a 2-D mask\)"):
        cartilage_thickness(mask, spacing=(1.0, 1.0, 1.0), bone_mask=bone)
    with pytest.raises(ValueError, match=f"{func}: spacing must be finite and positive"):
        cartilage_thickness(mask, spacing=(1.0, 0.0), bone_mask=bone)
    with pytest.raises(TypeError, match=f"{func}: mask must be a boolean mask"):
        cartilage_thickness(mask.astype(np.float32), spacing=1.0, bone_mask=bone)
    with pytest.raises(TypeError, match=f"{func}: bone_mask must be a boolean mask .* values "
                                        "in 0..2"):
        cartilage_thickness(mask, spacing=1.0, bone_mask=labels)
    with pytest.raises(ValueError, match=f"{func}: mask must be 2D or 3D"):
        cartilage_thickness(mask[0], spacing=1.0, bone_mask=bone[0])
    with pytest.raises(TypeError, match="bone_mask"):
        cartilage_thickness(mask, spacing=1.0)  # the bone is required
    # 0/1 integers are accepted as masks.
    result = cartilage_thickness(mask.astype(np.uint8), spacing=(0.5, 2.0),
                                 bone_mask=bone.astype(np.int64))
    np.testing.assert_allclose(result.thickness_map[result.interface], 1.0)  # 2 rows of 0.5
