"""Simulated data: a procedural 3D knee phantom with exact labels, MR contrasts from the signal
equations, pathologies with ground-truth masks, AP radiographs with osteoarthritis grades, and a
built-in 2D knee cross-section for demos.

For grading: :func:`knee_radiograph` spreads, on request, each Kellgren-Lawrence grade's
features over ranges that overlap the adjacent grades and adds positioning, blur, scatter,
exposure and detector noise (:data:`REALISTIC_RADIOGRAPH`); :func:`radiograph_set` makes a
normalised set of them with the grades and the drawn features.

For training segmentation: :func:`render` adds, on request, partial volume, receive-coil bias,
Gibbs ringing, Rician noise at a stated SNR and trabecular marrow texture
(:data:`REALISTIC_RENDERING` holds realistic settings); :func:`jitter_parameters` varies the
tissue contrast between subjects, :func:`elastic_deformation` their shape, and
:func:`segmentation_example` draws one complete training subject from a key.

For detection: ``knee_phantom(..., conspicuity=...)`` scales a pathology's size and contrast
from invisible to obvious; :func:`lesion_detection_example` draws a 2D slice through a lesion
(or the same place without it), :func:`multiview_example` three multi-slice planes of one knee,
and :func:`detection_set` a whole set from a seed, split by subject.

For MR-to-pseudo-CT synthesis: :func:`pseudo_ct_example` draws one subject's MR contrasts
(channels-last) with the CT in Hounsfield units and the CT classes of the same deformed knee;
:func:`mean_hounsfield_per_class` and :func:`pseudo_ct_from_classes` make the class-assignment
baseline.

For detection on real scans: :func:`insert_lesion` blends a cartilage defect, marrow oedema
or meniscal cleft into a real magnitude image, with its exact mask and the image's own noise
level, at a place that :func:`candidate_regions` finds in the image (or in a given region);
:func:`real_lesion_set` makes positives and their sham negatives from a stack of real images,
and :func:`split_by_subject` splits them by subject.

For CT: :func:`attenuation_map` gives the knee's linear attenuation (1/cm), the object of
simulated CT and the target of pseudo-CT; :func:`low_dose_sinogram` adds the Poisson photon
noise of a scan at a stated fraction of the dose to its projections
(:class:`mskjax.linop.Radon`).

Conventions (see ``mskjax.sim._phantom``): phantom volumes are ``(left-right,
superior-inferior, anterior-posterior)``, lengths in mm, times in ms, angles in degrees, images
float32, labels int32.
"""

from ._anatomy import JOINT_GAP_MM, KL_GRADE_TABLE, KneeAnatomy
from ._ct import (CT_TISSUE_CLASSES, WATER_ATTENUATION_PER_CM, attenuation_from_hounsfield,
                  attenuation_map, ct_tissue_classes, hounsfield_units)
from ._contrast import (CONTRASTS, fast_spin_echo, multi_echo_spin_echo, qdess, render,
                        spoiled_gradient_echo, t1rho_prepared)
from ._deform import elastic_deformation
from ._detection import (DETECTION_PATHOLOGIES, MINIMUM_AREA_MM2, PLANES, DetectionExample,
                         MultiViewExample, detection_set, lesion_detection_example,
                         multiview_example)
from ._example import SegmentationExample, segmentation_example
from ._geometry import KNEE_LABELS
from ._insertion import LESION_KINDS, InsertedLesion, insert_lesion
from ._jitter import jitter_parameters
from ._knee_regions import CandidateRegions, background_noise_sigma, candidate_regions
from ._knee_section import TISSUE_INTENSITY, knee_section
from ._lesion_set import LesionSet, real_lesion_set, split_by_subject
from ._low_dose import ZERO_COUNT_READING, low_dose_sinogram
from ._kspace import SimulatedKspace, simulate_kspace, smooth_phase
from ._pathology import (DEFAULT_PATHOLOGY_PROBABILITIES, MENISCAL_TEAR_KINDS, PATHOLOGY_SITES,
                         KneePathology)
from ._phantom import AXES, KneePhantom, knee_phantom
from ._radiograph import KneeRadiograph, knee_radiograph
from ._radiograph_realism import REALISTIC_RADIOGRAPH
from ._radiograph_set import radiograph_set
from ._realism import REALISTIC_RENDERING
from ._synthesis import (PSEUDO_CT_CONTRASTS, PseudoCTExample, mean_hounsfield_per_class,
                         pseudo_ct_example, pseudo_ct_from_classes)
from ._thick_slice import thick_slice
from ._tissues import (FAT_RELAXATION, LESION_RIM_CHANGE, OEDEMA_CHANGE, TISSUE_PARAMETERS,
                       TissueMaps, tissue_maps)
from ._xray import ATTENUATION_PER_CM

__all__ = [
    "simulate_kspace",
    "SimulatedKspace",
    "smooth_phase",
    "knee_section",
    "TISSUE_INTENSITY",
    "knee_phantom",
    "KneePhantom",
    "KneeAnatomy",
    "KneePathology",
    "KNEE_LABELS",
    "AXES",
    "KL_GRADE_TABLE",
    "JOINT_GAP_MM",
    "PATHOLOGY_SITES",
    "DEFAULT_PATHOLOGY_PROBABILITIES",
    "MENISCAL_TEAR_KINDS",
    "TISSUE_PARAMETERS",
    "FAT_RELAXATION",
    "OEDEMA_CHANGE",
    "LESION_RIM_CHANGE",
    "TissueMaps",
    "tissue_maps",
    "CONTRASTS",
    "render",
    "spoiled_gradient_echo",
    "fast_spin_echo",
    "multi_echo_spin_echo",
    "qdess",
    "t1rho_prepared",
    "REALISTIC_RENDERING",
    "jitter_parameters",
    "elastic_deformation",
    "segmentation_example",
    "SegmentationExample",
    "lesion_detection_example",
    "DetectionExample",
    "multiview_example",
    "MultiViewExample",
    "detection_set",
    "DETECTION_PATHOLOGIES",
    "MINIMUM_AREA_MM2",
    "PLANES",
    "knee_radiograph",
    "KneeRadiograph",
    "REALISTIC_RADIOGRAPH",
    "radiograph_set",
    "ATTENUATION_PER_CM",
    "attenuation_map",
    "hounsfield_units",
    "attenuation_from_hounsfield",
    "ct_tissue_classes",
    "CT_TISSUE_CLASSES",
    "WATER_ATTENUATION_PER_CM",
    "pseudo_ct_example",
    "PseudoCTExample",
    "PSEUDO_CT_CONTRASTS",
    "mean_hounsfield_per_class",
    "pseudo_ct_from_classes",
    "insert_lesion",
    "InsertedLesion",
    "LESION_KINDS",
    "candidate_regions",
    "CandidateRegions",
    "background_noise_sigma",
    "real_lesion_set",
    "LesionSet",
    "split_by_subject",
    "thick_slice",
    "low_dose_sinogram",
    "ZERO_COUNT_READING",
]
