"The notebooks: their own test cells (nbdev-test), the papermill parameters tag, and the README."

import os, shutil, subprocess, sys
from pathlib import Path
import nbformat
import pytest
from cgddi.run import STANDALONE_CACHE, project_root, stage_notebooks

ROOT = project_root()
BIN = Path(sys.executable).parent


def _tool(name):
    return str(BIN / name) if (BIN / name).exists() else shutil.which(name)


def test_nbdev_test_passes(tmp_path):
    # nbdev-test runs the notebooks in pool workers, which end without atexit: their scratch folders go with tmp_path;
    # the notebooks' small standalone runs are made once, stage by stage, and copied (cgddi.run.STANDALONE_CACHE)
    r = subprocess.run(
        [_tool("nbdev-test"), "--n-workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ | {"TMPDIR": str(tmp_path), STANDALONE_CACHE: str(tmp_path / "standalone")},
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb")))
def test_the_title_cell_holds_only_what_the_docs_keep(name):
    # nbdev makes a notebook's first Markdown cell its page's front matter (the `# ` title and the first `> ` line, the
    # description) and drops the cell, so any further line of it, a second description line or the prose, never reaches
    # the docs site (`cgddi docs`, nbdev-docs); the prose goes in the next cell
    cell = next(c for c in nbformat.read(ROOT / "nbs" / f"{name}.ipynb", 4).cells if c.cell_type == "markdown")
    lines = cell.source.strip().split("\n")
    assert lines[0].startswith("# ") and all(line.startswith("> ") for line in lines[1:]) and len(lines) <= 2, (
        f"nbs/{name}.ipynb: its first Markdown cell holds {len(lines)} lines; keep the title and a one-line "
        "`> description` there and move the rest to a cell of its own."
    )


@pytest.mark.parametrize("stage", list(stage_notebooks(ROOT / "nbs")))
def test_one_parameters_cell_survives_clean(stage, tmp_path):
    nb = shutil.copy(ROOT / "nbs" / f"{stage}.ipynb", tmp_path / f"{stage}.ipynb")
    subprocess.run([_tool("nbdev-clean"), "--fname", str(nb)], cwd=ROOT, check=True, capture_output=True)
    cells = [c for c in nbformat.read(nb, 4).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1 and "#| export" not in cells[0].source


@pytest.mark.parametrize("stage", list(stage_notebooks(ROOT / "nbs")))
def test_first_cell_warns_of_a_release_outside_the_requirements(stage):
    # the stage notebook's first cell as a kernel runs it, with transformers reported one release below its floor
    first = next(c for c in nbformat.read(ROOT / "nbs" / f"{stage}.ipynb", 4).cells if c.cell_type == "code")
    fake = (
        "import importlib.metadata as m, warnings\n"
        "warnings.simplefilter('always')\n"
        "_real = m.version\n"
        "m.version = lambda n: '5.5.4' if n == 'transformers' else _real(n)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", fake + first.source], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ReleaseWarning: installed releases outside cgddi's requirements: transformers 5.5.4" in r.stderr, r.stderr
    assert "pip install 'transformers>=" in r.stderr, r.stderr


def _names(source: str) -> tuple[set, set]:
    "The names a cell binds at the top and the names it reads from there (nested functions' globals included)."
    import symtable

    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("#|", "%", "!")))
    top = symtable.symtable(code, "<cell>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    read, tables = {s.get_name() for s in top.get_symbols() if s.is_referenced()}, list(top.get_children())
    while tables:
        t = tables.pop()
        read |= {s.get_name() for s in t.get_symbols() if s.is_referenced() and s.is_global()}
        tables += t.get_children()
    return bound, read


@pytest.mark.parametrize("stage", list(stage_notebooks(ROOT / "nbs")))
def test_a_cell_a_run_skips_makes_no_name_a_later_cell_reads(stage):
    """A run leaves out the cells tagged `skip-execution` (unit tests on hand-made inputs): no later cell may read a
    name such a cell made last, or the run would read another value (or none) than `nbdev-test` does."""
    cells = [c for c in nbformat.read(ROOT / "nbs" / f"{stage}.ipynb", 4).cells if c.cell_type == "code"]
    made_by, clashes = {}, []  # name -> the cell that bound it last, and whether a run skips that cell
    for i, c in enumerate(cells):
        bound, read = _names(c.source)
        skipped = "skip-execution" in c.metadata.get("tags", [])
        if not skipped:
            # a name the cell binds itself is taken as bound before it reads it (`with ... as d:`, `_m = ...`)
            clashes += [(n, made_by[n][0], i) for n in sorted(read - bound) if n in made_by and made_by[n][1]]
        made_by |= {n: (i, skipped) for n in bound}
    assert not clashes, f"{stage}: (name, skipped cell, cell reading it): {clashes}"


def test_readme_generated_from_index():
    r = subprocess.run(
        [_tool("jupyter"), "nbconvert", "--to", "markdown", "--stdout", "nbs/index.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout == (ROOT / "README.md").read_text(), "README.md is stale: regenerate it from nbs/index.ipynb"
    for cmd in ['pip install -e ".[dev]" && cgddi run', 'pip install -e ".[dev]" && pytest']:
        assert cmd in r.stdout


def test_the_readmes_python_runs(tmp_path, monkeypatch):
    # what a user pastes from "Using the library": every ```python block of the README, in order, in one namespace
    import re, tempfile

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # standalone()'s folder, gone with tmp_path
    names = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), names)
    assert names["placed"] is not None and names["placed"].sum() == names["lesion_mask"].sum()
    assert not (names["placed"] & ~names["valid_mask"]).any() and names["frame"].size == (256, 256)
    assert set(names["split"].split.unique()) == {"train", "val", "test"}
    assert len(names["adapters"]) and all((names["work"] / f).exists() for f in names["adapters"].lora)


def test_the_readme_cites_what_an_export_cites():
    from cgddi.publish import citations

    readme = (ROOT / "README.md").read_text()
    assert f"```bibtex\n{citations('DDI')}\n```" in readme, "README.md's Citing section: paste citations('DDI')"


def test_the_docs_link_no_private_name():
    # nbdev links a name in backticks to its anchor on the module's page, private names included, but a page shows only
    # the public ones: a docstring or a Markdown cell naming `_helper` made a broken link and `cgddi docs` (CI's docs
    # step) refused the site (report.html#_md_cell)
    import importlib, re
    from cgddi._modidx import d

    private = {
        sym.rsplit(".", 1)[1]
        for mod in d["syms"].values()
        for sym in mod
        if re.fullmatch(r"_[A-Za-z]\w*", sym.rsplit(".", 1)[1])
    }
    named = lambda text: sorted({n for n in re.findall(r"`(_\w+)`", text or "") if n in private})
    found = []
    for mod in d["syms"]:
        m = importlib.import_module(mod)
        for name in getattr(m, "__all__", []):
            if hits := named(getattr(getattr(m, name), "__doc__", "")):
                found.append(f"{mod}.{name}'s docstring: {hits}")
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        for cell in nbformat.read(nb, 4).cells:
            if cell.cell_type == "markdown" and (hits := named(cell.source)):
                found.append(f"nbs/{nb.name} cell {cell.get('id')}: {hits}")
    assert not found, "name these in words, or the public function that uses them:\n" + "\n".join(found)
