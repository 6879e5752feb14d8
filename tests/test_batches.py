"Per-disease batches with papermill add up: 03 and 04 run for disease a, then for b, and 05 samples both."

import papermill as pm
from cgddi.data import read_data, read_split, write_splits
from cgddi.manifest import read_concepts, read_manifest
from cgddi.run import project_root

NBS = project_root() / "nbs"
TINY = dict(resolution=32, steps=1, batch_size=2)


def _run(nb, out, **params):
    pm.execute_notebook(
        str(NBS / f"{nb}.ipynb"),
        str(out / f"{nb}-{params.get('diseases', ['all'])[0]}.ipynb"),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )


def test_per_disease_papermill_batches_add_up(work_copy, tmp_path):
    work, ddi = work_copy, read_data(work_copy)
    write_splits(ddi, work, seeds=[36])
    split = read_split(work, "faithful", 36)
    pool = ddi[ddi.ddi_id.isin(split.ddi_id[split.split != "test"])].disease_slug.value_counts()
    a, b = pool[pool >= 2].index[:2]  # two diseases with a token to learn
    common = dict(work_dir=str(work), report_dir=str(tmp_path / "report"))
    for d in (a, b):  # the loop the README shows
        _run("03_textual_inversion", tmp_path, **common, **TINY, diseases=[d])
        _run("04_lora", tmp_path, **common, **TINY, diseases=[d])
    assert set(read_concepts(work, "textual_inversion").disease_slug) == {a, b}
    assert set(read_concepts(work, "lora").disease_slug) == {a, b}  # b's batch did not forget a
    _run("05_semantic", tmp_path, **common, resolution=32, steps=2, limit=2)
    semantic = read_manifest(work, "semantic")
    assert set(semantic.adapter.str.split("/").str[2]) == {a, b} and len(semantic) == 4
