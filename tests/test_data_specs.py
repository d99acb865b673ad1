"""The data specs describe the shared files as they are."""

import json
from pathlib import Path

import numpy as np
import pytest

SPECS = sorted((Path(__file__).parents[1] / "data_specs").glob("*.json"))


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_npz_spec_matches_shared_file(spec_path, shared_data):
    spec = json.loads(spec_path.read_text())
    if spec["format"] != "npz":
        pytest.skip(f"{spec['format']} specs are checked by their readers")
    path = shared_data / spec.get("path", f"{spec['name']}/{spec['name']}.npz")
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(spec["arrays"])
        for key, want in spec["arrays"].items():
            array = archive[key]
            assert list(array.shape) == want["shape"], key
            kind = "str" if array.dtype.kind == "U" else str(array.dtype)
            assert kind == want["dtype"], key
            assert len(want["axes"]) == array.ndim, key
