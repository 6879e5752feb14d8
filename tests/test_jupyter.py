"What a researcher stepping through the notebooks in Jupyter meets: a kernel with ipywidgets installed, as Colab has."

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook


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
