"`cgddi run` end to end: the report, provenance, params checking and a failing stage."

import contextlib, hashlib, html, json, os, re, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
from types import SimpleNamespace
from cgddi.report import BENCHMARK_NOTICE
from cgddi.run import check_params, load_params, project_root, stage_notebooks, status, main, value_rules

ROOT = project_root()


def cgddi(*args):
    "The `cgddi` command in a new interpreter, as a user runs it."
    return subprocess.run(
        [sys.executable, "-c", "import sys; from cgddi.run import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        # a hang's guard, not a speed limit: the report fixture's whole run takes ~8 min on the slowest 2-core machine
        # seen, more beside other work (600 s timed it out there, 2026-12-02)
        timeout=1800,
    )


@pytest.fixture
def cgddi_here(capsys):
    """The `cgddi` command in this process (no interpreter start-up: 8 s saved per call): its return code, stdout and
    stderr."""

    def run(*args):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def _params(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    "One benchmark run through the CLI, shared by the report tests."
    d = tmp_path_factory.mktemp("run")
    p = _params(
        d,
        "work_dir: work\nstages:\n  00_data:\n    benchmark_n_images: 30\n    split_seeds: [36, 37]\n    "
        "masks: sddi+auto\n",
    )
    (d / "diseases").mkdir()  # one disease with its own settings (the notebooks' defaults: 4 steps)
    (d / "diseases" / "melanoma.yaml").write_text(
        "stages:\n  03_textual_inversion: {steps: 6}\n  04_lora: {steps: 3}\n"
    )
    r = cgddi("run", "--params", str(p), "--out", str(d / "report"))
    assert r.returncode == 0, r.stderr
    for stage in stage_notebooks(ROOT / "nbs"):
        assert f"{stage} ... ok" in r.stdout  # a progress line per stage
    # the console ends with what the run shows: the verdicts of the report's first table, then where the report is
    verdicts = pd.read_csv(d / "report" / "tables" / "tab_07_findings_clean.csv", index_col=0)["On this run"]
    said = r.stdout.split("what this run shows (Embedded benchmark (software test data), protocol clean; ")[1]
    assert said.splitlines()[1:] == [*(f"  {v}" for v in verdicts), f"report: {d / 'report' / 'index.html'}"]
    return d / "report", p


def test_report_index_shows_data_figures(report):
    out, _ = report
    page = (out / "index.html").read_text()
    body = page[page.index("<body>") :]
    assert body.index(BENCHMARK_NOTICE) < body.index("<h1>")  # first line says it is the benchmark
    for name in ["fig_00_disease_histogram", "fig_00_mask_overlay", "fig_00_automask"]:
        assert f"figures/{name}.png" in page and (out / "figures" / f"{name}.png").stat().st_size > 5000
    for name in ["tab_00_tone_malignancy", "tab_00_split_sizes", "tab_00_automask_dice"]:
        assert (out / "tables" / f"{name}.csv").exists() and (out / "tables" / f"{name}.md").exists()
    counts = pd.read_csv(out / "tables" / "tab_00_tone_malignancy.csv", index_col=0)
    assert counts.loc["total", "total"] == 30
    sizes = pd.read_csv(out / "tables" / "tab_00_split_sizes.csv")
    assert len(sizes) == 4 and set(sizes["mode"]) == {"faithful", "clean"}  # 2 modes x 2 seeds
    assert (out / "notebooks" / "00_data.ipynb").exists()
    dice = pd.read_csv(out / "tables" / "tab_00_automask_dice.csv", index_col=0)  # auto masks against sDDI's, per class
    assert dice.index.tolist() == ["background", "lesion", "marker", "ruler", "skin"] and dice.loc["skin", "all"] > 0.8
    ddi = pd.read_csv(out.parent / "work" / "data" / "ddi.csv", keep_default_na=False)
    assert dice.loc["skin", "images"] == (ddi.mask_path != "").sum()  # every sDDI-annotated image is scored


def test_report_shows_healthy_and_lesion_map(report):
    out, params = report
    page = (out / "index.html").read_text()
    for name in ["fig_01_healthy_examples", "fig_02_lesion_map_examples"]:
        assert f"figures/{name}.png" in page
    review = pd.read_csv(out / "tables" / "tab_01_healthy_review.csv", index_col=0)
    work = params.parent / "work"
    sheet = pd.read_csv(work / "healthy" / "review.csv", keep_default_na=False)
    assert review.loc["total", "kept"] == sheet.keep.sum() and review.loc["total", "total"] == len(sheet) > 0
    # masks: sddi+auto: the auto-masked images are inpainted and reviewed too
    ddi = pd.read_csv(work / "data" / "ddi.csv", keep_default_na=False)
    assert sorted(sheet.ddi_id) == sorted(ddi.ddi_id[ddi.frame_mask_path != ""]) and (sheet.mask_source == "auto").any()
    assert (
        sheet.set_index("ddi_id").mask_source.to_dict()
        == ddi[ddi.frame_mask_path != ""].set_index("ddi_id").mask_source.to_dict()
    )
    assert review.loc["total", "auto mask: total"] == (sheet.mask_source == "auto").sum()
    counts = pd.read_csv(out / "tables" / "tab_02_lesion_map_counts.csv").iloc[0]
    n_masks = pd.read_csv(work / "data" / "ddi.csv").frame_mask_path.notna().sum()
    assert counts["candidates"] == sheet.keep.sum() * (n_masks - 1)  # every kept healthy x every other annotated image
    assert counts["placed"] + counts["skipped (no room)"] == counts["candidates"]
    assert len(list((work / "lesion_mapped").rglob("*.png"))) == counts["placed"]


def test_report_shows_parametric_stages(report):
    out, params = report
    page = (out / "index.html").read_text()
    for name in [
        "fig_03_ti_loss",
        "fig_04_lora_loss",
        "fig_05_semantic_plan",
        "fig_05_semantic_examples",
        "fig_05_by_training_size",
    ]:
        assert f"figures/{name}.png" in page and (out / "figures" / f"{name}.png").exists(), name
    work = params.parent / "work"
    tokens = pd.read_csv(out / "tables" / "tab_03_tokens.csv", index_col=0)
    adapters = pd.read_csv(out / "tables" / "tab_04_adapters.csv", index_col=0)
    assert len(tokens) > 0 and list(adapters.index) == list(tokens.index)
    assert (adapters.n_train == tokens.n_train).all()  # LoRA learnt from the tokens' images
    plan = pd.read_csv(out / "tables" / "tab_05_semantic_plan.csv", index_col=0)
    canvases = pd.read_csv(work / "healthy" / "review.csv").keep.sum()
    sampled = plan[[c for c in plan.columns if c.startswith("sampled_")]]
    # full plan, R = 1: every canvas per disease x tone
    assert (sampled == canvases).all().all() and len(plan) == len(adapters)
    semantic = pd.concat([pd.read_csv(f) for f in (work / "manifest" / "semantic").glob("*.csv")])
    assert len(semantic) == sampled.to_numpy().sum() and semantic.generator.str.contains("tiny random model").all()
    caption = (out / "tables" / "tab_05_semantic_plan.md").read_text().split("\n", 1)[0]
    assert caption.startswith("Embedded benchmark") and "pipeline check" in caption


def test_report_shows_classification_and_fairness_tables(report):
    out, params = report
    page = (out / "index.html").read_text()
    for name in ["fig_06_learning_curves", "fig_07_accuracy_by_tone"]:
        assert f"figures/{name}.png" in page and (out / "figures" / f"{name}.png").exists(), name
    # the first screen draws Table 2 per tone against the majority rates, after the table itself
    summary = page[page.index("id='summary'") : page.index("<h2>Stages")]
    assert summary.index("id='summary-tab_07_table2_clean'") < summary.index("id='summary-fig_07_accuracy_by_tone'")
    work = params.parent / "work"
    for protocol in ["faithful", "clean"]:
        t2 = pd.read_csv(out / "tables" / f"tab_07_table2_{protocol}.csv", index_col=0)
        assert list(t2.columns) == ["Mean", "Light", "Medium", "Dark", "PQD", "DPM", "EOM"]
        assert {"Baseline (R.)", "FairDisCo (R.)", "PatchAlign (R.)", "Exp. 1 (S. only)", "Exp. 2 (R. + S.)"} <= set(
            t2.index
        )
        caption = (out / "tables" / f"tab_07_table2_{protocol}.md").read_text().split("\n", 1)[0]
        assert caption.startswith("Embedded benchmark") and protocol in caption and "2 split seed" in caption
    per_seed = pd.read_csv(out / "tables" / "tab_07_metrics_per_seed.csv")
    assert len(per_seed) == len(list((work / "classify" / "predictions").rglob("S*.csv")))  # one row per saved run
    t7 = pd.read_csv(out / "tables" / "tab_07_table7.csv", index_col=0)
    assert t7.loc[["light", "medium", "dark"], "DDI"].astype(int).sum() == 30
    for name in [
        "tab_06_runs",
        "tab_07_table3_quality",
        "tab_07_table5_faithful",
        "tab_07_table6",
        "tab_07_table8",
        "tab_07_tone_fidelity",
    ]:
        assert (out / "tables" / f"{name}.md").exists(), name
    audit = pd.read_csv(out / "tables" / "tab_07_leakage_audit.csv")
    tied = [c for c in audit.columns if c.startswith("tied by")]
    assert audit[audit.protocol == "clean"][tied].sum().sum() == 0 and audit.images.sum() > 0  # no clean run leaks
    n_train_sets = len(list((work / "classify" / "train_sets").rglob("S*.csv")))
    # every trained run lists what it trained on
    assert n_train_sets == len(list((work / "classify" / "predictions").rglob("S*.csv")))


def test_provenance(report):
    out, params = report
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["params_sha256"] == hashlib.sha256(params.read_bytes()).hexdigest()
    melanoma = params.parent / "diseases" / "melanoma.yaml"
    assert prov["disease_files_sha256"] == {str(melanoma): hashlib.sha256(melanoma.read_bytes()).hexdigest()}
    assert prov["seeds"] == {"stages.00_data.split_seeds": [36, 37]}
    assert prov["packages"]["torch"] and prov["packages"]["cgddi"] and prov["device"]["kind"] in ("cpu", "cuda")
    # Pillow resizes every image: its releases round differently (11.1 vs 13.0: one level in 5 % of a frame's values)
    assert prov["packages"]["pillow"] and prov["packages"]["scipy"]
    assert prov["releases_outside_requirements"] == {}  # every installed release inside pyproject.toml's requirements
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert prov["git_commit"] == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    stages = {s["stage"]: s for s in prov["stages"]}
    assert list(stages) == list(stage_notebooks(ROOT / "nbs"))  # every stage, in order
    stage = stages["00_data"]
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in stages.values())
    assert stage["parameters"]["work_dir"] == str(params.parent / "work")  # relative to the params file
    assert (params.parent / "work" / "data" / "ddi.csv").exists() and len(
        list((params.parent / "work" / "splits").glob("*.csv"))
    ) == 4


def test_failing_stage_names_notebook_and_cell(tmp_path, cgddi_here):
    broken = tmp_path / "ddi"
    broken.mkdir()
    (broken / "ddi_metadata.csv").write_text("DDI_ID,DDI_file,malignant,disease\n1,000001.png,True,melanoma\n")
    p = _params(tmp_path, "work_dir: work\n")  # the data folder comes from the command line
    r = cgddi_here("run", "--params", str(p), "--set", f"ddi_root={broken}", "--out", str(tmp_path / "report"))
    assert r.returncode == 1
    assert "00_data" in r.stderr and "cell" in r.stderr and "missing column(s) ['skin_tone']" in r.stderr
    # the command that goes on repeats the --set value, and the report records it
    assert f"cgddi run --params {p} --set ddi_root={broken} --out" in r.stderr, r.stderr
    prov = json.loads((tmp_path / "report" / "provenance.json").read_text())
    assert prov["stages"][0]["status"] == "failed" and prov["overrides"] == [f"ddi_root={broken}"]
    assert prov["stages"][0]["parameters"]["ddi_root"] == str(broken)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "failed" in page and BENCHMARK_NOTICE not in page and f"--set ddi_root={broken}" in page


@pytest.mark.parametrize(
    "text, expect",
    [
        ("wrok_dir: w\n", "unknown key 'wrok_dir'"),
        (
            "stages:\n  00_data:\n    benchmark_n_images: many\n",
            "'benchmark_n_images' = 'many' is not int, as declared in 00_data.ipynb",
        ),
        (
            "stages:\n  00_data:\n    split_seeds: 36\n",
            "'split_seeds' = 36 is not list[int], as declared in 00_data.ipynb",
        ),
        (  # the paper's names for the splits are not what a stage reads
            "stages:\n  06_classify:\n    seeds: [S36, S37]\n",
            "'seeds' = ['S36', 'S37'] is not Optional[list[int]], as declared in 06_classify.ipynb",
        ),
        ("stages:\n  09_nothing:\n    x: 1\n", "unknown stage '09_nothing'"),
        ("work_dir: [unclosed\n", "not valid YAML"),
        (
            "stages:\n  00_data:\n    benchmark_n_images: -3\n",
            "key 'benchmark_n_images' = -3 must be >= 1 (read by 00_data.ipynb)",
        ),
        (
            "stages:\n  00_data:\n    frame_mode: stretch\n",
            "key 'frame_mode' = 'stretch' must be one of ['resize', 'square_crop']",
        ),
        (
            "stages:\n  01_healthy:\n    backend: dalle\n",
            "key 'backend' = 'dalle' must be one of ['kandinsky', 'sd_inpaint', 'opencv']",
        ),
        ("stages:\n  05_semantic:\n    strength: 0\n", "key 'strength' = 0 must be in (0, 1]"),
        ("stages:\n  05_semantic:\n    tones: []\n", "key 'tones' = [] is empty: give one or more, each one of"),
        (  # null (None) is the default: every disease
            "stages:\n  04_lora:\n    diseases: []\n",
            "key 'diseases': [] is empty: name one or more diseases (joined names or slugs), or null (read by 04_lora",
        ),
        (  # a slip is named before the first stage, not when 03 reads the data after 00-02
            "stages:\n  05_semantic:\n    diseases: [melanoma, basal_cel_carcinoma]\n",
            "key 'diseases': 'basal_cel_carcinoma' is none of the diseases (joined names or slugs) (did you mean "
            "'basal_cell_carcinoma'?); they are listed in cgddi/joined_ddi.csv, or null (read by 05_semantic",
        ),
        (
            "stages:\n  06_classify:\n    protocols: [faithful, leaky]\n",
            "key 'protocols' = ['faithful', 'leaky'] must be one of ['faithful', 'clean']",
        ),
        ("ddi_root: no/such/ddi\n", "(read by 00_data): no such folder"),
        # a split seed no stage writes: 06 would meet it after 00-05 (hours on a GPU with DDI)
        (
            "stages:\n  06_classify:\n    seeds: [36, 41]\n",
            "key 'seeds' = [36, 41] (read by 06_classify): this run has no split faithful_S41; 00_data writes the "
            "splits of seeds [36, 37, 38, 39, 40]",
        ),
        (  # 03's own default, split_seed 36, against the seeds 00 is told to write
            "stages:\n  00_data:\n    split_seeds: [37, 38]\n",
            "key 'split_seed' = 36 (read by 03_textual_inversion): this run has no split faithful_S36",
        ),
        # a folder, but not DDI's: the params file's own
        ("ddi_root: .\n", "(read by 00_data): the folder holds no ddi_metadata.csv"),
    ],
)
def test_bad_params_stop_before_running(tmp_path, text, expect, cgddi_here):
    p = _params(tmp_path, text)
    r = cgddi_here("run", "--params", str(p), "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and expect in r.stderr and str(p) in r.stderr
    assert not (tmp_path / "report").exists()


def test_offline_a_model_not_in_the_cache_stops_the_run_before_anything_is_written(tmp_path, cgddi_here, monkeypatch):
    "With HF_HUB_OFFLINE, 01's Kandinsky models (there with `backend: kandinsky` only) must be in the hub cache."
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    p = _params(tmp_path, "stages:\n  01_healthy:\n    backend: kandinsky\n")
    r = cgddi_here("run", "--params", str(p), "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and f"{p}: HF_HUB_OFFLINE is set" in r.stderr, r.stderr
    assert "'kandinsky-community/kandinsky-2-2-prior' (key 'kandinsky_prior', read by 01_healthy)" in r.stderr
    assert not (tmp_path / "report").exists()
    # `cgddi params` (a papermill batch's parameters) checks its stage's models as `cgddi run` does
    r = cgddi_here("params", "--params", str(p), "01")
    assert r.returncode == 2 and f"{p}: HF_HUB_OFFLINE is set" in r.stderr and not r.stdout, r.stderr
    assert "'kandinsky-community/kandinsky-2-2-prior' (key 'kandinsky_prior', read by 01_healthy)" in r.stderr
    assert cgddi_here("params", "--params", str(p), "02").returncode == 0  # 02 loads no model


def test_null_is_a_default_not_a_value_a_rule_refuses(tmp_path):
    "`diseases: null` (every disease) and `disease_settings: null` are what the notebooks default to."
    p = _params(tmp_path, "stages:\n  03_textual_inversion: {diseases: null}\n  04_lora: {disease_settings: null}\n")
    per_stage = check_params(load_params(p), stage_notebooks(ROOT / "nbs"), p, rules=value_rules())
    assert per_stage["03_textual_inversion"]["diseases"] is None and per_stage["04_lora"]["disease_settings"] is None


def test_checking_values_leaves_the_stage_libraries_out_of_cgddi_run():
    """`cgddi run` checks every stage's values first; the stage modules are imported for it in a child process only;
    papermill and the data layer (sklearn, matplotlib) wait for the subcommand that needs them (`cgddi --help`)."""
    code = (
        "import sys, cgddi.run as r; rules = r.value_rules()\n"
        "print(len(rules), *(m in sys.modules for m in ('torch', 'diffusers', 'papermill', 'cgddi.data', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["8", "False", "False", "False", "False", "False"]


def test_unknown_stage_on_command_line(tmp_path, cgddi_here):
    r = cgddi_here("run", "--stages", "42_nope", "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and "unknown stage '42_nope'" in r.stderr


def test_a_release_outside_the_requirements_stops_the_run_before_anything_is_written(tmp_path, cgddi_here, monkeypatch):
    "A package the requirements exclude stops `cgddi run` with the pip command that fixes it; --any-releases goes on."
    import cgddi.run

    monkeypatch.setattr(cgddi.run, "declared_requirements", lambda pyproject=None: ["pandas>=1000", "numpy>=1"])
    r = cgddi_here("run", "--stages", "42_nope", "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and f"pandas {pd.__version__} (needs pandas>=1000)" in r.stderr, r.stderr
    assert "pip install 'pandas>=1000'" in r.stderr and "numpy" not in r.stderr and not (tmp_path / "report").exists()
    r = cgddi_here("run", "--any-releases", "--stages", "42_nope", "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and "unknown stage '42_nope'" in r.stderr, r.stderr  # past the releases: the next check


@pytest.mark.parametrize(
    "params_file", [*sorted((ROOT / "params").rglob("*.yaml")), ROOT / "bench" / "check.yaml"], ids=lambda p: p.name
)
def test_shipped_params_fit_the_notebooks(params_file):
    per_stage = check_params(load_params(params_file), stage_notebooks(ROOT / "nbs"), params_file)
    assert "00_data" in per_stage and Path(per_stage["00_data"]["work_dir"]).is_absolute()


def test_status_counts_match_the_manifests(report):
    out, params = report
    work = params.parent / "work"
    table = status(params).set_index("stage")
    healthy = pd.read_csv(work / "manifest" / "healthy" / "all.csv")
    assert table.loc["01_healthy", "done"] == len(healthy) == table.loc["01_healthy", "planned"]
    counts = pd.read_csv(out / "tables" / "tab_02_lesion_map_counts.csv").iloc[0]
    assert table.loc["02_lesion_map", "done"] == counts["candidates"] == table.loc["02_lesion_map", "planned"]
    semantic = pd.concat([pd.read_csv(f) for f in (work / "manifest" / "semantic").glob("*.csv")])
    assert table.loc["05_semantic", "done"] == len(semantic) == table.loc["05_semantic", "planned"]
    assert (
        table.loc["06_classify", "done"]
        == len(list((work / "classify" / "predictions").rglob("S*.json")))
        == table.loc["06_classify", "planned"]
    )
    tokens = {s: pd.read_csv(work / s / "shared" / "concepts.csv") for s in ("textual_inversion", "lora")}
    # the per-disease file's melanoma settings count as the run's (steps 6 and 3, not the notebooks' 4)
    assert (
        table.loc["03_textual_inversion", "done"]
        == len(tokens["textual_inversion"])
        == table.loc["03_textual_inversion", "planned"]
    )
    assert table.loc["04_lora", "done"] == len(tokens["lora"]) == table.loc["04_lora", "planned"]
    # 07's image metrics, kept by the images and settings they were computed from: both kept after the run's 07
    assert (table.loc["07_fairness", "done"], table.loc["07_fairness", "planned"]) == (2, 2)
    assert len(list((work / "fairness" / "quality").glob("*.json"))) == 1
    r = cgddi("status", "--params", str(params))
    assert r.returncode == 0 and "05_semantic" in r.stdout and f"{len(semantic):,} of {len(semantic):,}" in r.stdout
    # what a rerun would redo: another setting of one stage leaves nothing of it done with the current settings, and the
    # later stages' counts (read against what is on disk) as they were
    for stage, change in [
        ("01_healthy", "01_healthy.seed=5"),
        ("02_lesion_map", "02_lesion_map.padding=12"),
        ("03_textual_inversion", "03_textual_inversion.learning_rate=0.01"),
        ("04_lora", "04_lora.learning_rate=0.01"),
        ("05_semantic", "05_semantic.strength=0.5"),
    ]:
        changed = status(params, overrides=[change]).set_index("stage")
        assert changed.loc[stage, "done"] == 0 and changed.loc[stage, "planned"] == table.loc[stage, "planned"], change
        assert changed.drop(index=stage).done.tolist() == table.drop(index=stage).done.tolist(), change
    assert f"({len(semantic):,} made before: to make again)" in changed.loc["05_semantic", "what"]
    # another quality setting: FID, KID and LPIPS to compute again, the skin ITA kept
    fewer = status(params, overrides=["07_fairness.quality_max_images=3"]).set_index("stage")
    assert (
        fewer.loc["07_fairness", "done"] == 1
        and "FID/KID/LPIPS to compute, skin ITA kept" in fewer.loc["07_fairness", "what"]
    )
    assert fewer.drop(index="07_fairness").done.tolist() == table.drop(index="07_fairness").done.tolist()
    # a value a stage does not allow: the error `cgddi run` gives, not that stage "not run yet" in the table
    r = cgddi("status", "--params", str(params), "--set", "06_classify.epochs=0")
    assert (
        r.returncode == 2
        and "'epochs' = 0 must be >= 1 (read by 06_classify.ipynb) (given with --set: 06_classify.epochs=0)" in r.stderr
    ), r.stderr


def test_params_prints_one_stage_flat(tmp_path, cgddi_here):
    p = _params(tmp_path, "work_dir: work\nstages:\n  03_textual_inversion:\n    steps: 7\n")
    r = cgddi_here("params", "--params", str(p), "03_textual_inversion")
    assert r.returncode == 0 and "steps: 7" in r.stdout and f"work_dir: {tmp_path / 'work'}" in r.stdout
    assert cgddi_here("params", "--params", str(p), "09_nothing").returncode == 2
    # a value the stage does not allow: the error `cgddi run` gives, not a file a papermill batch fails on later
    bad = _params(tmp_path, "work_dir: work\nstages:\n  03_textual_inversion:\n    steps: 0\n")
    r = cgddi_here("params", "--params", str(bad), "03_textual_inversion")
    assert r.returncode == 2 and "'steps' = 0 must be >= 1 (read by 03_textual_inversion.ipynb)" in r.stderr, r.stderr
    # `--set` in place of the file's value; a bad one names the command line
    r = cgddi_here("params", "--params", str(bad), "03_textual_inversion", "--set", "03.steps=5", "--set", "seed=2")
    assert r.returncode == 0 and "steps: 5" in r.stdout and "seed: 2" in r.stdout, r.stderr
    assert (
        cgddi_here("params", "--params", str(p), "03").stdout
        == cgddi_here("params", "--params", str(p), "03_textual_inversion").stdout
    )
    r = cgddi_here("params", "--params", str(p), "03_textual_inversion", "--set", "03.steps=0")
    assert (
        r.returncode == 2
        and "'steps' = 0 must be >= 1 (read by 03_textual_inversion.ipynb) (given with --set: 03.steps=0)" in r.stderr
    ), r.stderr
    r = cgddi_here("params", "--params", str(p), "03_textual_inversion", "--set", "03.stpes=5")
    assert r.returncode == 2 and "--set '03.stpes=5': 03_textual_inversion does not declare 'stpes'" in r.stderr


def test_a_second_run_on_a_locked_work_dir_is_refused(tmp_path, cgddi_here):
    """While one process holds a work dir, `cgddi run` on it stops at once naming the holder; a dead holder's lock is
    taken over."""
    import socket
    from cgddi.report import work_dir_lock, WorkDirLocked
    from cgddi.layout import LOCK_FILE

    work = tmp_path / "work"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom cgddi.report import work_dir_lock\n"
            "with work_dir_lock(sys.argv[1]): print('held', flush=True); time.sleep(120)",
            str(work),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        r = cgddi_here(
            "run",
            "--params",
            str(_params(tmp_path, f"work_dir: {work}\n")),
            "--out",
            str(tmp_path / "report"),
            "--stages",
            "00_data",
        )
        assert (
            r.returncode == 2
            and f"PID {holder.pid} on {socket.gethostname()}" in r.stderr
            and str(work / LOCK_FILE) in r.stderr
        ), r.stderr
        assert not (tmp_path / "report").exists() and sorted(p.name for p in work.iterdir()) == [
            LOCK_FILE
        ]  # nothing ran
        with pytest.raises(WorkDirLocked, match=f"PID {holder.pid}"):
            with work_dir_lock(work):
                pass
    finally:
        holder.kill()
        holder.wait()
    with work_dir_lock(work):
        assert json.loads((work / LOCK_FILE).read_text())["pid"] != holder.pid  # stale: taken over
    assert not (work / LOCK_FILE).exists()  # released


def test_a_work_dir_that_is_a_file_is_refused_before_running(tmp_path, cgddi_here):
    (tmp_path / "afile").write_text("not a folder")
    p = _params(tmp_path, f"work_dir: {tmp_path / 'afile'}\n")
    r = cgddi_here("run", "--params", str(p), "--out", str(tmp_path / "report"))
    assert (
        r.returncode == 2
        and "key 'work_dir'" in r.stderr
        and "is a file, not a folder" in r.stderr
        and str(p) in r.stderr
    )
    assert not (tmp_path / "report").exists()


def test_a_disease_file_trains_that_disease_with_its_own_settings(report):
    work = report[1].parent / "work"
    losses = {
        (stage, f.parent.name): json.loads(f.read_text())["losses"]
        for stage, name in [("textual_inversion", "ti.json"), ("lora", "lora.json")]
        for f in (work / stage / "shared").glob(f"*/{name}")
    }
    steps = {k: len(v["instance"] if k[0] == "lora" else v) for k, v in losses.items()}  # LoRA: instance and prior
    assert steps.pop(("textual_inversion", "melanoma")) == 6 and steps.pop(("lora", "melanoma")) == 3
    assert len(steps) >= 4 and set(steps.values()) == {4}  # every other disease: the section's (default) 4 steps
    for table, own in [("tab_03_tokens", "melanoma: steps 6"), ("tab_04_adapters", "melanoma: steps 3")]:
        assert (
            f"Diseases with their own settings (params/diseases): {own}."
            in (report[0] / "tables" / f"{table}.md").read_text()
        )


def test_a_second_run_writes_nothing(report, tmp_path):
    """Every stage notebook run again through papermill (its checks on the run's files included) on a finished work dir
    reads it and writes no file."""
    out, params = report  # last in this file: the other tests read the same work dir first
    work = params.parent / "work"
    snap = lambda: {
        str(p.relative_to(work)): (p.stat().st_mtime_ns, p.stat().st_size) for p in work.rglob("*") if p.is_file()
    }
    before = snap()
    r = cgddi("run", "--params", str(params), "--out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    after = snap()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"a second run wrote {len(changed)} file(s) of the work dir: {changed[:10]}"


def test_06_checks_its_own_files_under_other_settings(report, tmp_path):
    """06's checks on the run's files hold for the settings a user picks, not only the notebook's own: rerun with one
    protocol and one method (no run then reads the clean generator set, none trains PatchAlign), it finishes."""
    import shutil

    out, params = report
    work = shutil.copytree(params.parent / "work", tmp_path / "work")  # a copy: the fixture's files stay as they are
    r = cgddi(
        "run",
        *("--params", str(params), "--out", str(tmp_path / "report"), "--stages", "06_classify"),
        *("--set", f"work_dir={work}", "--set", "06_classify.protocols=[faithful]"),
        *("--set", "06_classify.real_methods=[baseline]", "--set", "06_classify.synthetic_method=baseline"),
    )
    assert r.returncode == 0, r.stderr
    runs = pd.read_csv(tmp_path / "report" / "tables" / "tab_06_runs.csv")
    assert set(runs.protocol) == {"faithful"} and set(runs.method) == {"baseline"}, runs
    # the report's provenance names the params file with the --set values, shell-quoted as a user would paste them
    index = (tmp_path / "report" / "index.html").read_text()
    assert html.escape(f"--set work_dir={work} --set '06_classify.protocols=[faithful]' --set") in index


def _tree(root: Path) -> dict:
    """Path -> content hash of each file under `root` (image table: no absolute paths; manifest indexes, which hold
    shard times: left out)."""
    out = {}
    for p in sorted(f for f in root.rglob("*") if f.is_file() and f.name != ".index.parquet"):
        rel = p.relative_to(root).as_posix()
        if rel == "data/ddi.csv":
            out[rel] = pd.read_csv(p).drop(columns=["image_path", "mask_path"]).to_csv(index=False)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_a_cached_standalone_run_is_the_run_made_in_place(tmp_path, monkeypatch):
    """standalone with STANDALONE_CACHE copies a run built stage by stage in the cache: the same files as a run made in
    place."""
    from cgddi.run import standalone, STANDALONE_CACHE
    from cgddi.layout import HEALTHY_IMAGES, REVIEW_SHEET

    plain = standalone(tmp_path / "plain", upto="01_healthy")
    monkeypatch.setenv(STANDALONE_CACHE, str(tmp_path / "cache"))
    standalone(tmp_path / "warm", upto="00_data")  # the cache's 00, then 01 built on a copy of it
    cached = standalone(tmp_path / "cached", upto="01_healthy")
    made = _tree(plain)  # a run to 01: the table, splits, frames and the healthy images with their review sheet
    assert {"data/ddi.csv", "splits/clean_S36.csv", REVIEW_SHEET} <= set(made) and any(
        k.startswith(HEALTHY_IMAGES + "/") for k in made
    )
    assert _tree(cached) == made
    assert pd.read_csv(cached / "data" / "ddi.csv").image_path.str.startswith(str(tmp_path / "cache" / "00_data")).all()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) == [
        "00_data",
        "01_healthy",
    ]


def _sleeping_checkout(root: Path, ignore_interrupt: bool) -> Path:
    """A checkout whose one stage starts a child process, writes its own and the child's PIDs to `work_dir/pids` and
    then waits forever (ignoring SIGINT if asked); returns its root."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    (root / "nbs").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    body = (
        "import os, pathlib, signal, subprocess, time\n"
        + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if ignore_interrupt else "")
        + "child = subprocess.Popen(['sleep', '600'])\n"
        "pathlib.Path(work_dir).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(work_dir, 'pids').write_text(f'{os.getpid()} {child.pid}')\n"
        "while True:\n    time.sleep(0.1)\n"
    )
    nb = new_notebook(cells=[new_code_cell("work_dir = None", metadata={"tags": ["parameters"]}), new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "nbs" / "00_sleep.ipynb")
    return root


def _gone(pid: int) -> bool:
    "The process has ended (a zombie waiting for its reaper counts as ended)."
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("ignore_interrupt", [False, True], ids=["interruptible", "ignores-sigint"])
def test_ctrl_c_stops_the_stage_its_processes_and_writes_the_report(tmp_path, ignore_interrupt):
    """Ctrl-C during a stage: the kernel and the child it started end before `cgddi run` exits (after the grace period
    for a cell that ignores the interrupt), the exit code is 130 and the report marks the stage interrupted."""
    import signal, time

    root, work = _sleeping_checkout(tmp_path / "checkout", ignore_interrupt), tmp_path / "work"
    code = (
        "import sys; from pathlib import Path; import cgddi.run as r\n"
        "r.project_root = lambda: Path(sys.argv[1]); r.INTERRUPT_GRACE_S = 2\n"
        "sys.exit(r.main(sys.argv[2:]))"
    )
    params = _params(tmp_path, f"work_dir: {work}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root), "run", "--params", str(params), "--out", str(tmp_path / "report")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, not a background job
    )
    try:
        deadline = time.monotonic() + 120
        while not (work / "pids").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (work / "pids").exists(), proc.communicate(timeout=30)
        kernel, child = map(int, (work / "pids").read_text().split())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stage 00_sleep interrupted" in err and "A rerun resumes" in err
    assert _gone(kernel) and _gone(child)
    prov = json.loads((tmp_path / "report" / "provenance.json").read_text())
    assert [(s["stage"], s["status"]) for s in prov["stages"]] == [("00_sleep", "interrupted")]
    assert "interrupted" in (tmp_path / "report" / "index.html").read_text()


def _two_stage_checkout(root: Path) -> Path:
    """A checkout of two stages that each write a table to the report; the first fails while `work_dir/fail_00`
    exists, the second while `work_dir/fail` exists and writes a second table while `work_dir/extra` exists; returns
    its root."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    (root / "nbs").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    for name, body in [
        ("00_make", "assert not pathlib.Path(work_dir, 'fail_00').exists(), 'told to fail'\n"),
        (
            "01_use",
            "assert not pathlib.Path(work_dir, 'fail').exists(), 'told to fail'\n"
            "if pathlib.Path(work_dir, 'extra').exists():\n"
            "    pathlib.Path(report_dir, 'tables').mkdir(exist_ok=True)\n"
            "    pathlib.Path(report_dir, 'tables', 'tab_01_extra.csv').write_text('b\\n2\\n')\n",
        ),
    ]:
        table = (
            "pathlib.Path(report_dir, 'tables').mkdir(exist_ok=True)\n"
            f"pathlib.Path(report_dir, 'tables', 'tab_{name[:2]}_t.csv').write_text('a\\n1\\n')\n"
        )
        nb = new_notebook(
            cells=[
                new_code_cell("work_dir = None\nreport_dir = None", metadata={"tags": ["parameters"]}),
                new_code_cell("import pathlib\n" + body + table),
            ]
        )
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "nbs" / f"{name}.ipynb")
    return root


def test_a_rerun_of_the_failed_stage_keeps_the_earlier_stages_in_the_report(tmp_path, cgddi_here, monkeypatch):
    """A failed run's message gives the command that goes on from the failed stage; run into the same report, the
    stages the first run made stay in the index and provenance, marked as that run's."""
    import cgddi.run as r

    root, work, out = _two_stage_checkout(tmp_path / "checkout"), tmp_path / "work", tmp_path / "report"
    monkeypatch.setattr(r, "project_root", lambda: root)
    params = _params(tmp_path, f"work_dir: {work}\n")
    work.mkdir()
    (work / "fail").touch()
    first = cgddi_here("run", "--params", str(params), "--out", str(out))
    assert first.returncode == 1 and "told to fail" in first.stderr
    again = f"cgddi run --params {params} --out {out} --stages 01_use"
    assert again in first.stderr, first.stderr
    started = json.loads((out / "provenance.json").read_text())["started"]

    (work / "fail").unlink()
    second = cgddi_here(*again.split()[1:])
    assert second.returncode == 0, second.stderr
    prov = json.loads((out / "provenance.json").read_text())
    assert [(s["stage"], s["status"], s.get("run_started")) for s in prov["stages"]] == [
        ("00_make", "ok", started),
        ("01_use", "ok", None),
    ]
    assert [(e["started"], e["params_file"]) for e in prov["earlier_runs"]] == [(started, str(params))]
    page = (out / "index.html").read_text()
    assert f"ok (earlier run, started {started})" in page and "tab_00_t" in page and "tab_01_t" in page
    assert f"00_make: run started {started}" in page

    # 00 again: 01's tables were made from what 00 wrote before, and the index says so
    assert cgddi_here("run", "--params", str(params), "--out", str(out), "--stages", "00_make").returncode == 0
    assert "an earlier stage ran again since, so it may be out of date" in (out / "index.html").read_text()
    assert [s.get("outdated") for s in json.loads((out / "provenance.json").read_text())["stages"]] == [None, True]

    # a run of every stage makes the whole report itself: nothing is carried
    assert cgddi_here("run", "--params", str(params), "--out", str(out)).returncode == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert "earlier_runs" not in prov and all("run_started" not in s for s in prov["stages"])


def test_a_rerun_leaves_no_table_of_an_earlier_run_in_the_report(tmp_path, cgddi_here, monkeypatch):
    """The report holds of each stage a run selects only what this run made: a table the rerun no longer writes is
    gone from the folder and the index, and a stage a failed run did not reach shows nothing."""
    import cgddi.run as r

    root, work, out = _two_stage_checkout(tmp_path / "checkout"), tmp_path / "work", tmp_path / "report"
    monkeypatch.setattr(r, "project_root", lambda: root)
    params = _params(tmp_path, f"work_dir: {work}\n")
    work.mkdir()
    run = lambda *stages: cgddi_here("run", "--params", str(params), "--out", str(out), *stages)
    (work / "extra").touch()
    assert run().returncode == 0
    assert (out / "tables" / "tab_01_extra.csv").exists() and "tab_01_extra" in (out / "index.html").read_text()

    (work / "extra").unlink()
    assert run("--stages", "01_use").returncode == 0
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["tab_00_t.csv", "tab_01_t.csv"]
    assert "tab_01_extra" not in (out / "index.html").read_text()

    (work / "fail_00").touch()
    assert run().returncode == 1
    page = (out / "index.html").read_text()
    assert list((out / "tables").iterdir()) == [] and "tab_00_t" not in page and "tab_01_t" not in page
    assert not (out / "notebooks" / "01_use.ipynb").exists()  # the stage it did not reach: not run, no notebook
    assert [(s["stage"], s["status"]) for s in json.loads((out / "provenance.json").read_text())["stages"]] == [
        ("00_make", "failed"),
        ("01_use", "not run"),
    ]


def _one_stage_checkout(
    root: Path,  # folder to make the checkout in
    stage: str,  # the stage notebook's name
    *cells: str,  # its code cells after the parameters cell (work_dir, report_dir)
) -> Path:
    "A checkout of one stage notebook; returns its root."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    (root / "nbs").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    nb = new_notebook(
        cells=[
            new_code_cell("work_dir = None\nreport_dir = None", metadata={"tags": ["parameters"]}),
            *map(new_code_cell, cells),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "nbs" / f"{stage}.ipynb")
    return root


def test_a_run_with_releases_outside_the_requirements_says_so_in_its_report(tmp_path, cgddi_here, monkeypatch):
    "--any-releases runs, and the report's facts and provenance.json name what was outside the requirements."
    import cgddi.run as r

    root = _one_stage_checkout(tmp_path / "checkout", "00_nothing", "pass")
    monkeypatch.setattr(r, "project_root", lambda: root)
    monkeypatch.setattr(r, "declared_requirements", lambda pyproject=None: ["pandas>=1000", "numpy>=1"])
    out = cgddi_here(
        "run", "--any-releases", "--params", str(_params(tmp_path, "work_dir: w\n")), "--out", str(tmp_path / "rep")
    )
    assert out.returncode == 0, out.stderr
    prov = json.loads((tmp_path / "rep" / "provenance.json").read_text())
    assert prov["releases_outside_requirements"] == {"pandas>=1000": f"pandas {pd.__version__}"}
    assert f"pandas {pd.__version__} (needs pandas&gt;=1000)" in (tmp_path / "rep" / "index.html").read_text()


def test_what_a_stage_must_say_now_reaches_the_console_once(tmp_path, cgddi_here, monkeypatch):
    """`run_notice` in a stage (as the CPU warning of a full-size model does): `cgddi run` prints each distinct line
    once, with the stage's name, even when several processes of a launch say it."""
    import cgddi.run as r

    root = _one_stage_checkout(
        tmp_path / "checkout",
        "00_note",
        "from cgddi.report import run_notice\n"
        "run_notice('sd_model x is a full-size model')\nrun_notice('sd_model x is a full-size model')\n"
        "run_notice('a second\\nline')",
    )
    monkeypatch.setattr(r, "project_root", lambda: root)
    out = cgddi_here("run", "--params", str(_params(tmp_path, "work_dir: w\n")), "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("00_note: sd_model x is a full-size model\n") == 1, out.stdout
    assert "00_note: a second line\n" in out.stdout


def test_a_run_skips_the_cells_tagged_skip_execution(tmp_path, cgddi_here, monkeypatch):
    """A unit test on hand-made inputs (a cell tagged `skip-execution`) runs under `nbdev-test`, not in a run: the stage
    goes on past one that would fail, and its executed notebook shows it not executed."""
    import nbformat
    import cgddi.run as r

    root = _one_stage_checkout(
        tmp_path / "checkout",
        "00_unit",
        "raise AssertionError('a unit test ran')",
        "import pathlib\npathlib.Path(work_dir, 'ran').touch()",
    )
    path = root / "nbs" / "00_unit.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = ["skip-execution"]
    nbformat.write(nb, path)
    monkeypatch.setattr(r, "project_root", lambda: root)
    work, out = tmp_path / "work", tmp_path / "report"
    done = cgddi_here("run", "--params", str(_params(tmp_path, f"work_dir: {work}\n")), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (work / "ran").exists()
    executed = {c.source.split("\n")[0]: c for c in nbformat.read(out / "notebooks" / "00_unit.ipynb", 4).cells}
    skipped, ran = executed["raise AssertionError('a unit test ran')"], executed["import pathlib"]
    assert (skipped.execution_count, skipped.outputs, ran.execution_count is not None) == (None, [], True)


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets: elsewhere the kernel talks over TCP")
def test_a_stage_kernel_talks_over_its_own_unix_sockets(tmp_path, cgddi_here, monkeypatch):
    """The stage's kernel is reached over Unix sockets in a folder of the run's own (no TCP port another process could
    take before the kernel binds it), and the folder is gone when the stage ends. The executed notebook keeps what a
    front end shows of a progress bar: its last refresh, not one output per refresh, and nothing of a nested bar that
    does not stay."""
    import cgddi.run as r

    root = _one_stage_checkout(
        tmp_path / "checkout",
        "00_conn",
        "import pathlib; from ipykernel.connect import get_connection_info\n"
        "pathlib.Path(work_dir).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(work_dir, 'connection.json').write_text(get_connection_info())",
        "from cgddi.report import progress_bar\nprint('before')\n"
        "for i in progress_bar(range(30), desc='steps', mininterval=0): pass\nprint('after')",
        # nested bars write a line per refresh, which no front end folds
        "for i in progress_bar(range(2), desc='outer'):\n"
        "    for j in progress_bar(range(50), desc='inner', mininterval=0, leave=False): pass",
        # loading a pipeline (diffusers' bar) and its text encoder (transformers')
        "import tempfile\nfrom diffusers import StableDiffusionPipeline\nfrom cgddi.diffusion import resolve_model\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    StableDiffusionPipeline.from_pretrained(resolve_model('tiny', d), safety_checker=None, "
        "requires_safety_checker=False)",
    )
    monkeypatch.setattr(r, "project_root", lambda: root)
    work, outer_warnings = tmp_path / "w", os.environ.get("PYTHONWARNINGS")
    out = cgddi_here("run", "--params", str(_params(tmp_path, f"work_dir: {work}\n")), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    conn = json.loads((work / "connection.json").read_text())
    assert conn["transport"] == "ipc", conn
    sockets = Path(conn["ip"]).parent
    assert sockets.name.startswith("cgddi-kernel-") and not sockets.exists()
    outputs = json.loads((tmp_path / "rep" / "notebooks" / "00_conn.ipynb").read_text())["cells"][-3]["outputs"]
    bars = [o for o in outputs if o.get("name") == "stderr" and "steps" in "".join(o["text"])]
    assert len(bars) == 1 and "".join(bars[0]["text"]).strip().startswith("steps: 100%|"), outputs
    assert "".join(bars[0]["text"]).count("steps:") == 1, bars
    assert not any("IProgress not found" in "".join(o.get("text", "")) for o in outputs), (
        outputs
    )  # with ipywidgets or not
    assert os.environ.get("PYTHONWARNINGS") == outer_warnings  # the kernel's setting, not this process's
    # under `cgddi run` a bar's refreshes reach the notebook at most every NOTEBOOK_REFRESH_S, and a bar that does not
    # stay (leave=False) none at all: the console's line shows it; the notebook keeps the outer bar, without the
    # cursor-up codes nested text bars write
    cells = json.loads((tmp_path / "rep" / "notebooks" / "00_conn.ipynb").read_text())["cells"]
    nested = cells[-2]["outputs"]
    text = "".join("".join(o.get("text", "")) for o in nested)
    assert "inner" not in text and "\x1b[A" not in text and text.count("outer: 100%") == 1, nested
    # no loading bars of diffusers, transformers or the hub (text, or widgets where ipywidgets is installed)
    assert cells[-1]["outputs"] == [], cells[-1]["outputs"]


# a process in a stage kernel's process group that records a SIGINT sent to the group (argv: the file to write)
_SIGINT_WATCHER = (
    "import os, pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGINT, lambda *a: (pathlib.Path(sys.argv[1]).write_text('SIGINT'), sys.exit(0)))\n"
    "pathlib.Path(sys.argv[1] + '.pid').write_text(str(os.getpid()))\n"
    "time.sleep(60)"
)


@pytest.mark.skipif(os.name != "posix", reason="process groups and SIGINT")
def test_a_finished_stage_kernel_is_shut_down_without_an_interrupt(tmp_path, cgddi_here, monkeypatch):
    """jupyter_client interrupts a kernel before every shutdown, and a kernel still handling a message then logs
    "KeyboardInterrupt caught in kernel" at ERROR, in the console of a run that went well: a stage's kernel that has
    finished its notebook is shut down without SIGINT to its process group."""
    import cgddi.run as r

    flag = tmp_path / "sigint"
    root = _one_stage_checkout(
        tmp_path / "checkout",
        "00_quiet",
        "import pathlib, subprocess, sys, time\n"
        f"watcher = subprocess.Popen([sys.executable, '-c', {_SIGINT_WATCHER!r}, {str(flag)!r}])\n"
        f"while not pathlib.Path({str(flag) + '.pid'!r}).exists(): time.sleep(0.05)",
    )
    monkeypatch.setattr(r, "project_root", lambda: root)
    try:
        out = cgddi_here(
            "run", "--params", str(_params(tmp_path, f"work_dir: {tmp_path / 'w'}\n")), "--out", str(tmp_path / "rep")
        )
        assert out.returncode == 0, out.stderr
        time.sleep(1)  # a signal sent at the shutdown has reached the watcher by now
        assert not flag.exists(), "the finished kernel's process group got SIGINT"
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((tmp_path / "sigint.pid").read_text()), signal.SIGKILL)


def test_a_later_stage_in_a_work_dir_without_00_stops_before_running(tmp_path, cgddi_here):
    "`--stages 06` in a work dir 00_data has not made is refused before any kernel starts, with what to run instead."
    p = _params(tmp_path, "work_dir: fresh\n")
    r = cgddi_here("run", "--params", str(p), "--stages", "06", "--out", str(tmp_path / "report"))
    assert r.returncode == 2 and f"work_dir {tmp_path / 'fresh'} holds no data/ddi.csv" in r.stderr, r.stderr
    assert f"cgddi run --params {p}" in r.stderr
    assert not (tmp_path / "report").exists() and not (tmp_path / "fresh").exists()


def test_the_stages_rules_are_read_by_a_child_once_per_source(tmp_path, monkeypatch):
    """value_rules keeps what its child read in the user's cache: the next process reads the file and starts no child;
    a changed source file gives another key."""
    import shutil
    import cgddi
    from cgddi import run as r

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    where = tuple((s.name, s.module, s.config) for s in r.STAGES.values())
    first = r._rules_in_child.__wrapped__(where)  # past this process's own memo
    assert len(list((tmp_path / "cache" / "cgddi").glob("value-rules-*.pickle"))) == 1

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(r.subprocess, "run", no_child)
    assert r._rules_in_child.__wrapped__(where) == first
    (tmp_path / "src").mkdir()
    for f in Path(cgddi.__file__).parent.glob("*.py"):
        shutil.copy(f, tmp_path / "src")
    here, there = r._rules_file(where), r._rules_file(where, tmp_path / "src")
    # another checkout of the same source: its own file (a rule names the checkout's shipped mini), the same source key
    assert here.name.split("-")[2] != there.name.split("-")[2] and here.name.split("-")[3] == there.name.split("-")[3]
    (tmp_path / "src" / "lora.py").write_text((tmp_path / "src" / "lora.py").read_text() + "# changed\n")
    changed = r._rules_file(where, tmp_path / "src")
    assert changed.name.split("-")[2] == there.name.split("-")[2] and changed != there


def test_a_notebooks_parameters_are_read_by_papermill_once_per_content(tmp_path, monkeypatch):
    """declared_parameters (and parameter_defaults) keep papermill's reading in the user's cache: a fresh process
    (`cgddi status`) reads the file without importing papermill; an edited notebook is read again and replaces its old
    file."""
    import os
    import nbformat
    from cgddi.run import declared_parameters, parameter_defaults

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nb_path = tmp_path / "00_x.ipynb"

    def write(source):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nb_path)

    write("a: int = 1\nb: Optional[str] = None\nc: list = [36, 37]\nd: float = math.pi\n")
    assert declared_parameters(nb_path) == {"a": "int", "b": "Optional[str]", "c": "list", "d": "float"}
    # the values the cell gives; an expression is not a literal, so none is known for it
    assert parameter_defaults(nb_path) == {"a": 1, "b": None, "c": [36, 37]}
    kept = list((tmp_path / "cache" / "cgddi").glob("parameter-cells-*.json"))
    assert len(kept) == 1
    code = (
        "import sys; from cgddi.run import declared_parameters as d; "
        f"print(d({str(nb_path)!r})['c'], 'papermill' in sys.modules, 'nbformat' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert out.stdout.strip() == "list False False", out.stderr[-2000:]
    write("a: int = 1\nc: float = 2.0\n")  # an edit: papermill reads it again
    assert declared_parameters(nb_path) == {"a": "int", "c": "float"}
    assert [p.name for p in (tmp_path / "cache" / "cgddi").glob("parameter-cells-*.json")] != [kept[0].name]
    assert len(list((tmp_path / "cache" / "cgddi").glob("parameter-cells-*.json"))) == 1
