"""The DOSMA half of ``benchmarks/quant_t2.py``, run by DOSMA's own Python (its environment needs
numpy<2 and pandas<2.3; ``make dosma-env`` builds it in benchmarks/.venv-dosma).

Usage: ``python quant_t2_dosma.py WORKDIR``. WORKDIR holds ``inputs.npz`` (``dess`` (2, slices,
rows, cols), ``t1rho`` (4, slices, rows, cols), ``t1rho_mask`` (slices, rows, cols) bool,
``tsl`` (4,), ``t1rho_slices`` (k,) int: the slices to fit) and ``settings.json`` (the qDESS
sequence parameters). Writes ``dosma_t2.npy``, ``dosma_t1rho.npy`` (the fitted slices, 0 where
DOSMA rejects a fit), ``dosma_t1rho_r2.npy`` and ``dosma.json`` (timings and versions).

DOSMA's settings are its own defaults (``QDess.generate_t2_map``; ``CubeQuant``'s
``MonoExponentialFit`` with its bounds (0, 500) ms, polyfit start, r2 threshold from its
preferences) except the rounding, which is turned off (``decimals=None``,
``decimal_precision=None``) so that agreement is not limited by it, and ``nan_to_num=None`` for
T2 so that rejected voxels are NaN rather than 0.
"""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(workdir: Path) -> None:
    import dosma
    from dosma.core.fitting import MonoExponentialFit
    from dosma.core.med_volume import MedicalVolume
    from dosma.scan_sequences.mri import cube_quant
    from dosma.scan_sequences.mri.qdess import QDess

    data = np.load(workdir / "inputs.npz")
    settings = json.loads((workdir / "settings.json").read_text())
    affine = np.eye(4)

    # qDESS T2: DOSMA's volumes are (rows, cols, slices)
    dess = np.transpose(data["dess"], (0, 2, 3, 1))
    scan = QDess([MedicalVolume(dess[0], affine), MedicalVolume(dess[1], affine)])
    times = []
    for _ in range(settings["repeats"]):
        start = time.perf_counter()
        t2 = scan.generate_t2_map(gl_area=settings["gl_area"], tg=settings["tg"],
                                  tr=settings["tr"], te=settings["te"],
                                  alpha=settings["flip_angle"], t1=settings["t1"],
                                  diffusivity=settings["diffusivity"], decimals=None,
                                  nan_to_num=None)
        times.append(time.perf_counter() - start)
    np.save(workdir / "dosma_t2.npy", np.transpose(t2.volumetric_map.volume, (2, 0, 1)))

    # T1rho: the settings of CubeQuant.generate_t1_rho_map, without rounding
    chosen = data["t1rho_slices"]
    t1rho = np.transpose(data["t1rho"][:, chosen], (0, 2, 3, 1))
    mask = np.transpose(data["t1rho_mask"][chosen], (1, 2, 0))
    fitter = MonoExponentialFit(
        bounds=(cube_quant.__T1_RHO_LOWER_BOUND__, cube_quant.__T1_RHO_UPPER_BOUND__),
        tc0="polyfit", decimal_precision=None, num_workers=0, verbose=False)
    start = time.perf_counter()
    tc, r2 = fitter.fit(data["tsl"], [MedicalVolume(v, affine) for v in t1rho],
                        mask=MedicalVolume(mask.astype(np.uint8), affine))
    fit_seconds = time.perf_counter() - start
    np.save(workdir / "dosma_t1rho.npy", np.transpose(tc.volume, (2, 0, 1)))
    np.save(workdir / "dosma_t1rho_r2.npy", np.transpose(r2.volume, (2, 0, 1)))

    from dosma.defaults import preferences

    report = {
        "t2_seconds": times,
        "t2_slices": int(dess.shape[-1]),
        "t1rho_seconds": fit_seconds,
        "t1rho_slices": [int(k) for k in chosen],
        "t1rho_voxels_fitted": int(mask.sum()),
        "t1rho_settings": {"bounds_ms": [cube_quant.__T1_RHO_LOWER_BOUND__,
                                         cube_quant.__T1_RHO_UPPER_BOUND__],
                           "r2_threshold": preferences.fitting_r2_threshold,
                           "tc0": "polyfit", "curve_fit": "scipy, maxfev 100, ftol 1e-5"},
        "versions": {"dosma": dosma.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "platform": platform.platform(),
    }
    (workdir / "dosma.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
