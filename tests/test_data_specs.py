"""The data specs describe the shared files as they are."""

import json
from pathlib import Path

import numpy as np
import pytest

# The other formats' specs are checked by tests/io/test_validate.py through their readers.
SPECS = [p for p in sorted((Path(__file__).parents[1] / "data_specs").glob("*.json"))
         if json.loads(p.read_text())["format"] == "npz"]


def test_there_are_npz_specs():
    assert len(SPECS) >= 2


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_npz_spec_matches_shared_file(spec_path, shared_data):
    spec = json.loads(spec_path.read_text())
    path = shared_data / spec.get("path", f"{spec['name']}/{spec['name']}.npz")
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(spec["arrays"])
        for key, want in spec["arrays"].items():
            array = archive[key]
            assert list(array.shape) == want["shape"], key
            kind = "str" if array.dtype.kind == "U" else str(array.dtype)
            assert kind == want["dtype"], key
            assert len(want["axes"]) == array.ndim, key
