"""Does longer textual inversion and LoRA training make the mini carry a disease? A sweep on a finished default run.

For each setting (textual inversion steps and learning rate, LoRA steps and learning rate) it trains the tokens and
adapters of a few diseases in a scratch copy of the run's 00-02 outputs (the run's own settings otherwise), samples
every kept healthy canvas once per disease as 05 does (img2img, the canvas's tone, the run's strength, guidance and
steps), and asks the run's clean real-only baselines (06) whether each image shows its disease's malignancy: 06's
recognition table, on one fixed sample per setting. Beside them: the canvases' own share called benign (1 - that is
the chance level of a malignant disease's image that only copied its canvas) and every real image of each disease,
sharp and at the generator's side (the judges' training images included: an upper bound, and what the judges can see
at that resolution). Prints seconds of 03 and 04 per setting and the shares per disease and per malignancy.

    python bench/recognition.py --work work/benchmark --params params/default.yaml     # after `cgddi run`
    python bench/recognition.py --work W --params P --settings 60:0.005:60:0.001 300:0.005:300:0.005
    python bench/recognition.py --work W --params P --settings --words 0.725:12 0.725:40 1.0:12   # words only
    python bench/recognition.py --work W --params P --settings 60:0.005:60:0.001 --strengths 0.725 1.0 \
        --initializer lesion

`--words STRENGTH:STEPS ...` also samples the canvases with each disease's look said in the mini's own caption words
(`WORDS`, from the benchmark's drawing of the disease; no token, no adapter) at that img2img strength and number of
steps: what the mini can draw when told in words, so that a low score of the trained tokens can be laid at the door
of the training (03/04) or of the sampling (05's strength and steps).
"""

import argparse, dataclasses, shutil, time
from pathlib import Path
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file
from cgddi.classify import ClassifyConfig, accelerator, make_model, model_path, predict, split_seeds
from cgddi.config import scratch_dir
from cgddi.diffusion import instance_prompt, resolve_model
from cgddi.layout import DDI_TABLE, LORA
from cgddi.lora import LoRAConfig, train_loras
from cgddi.manifest import read_manifests
from cgddi.run import stage_parameters
from cgddi.semantic import SemanticConfig, SemanticSampler
from cgddi.textual_inversion import TIConfig, train_textual_inversion

# the benchmark's looks
WORDS = {
    "melanoma": "a large black irregular lesion",
    "nevus": "a small dark brown round lesion",
    # (cgddi.benchmark), in corpus words
    "basal_cell_carcinoma": "a pink round lesion",
    "seborrheic_keratosis": "a brown oval lesion",
}


def config(cls, params: Path, stage: str, **changes):
    "A stage's config as `cgddi run` builds it from `params`, with `changes`."
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in stage_parameters(params, stage).items() if k in names} | changes)


def sample(work: Path, out: Path, diseases: list, cfg: SemanticConfig) -> pd.DataFrame:
    "Every kept healthy canvas once per disease, in the canvas's tone; rows: path, disease_joined, malignant, tone."
    concepts = pd.read_csv(work / LORA / "shared" / "concepts.csv")
    canvases = read_manifests(work, ("healthy",))["healthy"]
    sampler, by_slug, rows = (
        SemanticSampler(work, resolve_model(cfg.sd_model, work), concepts, cfg),
        concepts.set_index("disease_slug"),
        [],
    )
    out.mkdir(parents=True, exist_ok=True)
    for slug in diseases:
        for i in range(0, len(canvases), cfg.batch_size):
            batch = canvases.iloc[i : i + cfg.batch_size]
            prompts = [instance_prompt(by_slug.loc[slug, "token"], t) for t in batch.tone]
            for base_id, tone, image in zip(
                batch.base_id,
                batch.tone,
                sampler(slug, [Image.open(work / p) for p in batch.image], prompts, list(range(i, i + len(batch)))),
            ):
                image.save(out / f"{slug}_{base_id}.png")
                rows.append(
                    dict(
                        path=str(out / f"{slug}_{base_id}.png"),
                        disease_joined=by_slug.loc[slug, "disease_joined"],
                        malignant=bool(by_slug.loc[slug, "malignant"]),
                        tone=tone,
                    )
                )
    return pd.DataFrame(rows)


