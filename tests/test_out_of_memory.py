"""Running out of device memory: each stage stops with one `OutOfMemory` naming its settings and their values;
semantic sampling halves its batch instead and makes the same images."""

import dataclasses, shutil
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
import cgddi.classify, cgddi.healthy, cgddi.lora, cgddi.textual_inversion
from cgddi.config import OutOfMemory
from cgddi.data import read_data, write_splits
from cgddi.classify import ClassifyConfig, run_experiments
from cgddi.healthy import HealthyConfig, make_healthy
from cgddi.lora import LoRAConfig, train_loras
from cgddi.manifest import read_concepts, read_manifest
from cgddi.semantic import SemanticConfig, SemanticSampler, sample_semantic
from cgddi.textual_inversion import TIConfig, train_textual_inversion

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 14.56 GiB"
# 3 plan rows of each disease: a first call of 3 images (kept short: the suite's time)
SAMPLER = SemanticConfig(
    repeats=1, steps=4, resolution=32, out_size=64, batch_size=3, chunk_size=5, limit=3, device="cpu"
)


def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError(OOM)


def _says_what_to_change(error: OutOfMemory, stage: str, doing: str, cfg):
    "The message names the stage, what it did, every memory setting with its value, and keeps PyTorch's error."
    said = str(error)
    assert said.startswith(f"{stage} ran out of memory while {doing}"), said
    for knob in cfg.memory_knobs:
        assert f"{knob} = {getattr(cfg, knob)!r} (" in said, knob
    assert f"`{stage}` section of the params file" in said and said.endswith(OOM)
    assert isinstance(error.__cause__, torch.OutOfMemoryError)


@pytest.mark.parametrize("stage", ["03_textual_inversion", "04_lora"])
def test_a_training_that_runs_out_of_memory_names_its_settings(lora_work, tmp_path, monkeypatch, stage):
    work = Path(shutil.copytree(lora_work, tmp_path / "work"))
    concept = read_concepts(work, "lora").iloc[0]
    if stage == "03_textual_inversion":
        module, cfg, train = cgddi.textual_inversion, TIConfig(resolution=32, steps=3), train_textual_inversion
        doing = f"training the token of {concept.disease_joined} (shared)"
    else:
        module, cfg, train = cgddi.lora, LoRAConfig(rank=2, resolution=32, steps=3), train_loras
        doing = f"training the adapter of {concept.token} (shared)"
    monkeypatch.setattr(module, "diffusion_loss", _oom)  # other steps than the fixture's: every one retrains
    with pytest.raises(OutOfMemory) as e:
        train(work, dataclasses.replace(cfg, diseases=[concept.disease_slug]))
    _says_what_to_change(e.value, stage, doing, cfg)


def test_healthy_inpainting_that_runs_out_of_memory_names_its_settings(work_copy, monkeypatch):
    monkeypatch.setattr(cgddi.healthy, "qc_scores", _oom)
    cfg = HealthyConfig(backend="opencv", batch_size=1)
    with pytest.raises(OutOfMemory) as e:
        make_healthy(work_copy, cfg)
    first = int(read_data(work_copy).query("frame_mask_path.notna()").ddi_id.min())
    _says_what_to_change(e.value, "01_healthy", f"repainting DDI {first}", cfg)


def test_a_classifier_that_runs_out_of_memory_names_its_settings(work_copy, monkeypatch):
    write_splits(read_data(work_copy), work_copy, seeds=[36])
    monkeypatch.setattr(cgddi.classify, "fit", _oom)
    cfg = ClassifyConfig(resize=40, crop=32, epochs=1, protocols=["clean"], seeds=[36], experiments=["real"])
    with pytest.raises(OutOfMemory) as e:
        run_experiments(work_copy, dataclasses.replace(cfg, real_methods=["baseline"]))
    _says_what_to_change(e.value, "06_classify", "training clean 36 real baseline", cfg)


def _pixels(work: Path) -> dict:
    return {r.image: np.asarray(Image.open(work / r.image)) for r in read_manifest(work, "semantic").itertuples()}


def test_semantic_sampling_halves_a_batch_that_runs_out_of_memory(lora_work, tmp_path, monkeypatch, capsys):
    ref, tight = (Path(shutil.copytree(lora_work, tmp_path / n)) for n in ("ref", "tight"))
    sample_semantic(ref, dataclasses.replace(SAMPLER, batch_size=1), progress=False)
    sizes, sample = [], SemanticSampler.__call__

    def fits_one(self, slug, canvases, prompts, seeds):
        sizes.append(len(canvases))
        if len(canvases) > 1:
            _oom()
        return sample(self, slug, canvases, prompts, seeds)

    monkeypatch.setattr(SemanticSampler, "__call__", fits_one)
    capsys.readouterr()
    counts = sample_semantic(tight, SAMPLER, progress=False)
    said = capsys.readouterr().out
    assert sizes[0] == 3 and set(sizes[1:]) == {1}  # halved once (3 -> 1), and the later chunks start from 1
    assert said.count("ran out of memory") == 1 and "3 images a call ran out of memory; 1 from now on" in said
    made = _pixels(tight)
    assert counts["sampled"] == len(made) == len(sizes) - 1 > 3
    expected = _pixels(ref)
    assert made.keys() == expected.keys() and all(np.array_equal(made[k], expected[k]) for k in made)


def test_semantic_sampling_that_cannot_fit_one_image_names_its_settings(lora_work, tmp_path, monkeypatch):
    work = Path(shutil.copytree(lora_work, tmp_path / "work"))
    monkeypatch.setattr(SemanticSampler, "__call__", _oom)
    with pytest.raises(OutOfMemory) as e:
        sample_semantic(work, SAMPLER, progress=False)
    slug = str(e.value).split("while sampling ")[1].split(" ")[0]
    assert slug in set(read_concepts(work, "lora").disease_slug)
    _says_what_to_change(e.value, "05_semantic", f"sampling {slug} one image at a time", SAMPLER)
    assert not list((work / "manifest").glob("semantic/*.csv"))  # no shard of a chunk left unmade
