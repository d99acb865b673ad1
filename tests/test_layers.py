"""The layer order over the real import graph (DESIGN.md sections 1, 2 and 9).

Every module under ``mskjax/`` is parsed with :mod:`ast`; each import, relative or absolute, at
module level or inside a function, is resolved to the ``mskjax`` module it names and checked:

- a module of subpackage P imports only subpackages of a lower layer, its own package, and the
  explicitly allowed edges within a layer (``io`` may import ``sim``, not the other way round);
- ``mskjax._checks`` (the shared validation helpers) and the top-level ``mskjax`` package
  (``__version__``) may be imported from anywhere; they themselves import no subpackage;
- nobody imports a private module or a private name (``_name``) of *another* subpackage: the
  public surface of a package is what its ``__init__`` exports.

The numerical core also must not import flax, optax or torch, checked both statically (every
import statement, lazy ones included) and at run time (``sys.modules`` after importing it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "mskjax"

# Lowest first; packages in one tuple share a layer. Packages that do not exist yet are listed
# so that the order is fixed before they are written.
LAYERS = [
    ("fourier",), ("linop",), ("solvers",), ("sampling",), ("coils",), ("recon",), ("metrics",),
    ("quant",), ("refine",), ("nets",), ("losses",), ("train",), ("pipeline",), ("io", "sim"),
    ("cli",),
]
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
# Edges allowed within one layer: (importer, imported).
SAME_LAYER_ALLOWED = {("io", "sim")}
# Importable from every module; they import no subpackage themselves.
BASE_MODULES = {"mskjax", "mskjax._checks"}
# Entry points above every layer.
ENTRY_POINTS = {"mskjax.__main__"}

# The numerical core (above the flax / optax line).
CORE = ["fourier", "linop", "solvers", "sampling", "coils", "recon", "metrics", "quant",
        "refine"]
FORBIDDEN_IN_CORE = ("flax", "optax", "torch")


class Violation(NamedTuple):
    module: str   # the importing module, e.g. "mskjax.pipeline._stages"
    line: int
    imported: str  # the imported name, resolved, e.g. "mskjax.linop._mri.check_mask"
    reason: str

    def __str__(self):
        return f"{self.module}:{self.line}: imports {self.imported} ({self.reason})"


class Import(NamedTuple):
    line: int
    target: str   # the module or attribute imported, as a dotted absolute name


def module_name(path: Path, root: Path) -> str:
    """``root/linop/_mri.py`` -> ``mskjax.linop._mri`` (``root`` is the package folder)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> list[Import]:
    """Every import in ``source`` as absolute dotted names (relative imports resolved).

    ``from pkg import name`` yields ``pkg.name``; whether that is a module or an attribute does
    not matter to the checks below, which look at the path's components.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top")
                base = base[:len(base) - (node.level - 1)]
                if node.module:
                    base += node.module.split(".")
                origin = ".".join(base)
            else:
                origin = node.module
            if origin == "__future__":
                continue
            found += [Import(node.lineno, origin if alias.name == "*" else f"{origin}.{alias.name}")
                      for alias in node.names]
    return found


def _owner(name: str, subpackages: set[str]) -> str | None:
    """The subpackage a dotted ``mskjax`` name belongs to, or None for the top level."""
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in subpackages:
        return parts[1]
    return None


def _reasons(module: str, target: str, subpackages: set[str], top_modules: set[str]) -> list[str]:
    """Why ``module`` may not import ``target`` (dotted ``mskjax`` names); [] if it may.

    ``top_modules`` are the names of the modules directly in the package folder (``_checks``,
    ``__main__``, ...); any other name directly under ``mskjax`` is an attribute of the
    top-level package, such as ``__version__``.
    """
    if module in ENTRY_POINTS:
        return []
    importer, imported = _owner(module, subpackages), _owner(target, subpackages)
    if imported is None:  # the top-level package, one of its attributes, or a top module
        head = ".".join(target.split(".")[:2])
        if head in BASE_MODULES or head.partition(".")[2] not in top_modules:
            return []
        return [f"{head} is neither a subpackage nor one of the base modules "
                f"{sorted(BASE_MODULES)}"]
    if importer is None:
        return [f"{module} is a base module and must not import a subpackage"]
    if importer == imported:
        return []
    reasons = [f"{part} is private to mskjax.{imported}; import its public name from "
               f"mskjax.{imported}"
               for part in target.split(".")[2:]
               if part.startswith("_") and not part.startswith("__")][:1]
    if importer not in RANK:
        reasons.append(f"{importer} is not in the layer table")
    elif imported not in RANK:
        reasons.append(f"{imported} is not in the layer table")
    elif RANK[imported] > RANK[importer] or (
            RANK[imported] == RANK[importer] and (importer, imported) not in SAME_LAYER_ALLOWED):
        reasons.append(f"{importer} (layer {RANK[importer]}) must not import {imported} "
                       f"(layer {RANK[imported]})")
    return reasons


def check_imports(root: Path) -> list[Violation]:
    """All layer violations of the package in folder ``root`` (a folder named ``mskjax``)."""
    top = root.name
    subpackages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    top_modules = {p.stem for p in root.glob("*.py")} - {"__init__"}
    violations = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for line, target in imports_of(path.read_text(), module, path.name == "__init__.py"):
            if target == top or target.startswith(top + "."):  # else third party or stdlib
                violations += [Violation(module, line, target, reason)
                               for reason in _reasons(module, target, subpackages, top_modules)]
    return violations


def core_imports_of_forbidden(root: Path) -> list[Violation]:
    """Imports of flax, optax or torch anywhere in the numerical core, lazy ones included."""
    violations = []
    for package in CORE:
        if not (root / package).is_dir():
            continue  # not written yet
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            for line, target in imports_of(path.read_text(), module,
                                           path.name == "__init__.py"):
                if target.split(".")[0] in FORBIDDEN_IN_CORE:
                    violations.append(Violation(module, line, target,
                                                "the numerical core imports no flax, optax "
                                                "or torch"))
    return violations


def _report(violations):
    return f"{len(violations)} layer violation(s):\n" + "\n".join(map(str, violations))


# --- the real package -------------------------------------------------------------------------


def test_every_subpackage_is_in_the_layer_table():
    subpackages = sorted(p.name for p in PACKAGE_ROOT.iterdir() if (p / "__init__.py").is_file())
    assert {"fourier", "linop", "sampling", "pipeline", "io", "cli"} <= set(subpackages)
    assert [p for p in subpackages if p not in RANK] == []


def test_layer_order_over_the_import_graph():
    violations = check_imports(PACKAGE_ROOT)
    if violations:
        pytest.fail(_report(violations), pytrace=False)


def test_numerical_core_has_no_flax_optax_or_torch_import_statement():
    violations = core_imports_of_forbidden(PACKAGE_ROOT)
    if violations:
        pytest.fail(_report(violations), pytrace=False)


def test_numerical_core_imports_neither_flax_nor_optax():
    # A package that is not written yet is skipped; one that exists must import.
    code = textwrap.dedent(f"""
        import importlib, importlib.util, sys
        done = []
        for name in {CORE!r}:
            if importlib.util.find_spec("mskjax." + name) is not None:
                importlib.import_module("mskjax." + name)
                done.append(name)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN_IN_CORE!r})
        print(",".join(done))
        print(",".join(bad))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    done, bad = result.stdout.splitlines()
    assert {"fourier", "linop", "sampling", "coils", "recon", "metrics"} <= set(done.split(","))
    assert bad == "", f"importing {done} pulled in {bad}"


