"Each stage's config against its notebook's parameters cell: the same names and the same defaults."

import ast, dataclasses, shutil
import papermill as pm
import pytest
from safetensors.torch import load_file, save_file
from cgddi.run import STAGES, project_root, stage_config
from cgddi.tiny import mini_sd

ROOT = project_root()
RUN_WIDE = {"work_dir", "report_dir"}  # given by `cgddi run` to every stage, not part of a stage's settings


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@pytest.mark.parametrize("stage", list(STAGES))
def test_config_fields_are_the_notebook_parameters(stage):
    declared = pm.inspect_notebook(str(ROOT / "nbs" / f"{stage}.ipynb"))
    params = {k: ast.literal_eval(v["default"]) for k, v in declared.items() if k not in RUN_WIDE}
    fields = {f.name: _default(f) for f in dataclasses.fields(stage_config(stage))}
    assert set(params) - set(fields) == set(), f"{stage}.ipynb declares parameters its config lacks"
    assert set(fields) - set(params) == set(), (
        f"{stage_config(stage).__name__} has fields {stage}.ipynb does not declare"
    )
    differ = {k: (params[k], fields[k]) for k in params if params[k] != fields[k] or type(params[k]) != type(fields[k])}
    assert differ == {}, f"defaults differ (notebook, config): {differ}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_unhashed_and_memory_names_are_fields(stage):
    cls = stage_config(stage)
    assert set(cls.unhashed) - {f.name for f in dataclasses.fields(cls)} == set()
    assert set(cls.memory_knobs) - {f.name for f in dataclasses.fields(cls)} == set()  # what OutOfMemory names


def test_a_per_disease_batch_keeps_the_images_it_shares():
    "Which diseases, how many rows, batch and chunk sizes choose or schedule images; the sampler's settings shape them."
    cfg = stage_config("05_semantic")()
    same = dataclasses.replace(
        cfg, diseases=["melanoma"], limit=3, batch_size=7, chunk_size=2, num_processes=4, repeats=5
    )
    assert same.params_hash() == cfg.params_hash()
    for change in [dict(steps=cfg.steps + 1), dict(strength=0.5), dict(seed=1), dict(sd_model="other/model")]:
        assert dataclasses.replace(cfg, **change).params_hash() != cfg.params_hash(), change


@pytest.mark.parametrize("stage", list(STAGES))
def test_local_files_are_fields(stage):
    cls = stage_config(stage)
    assert set(cls.local_files) - {f.name for f in dataclasses.fields(cls)} == set()


def test_a_model_copied_elsewhere_keeps_the_outputs_made_with_it(tmp_path):
    "Every diffusion stage hashes its model by content: the shipped mini, a copy of its folder, a copy retrained."
    copy = shutil.copytree(mini_sd(), tmp_path / "drive" / "mini")
    retrained = shutil.copytree(mini_sd(), tmp_path / "retrained")
    weights = retrained / "unet" / "diffusion_pytorch_model.safetensors"
    tuned = {k: v + 1e-3 for k, v in load_file(weights).items()}  # fine-tuned: other values of the same shapes
    save_file(tuned, weights, metadata={"format": "pt"})
    for stage, key, other in [
        ("01_healthy", "sd_inpaint_model", {"backend": "sd_inpaint"}),
        ("03_textual_inversion", "sd_model", {}),
        ("04_lora", "sd_model", {}),
        ("05_semantic", "sd_model", {}),
    ]:
        cls = stage_config(stage)
        mini = cls(**{key: "mini"}, **other).params_hash()
        assert cls(**{key: str(copy)}, **other).params_hash() == mini, stage
        assert cls(**{key: str(retrained)}, **other).params_hash() != mini, stage
        assert cls(**{key: "tiny"}, **other).params_hash() != mini, stage


def _type_name(t: str) -> str:
    "A declared type in one spelling: `Optional[list[int]]` and `list[int] | None` alike."
    t = t.replace(" ", "")
    if t.startswith("Optional["):
        t = t[len("Optional[") : -1] + "|None"
    return "|".join(sorted(t.split("|")))


@pytest.mark.parametrize("stage", list(STAGES))
def test_config_fields_have_the_notebook_parameters_types(stage):
    "A params file is checked against the notebook's types, a config built in Python against its fields': the same."
    declared = pm.inspect_notebook(str(ROOT / "nbs" / f"{stage}.ipynb"))
    fields = {f.name: f.type for f in dataclasses.fields(stage_config(stage))}
    differ = {
        k: (v["inferred_type_name"], fields[k])
        for k, v in declared.items()
        if k in fields and _type_name(v["inferred_type_name"]) != _type_name(str(fields[k]))
    }
    assert differ == {}, f"types differ (notebook, config): {differ}"


def test_list_elements_are_checked():
    "A split seed given by the paper's name fails when the config is made, not as `cfg.seed + 'S36'` in a run."
    cls = stage_config("06_classify")
    with pytest.raises(ValueError, match=r"key 'seeds' = \['S36'\] is not list\[int\] \| None"):
        cls(seeds=["S36"])
    assert cls(seeds=(36, 37)).seeds == (36, 37)
    with pytest.raises(ValueError, match=r"key 'split_seeds' = \[36, 37.0\] is not list\[int\]"):
        stage_config("00_data")(split_seeds=[36, 37.0])


@pytest.mark.parametrize("stage", ["03_textual_inversion", "04_lora", "05_semantic"])
def test_an_empty_or_misnamed_disease_batch_is_refused(stage):
    "`diseases: []` (a per-disease batch whose list came out empty) would train or sample nothing and say nothing."
    with pytest.raises(ValueError, match=r"key 'diseases': \[\] is empty: name one or more diseases .*, or null"):
        stage_config(stage)(diseases=[])
    assert stage_config(stage)(diseases=["melanoma"]).diseases == ["melanoma"]
    # a name that is no DDI disease is refused when the settings are made: a slip with its nearest name, one of DDI's
    # 78 raw labels with the joined name it stands for
    with pytest.raises(ValueError, match=r"'melanma' is none of the diseases .* \(did you mean 'melanoma'\?\)"):
        stage_config(stage)(diseases=["melanma"])
    with pytest.raises(ValueError, match=r"'nodular-melanoma-\(nm\)' \(stands for 'melanoma': name that\) is none"):
        stage_config(stage)(diseases=["basal_cell_carcinoma", "nodular-melanoma-(nm)"])
