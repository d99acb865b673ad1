"""The numerical core must not import flax or optax (DESIGN.md section 1)."""

import subprocess
import sys

CORE = ["mskjax.fourier", "mskjax.linop", "mskjax.sampling", "mskjax.coils", "mskjax.recon",
        "mskjax.metrics"]


def test_numerical_core_imports_neither_flax_nor_optax():
    code = "import sys\n" + "".join(f"import {m}\n" for m in CORE) + (
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'torch'))\n"
        "print(','.join(bad))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_public_names_are_listed():
    import importlib
    for name in CORE + ["mskjax.pipeline", "mskjax.sim"]:
        module = importlib.import_module(name)
        assert module.__all__, name
        for attr in module.__all__:
            assert hasattr(module, attr), f"{name}.{attr}"