def test_public_names_are_listed():
    names = [p.name for p in sorted(PACKAGE_ROOT.iterdir())
             if (p / "__init__.py").is_file() and p.name != "cli"]
    assert len(names) >= 8
    for name in names:
        module = importlib.import_module(f"mskjax.{name}")
        assert module.__all__, name
        missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
        assert not missing, f"mskjax.{name}.__all__ lists missing names {missing}"
        assert len(set(module.__all__)) == len(module.__all__), f"mskjax.{name}: duplicates"


# --- the checker itself -----------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]):
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


@pytest.fixture
def toy(tmp_path):
    """A synthetic ``mskjax`` with one allowed and one forbidden import of each kind."""
    root = tmp_path / "mskjax"
    _write(root, {
        "__init__.py": "__version__ = '0'\n",
        "__main__.py": "from .cli import main\n",
        "_checks.py": "import numpy\nfrom .linop import Sense\n",
        "fourier/__init__.py": "from ._fft import fftnc\n",
        "fourier/_fft.py": """\
            from .._checks import check_ndim, _is_concrete
            from ..linop import Sense
            from .. import __version__
            """,
        "linop/__init__.py": "from ._mri import Sense, check_mask\n",
        "linop/_mri.py": """\
            from ..fourier import fftnc
            import mskjax.fourier._fft
            def lazy():
                import mskjax.cli
            """,
        "pipeline/__init__.py": "",
        "pipeline/_stages.py": """\
            from ..linop._mri import check_mask
            from ..linop import Sense, _private
            from ..linop import check_mask
            from mskjax.linop import Sense as S
            from .. import __version__, linop
            from . import _stage
            """,
        "pipeline/_stage.py": "",
        "sim/__init__.py": "from ..io import read\n",
        "io/__init__.py": "from ..sim import phantom\nfrom ..pipeline import Sample\n",
        "extra/__init__.py": "from ..fourier import fftnc\n",
        "cli/__init__.py": "from ..io import read\nfrom .. import sim\n"
                           "from ..sim._kspace import s\nimport mskjax.__main__\n",
    })
    return root


