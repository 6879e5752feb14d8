"Textual inversion, LoRA and semantic sampling on tiny models: sharding over processes, resume after a kill, bad input."
import json, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from cgddi.data import DataError, read_data, write_splits, read_split
from cgddi.diffusion import resolve_model
from cgddi.manifest import ManifestError, read_manifest, manifest_dir
from cgddi.textual_inversion import ti_training_set, train_textual_inversion
from cgddi.lora import train_loras
from cgddi.semantic import launch, sample_semantic, sampling_plan, semantic_inputs

SAMPLER = dict(repeats=1, steps=4, resolution=32, out_size=64, batch_size=3, chunk_size=5, device="cpu")

@pytest.fixture(scope="module")
def lora_work(healthy_work, tmp_path_factory):
    "healthy_work plus a split, tiny tokens and tiny adapters (read-only: copy it before sampling into it)."
    work = shutil.copytree(healthy_work, tmp_path_factory.mktemp("lora")/"work")
    ddi = read_data(work); write_splits(ddi, work, seeds=[36])
    split = read_split(work, "faithful", 36)
    model = resolve_model("tiny", work)
    train_textual_inversion(work, ti_training_set(ddi, split.ddi_id[split.split == "test"]), model, resolution=32, steps=2, batch_size=2)
    train_loras(work, model, rank=2, resolution=32, steps=2, batch_size=2)
    return work

def _copy(src, dst):
    return Path(shutil.copytree(src, dst))

def _plan(work, diseases=None, chunk_size=5, **_):
    canvases, concepts = semantic_inputs(work, diseases)
    return sampling_plan(canvases, concepts, "full", 1, chunk_size=chunk_size)

def test_two_processes_cover_the_plan_exactly_once(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path/"two")
    config = dict(model=resolve_model("tiny", work), **SAMPLER)
    out = launch(work, config, num_processes=2, timeout=600)
    reports = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", out.stdout)]  # one JSON line per process
    assert sorted(r["process"] for r in reports) == [0, 1]
    plan = _plan(work)
    assert sum(r["mine"] for r in reports) == len(plan) and all(r["mine"] > 0 for r in reports)
    manifest = read_manifest(work, "semantic")
    assert sorted(manifest.image) == sorted(plan.image)             # every planned image, once
    assert all((work/p).exists() for p in plan.image)
    assert (manifest.trained.astype(str) == "True").all() and manifest.n_train_samples.notna().all()
    # the images do not depend on how the plan was split: one process makes the same ones
    one = _copy(lora_work, tmp_path/"one")
    sample_semantic(one, **dict(config, model=resolve_model("tiny", one)), progress=False)
    for p in plan.image[:: max(1, len(plan) // 10)]:
        a, b = (np.asarray(Image.open(w/p), np.int16) for w in (work, one))
        assert np.abs(a - b).max() <= 2, p

def test_resume_after_kill(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path/"w")
    slug = pd.read_csv(work/"lora"/"concepts.csv").disease_slug.iloc[0]  # one disease keeps the test short
    config = dict(model=resolve_model("tiny", work), diseases=[slug], **dict(SAMPLER, steps=20, batch_size=1, chunk_size=3))
    cfg = tmp_path/"config.json"; cfg.write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "cgddi.semantic", "--work-dir", str(work), "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    images = work/"semantic"/"images"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(images.rglob("*.png"))) < 8: time.sleep(0.1)
    proc.send_signal(signal.SIGKILL); proc.wait()
    before = {p: p.stat().st_mtime_ns for p in images.rglob("*.png")}
    plan = _plan(work, [slug], chunk_size=3)
    assert 8 <= len(before) < len(plan), "the kill should land mid-run"
    counts = sample_semantic(work, progress=False, **config)
    assert counts["skipped"] >= len(before) and counts["sampled"] == len(plan) - counts["skipped"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished images are not redone
    manifest = read_manifest(work, "semantic")
    assert sorted(manifest.image) == sorted(plan.image)
    assert not list(work.rglob(".*.tmp*"))                              # no half-written file left behind
    again = sample_semantic(work, progress=False, **config)              # a finished run does nothing
    assert again["sampled"] == 0 and again["skipped"] == len(plan)

def test_bad_input(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path/"w")
    model = resolve_model("tiny", work)
    with pytest.raises(DataError, match="tone"): sample_semantic(work, model, tones=["olive"], **SAMPLER)
    with pytest.raises(DataError, match="no adapter for disease"): sample_semantic(work, model, diseases=["not-a-disease"], **SAMPLER)
    with pytest.raises(DataError, match="no adapter to sample"): sample_semantic(work, model, min_train_samples=10**6, **SAMPLER)
    ddi = read_data(work); counts = ddi.disease_joined.value_counts()
    with pytest.raises(DataError, match="too few images"): ti_training_set(ddi, [], diseases=[counts.index[-1]], min_images=counts.iloc[-1] + 1)
    shutil.rmtree(manifest_dir(work, "healthy"))
    with pytest.raises(ManifestError, match="healthy"): sample_semantic(work, model, **SAMPLER)
    with pytest.raises(ManifestError, match="healthy"): train_loras(work, model, steps=1, batch_size=1, resolution=32)
