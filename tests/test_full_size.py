"""Full-size architectures (SD 2.1-base, Kandinsky 2.2) with random weights through the stages' own code on this CPU:
one textual-inversion step, one LoRA step with prior preservation at 512 px, one img2img call of 2 steps, one Kandinsky
inpainting call. `pytest -m slow tests/test_full_size.py -s` prints each step's time and the process's peak memory."""

import json, resource, time
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from cgddi.tiny import random_pipeline, weights_label, FULL_SIZE_LABEL
from cgddi.data import read_data, read_split, write_splits
from cgddi.manifest import read_manifest
from cgddi.textual_inversion import TIConfig, train_textual_inversion
from cgddi.lora import LoRAConfig, train_loras
from cgddi.semantic import SemanticConfig, sample_semantic
from cgddi.healthy import HealthyConfig, make_healthy

pytestmark = pytest.mark.slow


def _report(what, start):
    "Print a step's wall time and the process's peak resident memory so far."
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"\n{what}: {time.perf_counter() - start:.0f} s, peak RSS so far {peak:.1f} GiB")


@pytest.fixture(scope="module")
def sd21(tmp_path_factory):
    return random_pipeline("sd21-base", tmp_path_factory.mktemp("models") / "sd21-base")


@pytest.fixture(scope="module")
def full_work(healthy_work, tmp_path_factory):
    "A private copy of the benchmark work dir and the disease trained at full size (the one with most images)."
    import shutil

    work = shutil.copytree(healthy_work, tmp_path_factory.mktemp("full") / "work")
    ddi = read_data(work)
    write_splits(ddi, work, seeds=[36])
    split = read_split(work, "faithful", 36)
    return work, ddi[ddi.ddi_id.isin(split.ddi_id[split.split != "test"])].disease_slug.value_counts().index[0]


@pytest.fixture(scope="module")
def ti_done(full_work, sd21):
    work, slug = full_work
    start = time.perf_counter()
    train_textual_inversion(work, TIConfig(sd_model=str(sd21), resolution=512, steps=1, batch_size=1, diseases=[slug]))
    _report("textual inversion, 1 step at 512 px (SD 2.1-base)", start)
    return work, slug


@pytest.fixture(scope="module")
def lora_done(ti_done, sd21):
    work, slug = ti_done
    start = time.perf_counter()
    train_loras(
        work,
        LoRAConfig(
            sd_model=str(sd21),
            resolution=512,
            steps=1,
            batch_size=1,
            max_class_images=2,
            rank=8,
            prior_preservation=True,
            diseases=[slug],
        ),
    )
    _report("LoRA with prior preservation, 1 step at 512 px (1 instance + 1 class image)", start)
    return work, slug


def test_sd21_written_as_full_size(sd21):
    assert weights_label(sd21) == FULL_SIZE_LABEL and not list(sd21.rglob("*.bin"))
    test_unet = json.loads((sd21 / "unet" / "config.json").read_text())
    assert test_unet["block_out_channels"] == [320, 640, 1280, 1280] and test_unet["cross_attention_dim"] == 1024
    assert (sd21 / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size > 3e9  # 866 M float32 weights


def test_textual_inversion_step(ti_done):
    work, slug = ti_done
    concepts = pd.read_csv(next((work / "textual_inversion").glob("*/concepts.csv")))
    row = concepts.set_index("disease_slug").loc[slug]
    embeds = load_file(work / row.embeds)
    assert list(embeds) == [f"<{slug}>"] and embeds[f"<{slug}>"].shape == (1, 1024)  # OpenCLIP-H's width
    assert torch.isfinite(embeds[f"<{slug}>"]).all()


def test_lora_step_with_prior_preservation(lora_done):
    work, slug = lora_done
    concepts = pd.read_csv(next((work / "lora").glob("*/concepts.csv"))).set_index("disease_slug")
    weights = load_file(work / concepts.loc[slug].lora)
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    # rank 8
    assert {w.shape[0] for k, w in weights.items() if k.endswith(("lora.down.weight", "lora_A.weight"))} == {8}
    facts = json.loads((work / concepts.loc[slug].lora).with_name("lora.json").read_text())
    assert facts["n_class"] == 2 and len(facts["losses"]["instance"]) == len(facts["losses"]["prior"]) == 1, facts[
        "losses"
    ]


def test_img2img_call(lora_done, sd21):
    work, slug = lora_done
    start = time.perf_counter()
    # 0.725 x 3: 2 steps
    cfg = SemanticConfig(sd_model=str(sd21), resolution=512, steps=3, limit=1, batch_size=1, diseases=[slug])
    sample_semantic(work, cfg)
    _report("img2img, 1 image, 2 denoising steps at 512 px with guidance (SD 2.1-base + fused LoRA)", start)
    rows = read_manifest(work, "semantic")
    assert len(rows) == 1 and rows.synthetic.all() and FULL_SIZE_LABEL in rows.generator.iloc[0]
    image = Image.open(work / rows.image.iloc[0])
    assert image.size == (cfg.out_size, cfg.out_size) and np.asarray(image).std() > 0


def test_kandinsky_inpainting_call(work_copy, tmp_path):
    start = time.perf_counter()
    prior = random_pipeline("kandinsky-2-2-prior", tmp_path / "prior", dtype=torch.bfloat16)
    decoder = random_pipeline("kandinsky-2-2-decoder-inpaint", tmp_path / "decoder", dtype=torch.bfloat16)
    _report("Kandinsky 2.2 prior + inpainting decoder written (bfloat16)", start)
    start = time.perf_counter()
    cfg = HealthyConfig(
        backend="kandinsky",
        kandinsky_prior=str(prior),
        kandinsky_decoder=str(decoder),
        dtype="bf16",
        device="cpu",
        steps=2,
        prior_steps=2,
        inpaint_size=512,
        limit=1,
    )
    sheet = make_healthy(work_copy, cfg)
    _report("Kandinsky 2.2 inpainting: prior (2 steps) + decoder (2 steps) at 512 px, 1 image, bfloat16", start)
    rows = read_manifest(work_copy, "healthy", kept_only=False)  # random weights: QC may flag the image
    assert len(sheet) == 1 and FULL_SIZE_LABEL in rows.generator.iloc[0]
    assert Image.open(work_copy / rows.image.iloc[0]).size == (256, 256)
