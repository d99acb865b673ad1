"""File formats and data sets: fastMRI HDF5, BART cfl, NIfTI, DICOM, data specs, loaders.

Conventions:

- Readers return numpy arrays on the host (I/O is not jitted); arrays keep the file's layout,
  documented per format: fastMRI ``kspace`` ``(slices, coils, rows, cols)`` complex64 (or
  ``(slices, coils, *trajectory)`` with a ``trajectory`` for non-Cartesian k-space), BART
  arrays in their header's dimensions (Fortran order), BART trajectories as mskjax coordinates
  ``(*trajectory, ndim)`` in cycles per field of view, NIfTI ``(x, y, z[, t])`` with the affine
  in mm, DICOM series ``(slices, rows, cols)`` sorted along the slice normal.
- Writers are atomic: they write a temporary file beside the target and rename it, so a failed
  write leaves neither a partial file nor a changed target. :func:`atomic_path` gives the same
  guarantee to a user's own writer. Writers of a folder (``make_*_set``,
  :func:`write_classification_set`) refuse a non-empty one unless ``overwrite=True``, build the
  set beside it and rename it when complete; readers of a set read only what its manifest lists.
- Errors name the function, the file, the key and the problem.
- ``data_specs/`` holds one JSON spec per data set; :func:`validate` checks a file against one.
"""

from ._atomic import atomic_path
from ._cfl import cfl_dims, read_cfl, write_cfl
from ._dicom import (DicomImage, DicomSeries, DicomSeriesSummary, QDessParameters,
                     list_dicom_series, read_dicom, read_dicom_series, read_qdess_parameters)
from ._cls_sim import make_classification_set
from ._cls_set import (read_classification_manifest, read_classification_set,
                       write_classification_set)
from ._fastmri import (FastMRIFile, FastMRIHeader, ismrmrd_header_xml, parse_ismrmrd_header,
                       read_fastmri, write_fastmri)
from ._kspace_set import centre_crop_or_pad, make_kspace_set
from ._loader import fastmri_batches, fastmri_slices, manifest_files
from ._nifti import Volume, read_labels, read_nifti, write_nifti
from ._seg_set import (make_segmentation_set, phantom_affine, read_segmentation_set,
                       segmentation_pairs)
from ._trajectory import (read_bart_kspace, read_bart_trajectory, write_bart_kspace,
                          write_bart_trajectory)
from ._validate import Mismatch, ValidationReport, load_spec, spec_names, validate

__all__ = [
    "centre_crop_or_pad", "manifest_files",
    "read_fastmri", "write_fastmri", "FastMRIFile", "FastMRIHeader", "ismrmrd_header_xml",
    "parse_ismrmrd_header", "read_cfl", "write_cfl", "cfl_dims", "read_nifti", "write_nifti",
    "read_labels", "Volume", "read_dicom", "read_dicom_series", "list_dicom_series", "DicomImage",
    "DicomSeries", "DicomSeriesSummary", "read_qdess_parameters", "QDessParameters",
    "validate", "load_spec", "spec_names",
    "ValidationReport", "Mismatch", "make_kspace_set", "fastmri_batches", "fastmri_slices",
    "atomic_path", "make_segmentation_set", "read_segmentation_set", "segmentation_pairs",
    "phantom_affine", "write_classification_set", "read_classification_set",
    "read_classification_manifest", "make_classification_set",
    "read_bart_trajectory", "write_bart_trajectory", "read_bart_kspace", "write_bart_kspace",
]