def sample_words(
    work: Path, out: Path, diseases: list, cfg: SemanticConfig, strength: float, steps: int
) -> pd.DataFrame:
    "Every kept canvas once per disease, img2img with the disease's `WORDS` in 05's prompt; rows as `sample`."
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        resolve_model(cfg.sd_model, work), use_safetensors=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    ddi = pd.read_csv(work / DDI_TABLE).drop_duplicates("disease_slug").set_index("disease_slug")
    canvases, rows = read_manifests(work, ("healthy",))["healthy"].drop_duplicates("base_id"), []
    out.mkdir(parents=True, exist_ok=True)
    for slug in diseases:
        for i in range(0, len(canvases), cfg.batch_size):
            batch = canvases.iloc[i : i + cfg.batch_size]
            images = pipe(
                prompt=[instance_prompt(WORDS[slug], t) for t in batch.tone],
                strength=strength,
                guidance_scale=cfg.guidance,
                image=[
                    Image.open(work / p).convert("RGB").resize((cfg.resolution,) * 2, Image.Resampling.BICUBIC)
                    for p in batch.image
                ],
                num_inference_steps=steps,
                generator=[torch.Generator().manual_seed(j) for j in range(i, i + len(batch))],
            ).images
            for base_id, tone, image in zip(batch.base_id, batch.tone, images):
                path = out / f"{slug}_{base_id}.png"
                image.resize((cfg.out_size,) * 2, Image.Resampling.BICUBIC).save(path)
                rows.append(
                    dict(
                        path=str(path),
                        disease_joined=ddi.loc[slug, "disease_joined"],
                        malignant=bool(ddi.loc[slug, "malignant"]),
                        tone=tone,
                    )
                )
    return pd.DataFrame(rows)