def test_imports_are_resolved(toy):
    source = (toy / "pipeline/_stages.py").read_text()
    targets = [t for _, t in imports_of(source, "mskjax.pipeline._stages", False)]
    assert targets == [
        "mskjax.linop._mri.check_mask", "mskjax.linop.Sense", "mskjax.linop._private",
        "mskjax.linop.check_mask", "mskjax.linop.Sense", "mskjax.__version__", "mskjax.linop",
        "mskjax.pipeline._stage",
    ]
    assert imports_of("from . import x", "mskjax.linop", True) == [Import(1, "mskjax.linop.x")]
    with pytest.raises(ValueError, match="beyond the top"):
        imports_of("from ... import x", "mskjax.linop._mri", False)


def test_checker_finds_each_violation(toy):
    found = {(v.module, v.line, v.imported) for v in check_imports(toy)}
    assert found == {
        ("mskjax._checks", 2, "mskjax.linop.Sense"),              # the base imports up
        ("mskjax.fourier._fft", 2, "mskjax.linop.Sense"),          # a lower layer imports up
        ("mskjax.linop._mri", 2, "mskjax.fourier._fft"),           # another package's private
        ("mskjax.linop._mri", 4, "mskjax.cli"),                    # lazy and absolute, upward
        ("mskjax.pipeline._stages", 1, "mskjax.linop._mri.check_mask"),
        ("mskjax.pipeline._stages", 2, "mskjax.linop._private"),   # a private name
        ("mskjax.sim", 1, "mskjax.io.read"),                       # same layer, wrong way
        ("mskjax.extra", 1, "mskjax.fourier.fftnc"),               # not in the table
        ("mskjax.cli", 3, "mskjax.sim._kspace.s"),
        ("mskjax.cli", 4, "mskjax.__main__"),                      # not a base module
    }
    message = _report(check_imports(toy))
    assert "mskjax.pipeline._stages:1: imports mskjax.linop._mri.check_mask (_mri is private" \
        in message
    assert (f"mskjax.sim:1: imports mskjax.io.read (sim (layer {RANK['sim']}) must not import "
            "io") in message


def test_checker_passes_a_clean_package(toy):
    # The toy with only its allowed imports left.
    _write(toy, {
        "_checks.py": "import numpy\n",
        "fourier/_fft.py": "from .._checks import check_ndim, _is_concrete\n"
                           "from .. import __version__\n",
        "linop/_mri.py": "from ..fourier import fftnc\nimport mskjax.fourier\n",
        "pipeline/_stages.py": "from ..linop import check_mask\nfrom mskjax.linop import Sense\n"
                               "from .. import __version__, linop\nfrom . import _stage\n",
        "sim/__init__.py": "",
        "cli/__init__.py": "from ..io import read\nfrom .. import sim\nfrom ..sim import s\n",
    })
    (toy / "extra/__init__.py").unlink()
    (toy / "extra").rmdir()
    assert check_imports(toy) == []


def test_forbidden_core_imports_are_found(toy):
    _write(toy, {"coils/__init__.py": "import numpy\ndef f():\n    from flax import nnx\n",
                 "nets/__init__.py": "import flax\n"})
    assert [(v.module, v.line, v.imported) for v in core_imports_of_forbidden(toy)] == [
        ("mskjax.coils", 3, "flax.nnx")]


OPTIONAL = ("flax", "optax", "h5py", "nibabel", "matplotlib", "tqdm", "sigpy", "pydicom",
            "torch", "numba")


def test_numerical_core_works_with_only_jax_and_numpy_installed():
    """The core's required dependencies are jax and numpy (pyproject's `dependencies`): with
    every optional package made unimportable, the core imports and reconstructs, and the
    optional parts fail with an ImportError that names the extra to install."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {OPTIONAL!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"No module named {{name!r}} (blocked)", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import jax, jax.numpy as jnp, numpy as np
        from mskjax import coils, fourier, linop, metrics, recon, sampling, solvers
        maps = coils.normalize_maps(coils.birdcage_maps((4, 16, 16)))
        mask, _ = sampling.equispaced_mask((4, 16, 16), center_fraction=0.25, acceleration=2,
                                           seed=0)
        image = jnp.ones((16, 16), jnp.complex64)
        out = recon.cg_sense(linop.Sense(maps, mask=mask)(image), maps, mask=mask,
                             max_iter=30, tol=1e-6)
        assert float(metrics.nmse(np.abs(image)[None], np.abs(out.image)[None])) < 1e-6
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        messages = []
        for call in (lambda: sampling.poisson_disc((16, 16), acceleration=4),
                     lambda: importlib.import_module("mskjax.io")):
            try:
                call()
            except ImportError as err:
                messages.append(str(err))
        print("|".join(messages))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    poisson, io = result.stdout.strip().split("|")
    assert "pip install 'mskjax[poisson]'" in poisson
    assert "pip install 'mskjax[io]'" in io
