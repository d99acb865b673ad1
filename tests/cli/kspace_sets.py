"""The tiny k-space set of the training-command tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mskjax.io import make_kspace_set
from mskjax.sim import knee_section


def tiny_kspace_set(root: Path) -> Path:
    """Four shifted 40 x 32 knee sections as subjects a-d, 4 coils, split by
    `make_kspace_set` into train/ and val/; returns the set's folder."""
    base = np.asarray(knee_section((40, 32)))
    rng = np.random.default_rng(0)
    images = np.stack([np.roll(base, s, axis=1) * rng.uniform(0.8, 1.2) for s in range(4)])
    np.savez(root / "images.npz", images=images.astype(np.float32),
             subject=np.array(["a", "b", "c", "d"]))
    make_kspace_set(root / "images.npz", root / "set", num_coils=4, seed=0,
                    recon_size=(40, 32), progress=False)
    return root / "set"