def at_side(table: pd.DataFrame, side: int, out: Path) -> pd.DataFrame:
    "The images of `table` brought to `side` px and back to 256 (what a generator painting at `side` could show)."
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in table.path:
        q = out / Path(p).name
        Image.open(p).convert("RGB").resize((side, side), Image.Resampling.BICUBIC).resize(
            (256, 256), Image.Resampling.BICUBIC
        ).save(q)
        paths.append(str(q))
    return table.assign(path=paths)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="a finished run's work dir (00-06 done)")
    ap.add_argument("--params", type=Path, required=True, help="that run's params file")
    ap.add_argument(
        "--diseases", nargs="+", default=["melanoma", "basal_cell_carcinoma", "nevus", "seborrheic_keratosis"]
    )
    ap.add_argument(
        "--settings",
        nargs="*",
        default=["60:0.005:60:0.001", "300:0.005:300:0.001", "300:0.005:300:0.005"],
        help="TI_STEPS:TI_LR:LORA_STEPS:LORA_LR (the first: the default run's)",
    )
    ap.add_argument(
        "--strengths",
        nargs="+",
        type=float,
        default=None,
        help="img2img strengths to sample the trained tokens at (default: the run's)",
    )
    ap.add_argument(
        "--initializer", default=None, help="the word new tokens start from (default: the run's, 03's initializer)"
    )
    ap.add_argument(
        "--words", nargs="*", default=[], help="STRENGTH:STEPS: also sample with each disease's look in words (WORDS)"
    )
    a = ap.parse_args(argv)
    scratch = scratch_dir("cgddi-recognition-")
    judges = config(ClassifyConfig, a.params, "06_classify", cache_images=0)
    seeds = [s for s in split_seeds(a.work, judges) if model_path(a.work, "clean", "real", "baseline", s).exists()]
    if not seeds:
        raise SystemExit(f"{a.work}: no clean real-only baseline models; run 06_classify first.")
    ddi = pd.read_csv(a.work / DDI_TABLE).assign(path=lambda d: [str(a.work / p) for p in d.frame_path])
    semantic_cfg = config(SemanticConfig, a.params, "05_semantic", device="cpu")
    ddi = ddi[ddi.disease_slug.isin(a.diseases)]
    canvases = (
        read_manifests(a.work, ("healthy",))["healthy"]
        .drop_duplicates("base_id")
        .assign(path=lambda d: [str(a.work / p) for p in d.image], malignant=False, disease_joined="(canvas)")
    )
    sets = {
        "real": ddi,
        f"real at {semantic_cfg.resolution} px": at_side(ddi, semantic_cfg.resolution, scratch / "low"),
        "canvas": canvases,
    }
    times = []
    for setting in a.settings:
        ti_steps, ti_lr, lora_steps, lora_lr = setting.split(":")
        work = scratch / setting.replace(":", "_")
        for part in ("benchmark", "data", "splits", "healthy", "manifest"):
            shutil.copytree(a.work / part, work / part, symlinks=True)
        shutil.rmtree(work / "manifest" / "semantic", ignore_errors=True)
        t0 = time.perf_counter()
        train_textual_inversion(
            work,
            config(
                TIConfig,
                a.params,
                "03_textual_inversion",
                steps=int(ti_steps),
                learning_rate=float(ti_lr),
                diseases=a.diseases,
                **({"initializer": a.initializer} if a.initializer else {}),
            ),
        )
        t1 = time.perf_counter()
        train_loras(
            work,
            config(
                LoRAConfig,
                a.params,
                "04_lora",
                steps=int(lora_steps),
                learning_rate=float(lora_lr),
                diseases=a.diseases,
            ),
        )
        t2 = time.perf_counter()
        for strength in a.strengths or [semantic_cfg.strength]:
            name = setting if a.strengths is None else f"{setting} at {strength}"
            look = work / f"look_{strength}"
            sets[name] = sample(work, look, a.diseases, dataclasses.replace(semantic_cfg, strength=strength))
        times.append(
            dict(
                setting=setting,
                ti_seconds=round(t1 - t0, 1),
                lora_seconds=round(t2 - t1, 1),
                sample_seconds=round(time.perf_counter() - t2, 1),
            )
        )
    for setting in a.words:
        strength, steps = setting.split(":")
        t0 = time.perf_counter()
        sets[f"words {setting}"] = sample_words(
            a.work, scratch / f"words_{setting}", a.diseases, semantic_cfg, float(strength), int(steps)
        )
        times.append(dict(setting=f"words {setting}", sample_seconds=round(time.perf_counter() - t0, 1)))
    acc, hits = accelerator(judges), []
    for seed in seeds:
        model = make_model("baseline", judges)
        model.load_state_dict(load_file(model_path(a.work, "clean", "real", "baseline", seed)))
        for name, table in sets.items():
            called = predict(model, table, judges, acc) >= 0.5
            hits.append(
                pd.DataFrame(
                    {
                        "set": name,
                        "seed": seed,
                        "disease": table.disease_joined.to_numpy(),
                        "malignant": table.malignant.astype(bool).to_numpy(),
                        "recognised": called == table.malignant.astype(bool).to_numpy(),
                    }
                )
            )
    hits = pd.concat(hits)
    print(pd.DataFrame(times).to_markdown(index=False))
    print(
        f"\nShare of images the {len(seeds)} clean real-only baselines call by the disease's malignancy (canvas: "
        "called benign):"
    )
    print(hits.groupby(["disease", "set"], sort=False).recognised.mean().unstack("set").round(2).to_markdown())
    print(
        "\nBy malignancy (the canvas row: its share called benign; 1 - that is the malignant diseases' chance level):"
    )
    print(hits.groupby(["malignant", "set"], sort=False).recognised.mean().unstack("set").round(3).to_markdown())


if __name__ == "__main__":
    main()
