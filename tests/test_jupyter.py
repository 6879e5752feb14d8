"What a researcher stepping through the notebooks in Jupyter meets: a kernel with ipywidgets installed, as Colab has."

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from cgddi.run import project_root


def test_progress_bars_are_widgets_in_a_kernel_with_ipywidgets(monkeypatch):
    """In a Jupyter kernel with ipywidgets, tqdm.auto's bar is a widget, whose display takes keywords tqdm's text bar
    does not: `progress_bar`, nested and driven by hand, runs there (it raised TypeError on `check_delay` before)."""
    monkeypatch.delenv("CGDDI_PROGRESS", raising=False)  # not under `cgddi run`: the interactive case
    nb = new_notebook(
        cells=[
            new_code_cell(
                "from tqdm.notebook import tqdm_notebook\n"
                "from cgddi.report import progress_bar\n"
                "assert issubclass(progress_bar, tqdm_notebook), progress_bar.__mro__\n"
                "for i in progress_bar(range(3), desc='outer'):\n"
                "    for j in progress_bar(range(4), desc='inner', leave=False):\n"
                "        pass\n"
                "bar = progress_bar(total=2, desc='by hand')\n"
                "bar.update(2)\n"
                "bar.close()\n"
                "half = progress_bar(total=3, desc='stopped early')\n"
                "half.update(1)\n"
                "half.close()  # a widget bar left short is shown as failed (`bar_style`)\n"
                "print('bars done')"
            )
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    assert any("bars done" in o.get("text", "") for o in outputs), outputs
    # widgets, not text bars written to stderr
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs


@pytest.mark.slow
def test_every_stage_notebook_runs_in_a_jupyter_kernel_with_ipywidgets(tmp_path, monkeypatch):
    """Each stage notebook stepped through as on Colab: a Jupyter kernel with ipywidgets, the parameters cell's
    defaults (standalone mode, its small runs built in a cache of the test's own). No cell raises. About 3 min."""
    monkeypatch.delenv("CGDDI_PROGRESS", raising=False)
    monkeypatch.setenv("CGDDI_STANDALONE_CACHE", str(tmp_path / "standalone"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    stages = sorted((project_root() / "nbs").glob("0[0-7]_*.ipynb"))
    assert [p.stem[:2] for p in stages] == [f"0{i}" for i in range(8)], stages
    for path in stages:
        nb = nbformat.read(path, as_version=4)
        # CellExecutionError names the notebook's failing cell
        NotebookClient(
            nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        widgets = [
            o
            for c in nb.cells
            for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert widgets, f"{path.name}: no widget bar"
