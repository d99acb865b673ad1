"""Every notebook runs top to bottom at toy size and saves its figures."""

import runpy
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.py"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MSKJAX_TOY", "1")
    monkeypatch.setenv("MSKJAX_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:  # the notebooks leave their figures open, as in Jupyter; one process runs them all
        import matplotlib.pyplot as plt

        plt.close("all")
    figures = list(tmp_path.glob("*.png"))
    assert figures, "the notebook saved no figure"
    assert all(f.stat().st_size > 1000 for f in figures)


def test_notebooks_are_jupytext_percent_files():
    jupytext = pytest.importorskip("jupytext")
    for path in NOTEBOOKS:
        notebook = jupytext.read(path)
        assert any(cell.cell_type == "markdown" for cell in notebook.cells), path
        assert sum(cell.cell_type == "code" for cell in notebook.cells) >= 2, path
