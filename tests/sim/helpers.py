"""Settings and measurements shared by the knee phantom tests."""

import numpy as np

#: The grid of most tests (a 160 mm field of view at 5 x 2.5 x 2.5 mm), shared so that one
#: compilation serves them all.
SHAPE = (32, 64, 64)


def column_thickness(mask, voxel, axis):
    """Mean run length (mm) of ``mask`` along ``axis`` over the columns that cross it, two
    voxels away from the borders: the thickness of a slab whose normal is close to ``axis``."""
    counts = mask[2:-2, 2:-2, 2:-2].sum(axis=axis)
    return float(np.mean(counts[counts > 0])) * voxel
