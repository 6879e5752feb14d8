"""A disease's own settings (`params/diseases/<slug>.yaml`): that disease's token and adapter train with them, every
other disease's stay as they were; `cgddi params` hands them to a papermill batch; a misspelt slug is an error."""

import json, shutil
from pathlib import Path
import pytest
import yaml
from conftest import TINY_TI, TINY_LORA
from cgddi.lora import LoRAConfig, lora_rank, train_loras
from cgddi.manifest import read_concepts
from cgddi.run import main
from cgddi.textual_inversion import TIConfig, train_textual_inversion


def _facts(work: Path, slug: str) -> tuple[dict, dict]:
    "ti.json and lora.json of a disease's shared token and adapter."
    return tuple(
        json.loads((work / s / "shared" / slug / f).read_text())
        for s, f in [("textual_inversion", "ti.json"), ("lora", "lora.json")]
    )


def test_a_disease_with_its_own_settings_is_trained_again_alone(lora_work, tmp_path):
    work = Path(shutil.copytree(lora_work, tmp_path / "work"))
    own, other = read_concepts(work, "lora").disease_slug.iloc[:2]
    before = {s: _facts(work, s) for s in (own, other)}
    adapter = work / "lora" / "shared" / other / "pytorch_lora_weights.safetensors"
    untouched = adapter.stat().st_mtime_ns
    train_textual_inversion(work, TIConfig(**TINY_TI, disease_settings={own: {"steps": 3}}))
    train_loras(work, LoRAConfig(**TINY_LORA, disease_settings={own: {"steps": 4, "rank": 3}}))
    ti, lora = _facts(work, own)
    assert len(ti["losses"]) == 3 and ti["settings"]["steps"] == 3  # the fixture trained 2 steps
    assert len(lora["losses"]["instance"]) == len(lora["losses"]["prior"]) == 4
    assert lora_rank(work / "lora" / "shared" / own / "pytorch_lora_weights.safetensors") == 3
    assert ti["params_hash"] != before[own][0]["params_hash"]
    assert _facts(work, other) == before[other] and adapter.stat().st_mtime_ns == untouched  # not trained again
    # without the file again, the disease goes back to the section's settings
    train_textual_inversion(work, TIConfig(**TINY_TI))
    assert _facts(work, own)[0]["params_hash"] == before[own][0]["params_hash"]


@pytest.mark.parametrize("train", ["textual_inversion", "lora"])
def test_a_misspelt_disease_file_is_named(lora_work, train):
    config, stage = (TIConfig, train_textual_inversion) if train == "textual_inversion" else (LoRAConfig, train_loras)
    tiny = TINY_TI if train == "textual_inversion" else TINY_LORA
    # a slug no DDI disease has: refused when the settings are made (with the params file, before any stage)
    with pytest.raises(
        ValueError, match=r"params/diseases/melanomma.yaml\): no disease has the slug 'melanomma' \(did"
    ):
        config(**tiny, disease_settings={"melanomma": {"steps": 3}})
    # a file named after one of DDI's raw labels: the slug of the disease it is joined into
    with pytest.raises(ValueError, match=r"'melanoma-in-situ' \(stands for 'melanoma': name the file melanoma.yaml\)"):
        config(**tiny, disease_settings={"melanoma-in-situ": {"steps": 3}})
    # a DDI disease the work dir's data does not have (the benchmark has no abscess): refused when the stage reads it
    with pytest.raises(ValueError, match=r"params/diseases/abscess.yaml: no disease \['abscess'\] in .*ddi.csv"):
        stage(lora_work, config(**tiny, disease_settings={"abscess": {"steps": 3}}))


def test_cgddi_params_hands_a_disease_file_to_a_papermill_batch(tmp_path, capsys):
    params = tmp_path / "ddi.yaml"
    params.write_text("work_dir: work\nstages:\n  04_lora: {steps: 750}\n")
    (tmp_path / "diseases").mkdir()
    (tmp_path / "diseases" / "melanoma.yaml").write_text("stages:\n  04_lora: {steps: 1500}\n")
    assert main(["params", "--params", str(params), "04_lora"]) == 0
    flat = yaml.safe_load(capsys.readouterr().out)
    assert flat["steps"] == 750 and flat["disease_settings"] == {"melanoma": {"steps": 1500}}
    (tmp_path / "diseases" / "melanoma.yaml").write_text("stages:\n  04_lora: {resolution: 256}\n")
    assert main(["run", "--params", str(params), "--stages", "04_lora"]) == 2  # refused before anything runs
    said = capsys.readouterr().err
    assert "melanoma.yaml): 'resolution' cannot differ per disease" in said
    assert not (tmp_path / "work").exists()
