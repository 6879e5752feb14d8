"""Semantic sampling throughput: images/s of img2img at the paper's settings, naive loop vs cgddi's sampler.

Builds SD 2.1-base from its architecture with random weights (speed does not depend on them; see bench/sd21.py),
a random rank-8 adapter and token, and samples `--images` images from 256 px canvases at `--resolution`
(paper: 512) with strength 0.725, guidance 8.75 and 100 steps (72 denoising steps):

- naive: one image per pipeline call, float16, the adapter loaded but not fused (what a first notebook does);
- cgddi: `cgddi.semantic.SemanticSampler` (bfloat16, SDPA, fused adapter) at each `--batches` size;
- compiled: the same with `torch.compile` on the UNet at the largest batch size.

It prints images/s, peak GPU memory, the share of the UNet's compute (119 TFLOP per image at 512 px,
72 steps, CFG, scaled to `--steps`; research/performance-anchors.md) per second, and how far the sampler's images
are from the naive loop's for the same seeds.

    python bench/semantic.py                                     # GPU, full size
    python bench/semantic.py --scheduler dpmpp --steps 25 --no-compile   # DPM-Solver++ (05 `scheduler: dpmpp`)
    python bench/semantic.py --tiny --device cpu --resolution 64 --steps 4 --images 4 --batches 1 2 --no-compile
                                                                 # (the line above: a CPU check of the script)
"""

import argparse, dataclasses, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from PIL import Image
from diffusers import StableDiffusionImg2ImgPipeline
from cgddi.diffusion import instance_prompt
from cgddi.semantic import SemanticConfig, SemanticSampler
import sd21

TFLOP_PER_STEP = 119 / 72  # SD-2.1-base UNet, 512 px, one denoising step with CFG (x2): 119 TFLOP for 72 steps


def canvases(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(np.clip(rng.normal((190, 140, 110), 12, (256, 256, 3)), 0, 255).astype(np.uint8))
        for _ in range(n)
    ]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def peak(device):
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tiny", action="store_true", help="cgddi's tiny model instead of SD 2.1-base (a CPU check of the script)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--strength", type=float, default=0.725)
    ap.add_argument("--guidance", type=float, default=8.75)
    ap.add_argument("--images", type=int, default=64, help="images timed per configuration (naive: a quarter of them)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument(
        "--scheduler", default="pndm", choices=["pndm", "dpmpp"], help="cgddi's solver (05 scheduler; naive: PNDM)"
    )
    ap.add_argument(
        "--root", default=None, help="folder for the random model (kept between runs); default: a temp folder"
    )
    a = ap.parse_args()
    root = Path(a.root or tempfile.mkdtemp(prefix="cgddi-bench-"))
    model = str(sd21.model(a.tiny, root))
    work = root / "work"
    concepts = pd.concat(
        [sd21.fake_concept(work, model), sd21.fake_concept(work, model, slug="bench2", seed=1)], ignore_index=True
    )
    slug, token = concepts.disease_slug[0], concepts.token[0]
    imgs = canvases(max(a.batches + [a.images]))
    prompts = [instance_prompt(token, ["light", "medium", "dark"][i % 3]) for i in range(len(imgs))]
    seeds = list(range(len(imgs)))
    name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    print(
        f"device {a.device} ({name}); model {'tiny' if a.tiny else 'SD 2.1-base architecture, random weights'}; "
        f"{a.resolution} px, {a.steps} steps x strength {a.strength}, guidance {a.guidance}"
    )
    rows = []

    # naive: one image per call, fp16 (fp32 on CPU), adapter not fused
    dt = torch.float16 if a.device == "cuda" else torch.float32
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        model, dtype=dt, use_safetensors=True, safety_checker=None, requires_safety_checker=False
    ).to(a.device)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(work / concepts.embeds[0]), token=token)
    pipe.load_lora_weights(str(work / "lora" / slug), adapter_name=slug)
    size = (a.resolution, a.resolution)

    def naive(i):
        return pipe(
            prompt=prompts[i],
            image=imgs[i].resize(size, Image.Resampling.BICUBIC),
            strength=a.strength,
            guidance_scale=a.guidance,
            num_inference_steps=a.steps,
            generator=torch.Generator("cpu").manual_seed(seeds[i]),
        ).images[0]

    naive(0)
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n_naive = max(2, a.images // 4)
    ref, t = timed(lambda: [naive(i) for i in range(n_naive)], a.device)
    rows.append(("naive (1/call, fp16, unfused)", 1, n_naive / t, peak(a.device)))
    ref = [r.resize((256, 256), Image.Resampling.BICUBIC) for r in ref]
    pipe.to("cpu")  # free the GPU for the next configurations
    if a.device == "cuda":
        torch.cuda.empty_cache()

    def run(sampler, bs, label):
        sampler(slug, imgs[:bs], prompts[:bs], seeds[:bs])  # warm-up (and compilation)
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        n = max(bs, a.images // bs * bs)
        _, t = timed(
            lambda: [
                im
                for i in range(0, n, bs)
                for im in sampler(slug, imgs[i : i + bs], prompts[i : i + bs], seeds[i : i + bs])
            ],
            a.device,
        )
        rows.append((label, bs, n / t, peak(a.device)))

    fast_dtype = "bf16" if a.device == "cuda" else "fp32"
    cfg = SemanticConfig(
        strength=a.strength,
        guidance=a.guidance,
        steps=a.steps,
        resolution=a.resolution,
        out_size=256,
        device=a.device,
        dtype=fast_dtype,
        scheduler=a.scheduler,
    )
    sampler = SemanticSampler(work, model, concepts, cfg)
    first = None
    for bs in a.batches:
        run(sampler, bs, f"cgddi ({fast_dtype}, fused, SDPA{'' if a.scheduler == 'pndm' else ', ' + a.scheduler})")
        if first is None:
            first = sampler(slug, imgs[:n_naive], prompts[:n_naive], seeds[:n_naive])
    if not a.no_compile:
        sampler = None
        if a.device == "cuda":
            torch.cuda.empty_cache()
        sampler = SemanticSampler(work, model, concepts, dataclasses.replace(cfg, compile_unet=True))
        sampler(
            slug, imgs[: max(a.batches)], prompts[: max(a.batches)], seeds[: max(a.batches)]
        )  # extra compile warm-up
        run(sampler, max(a.batches), "cgddi + torch.compile")
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        _, switch = timed(lambda: sampler.use("bench2"), a.device)
        _, after = timed(
            lambda: sampler("bench2", imgs[: max(a.batches)], prompts[: max(a.batches)], seeds[: max(a.batches)]),
            a.device,
        )
        print(
            f"disease switch (unfuse, hot-swap, fuse): {1000 * switch:.0f} ms; first batch after it {after:.2f} s; "
            f"compiled graphs {graphs} -> {torch._dynamo.utils.counters['stats']['unique_graphs']} (no recompilation "
            "when equal)"
        )

    base = rows[0][2]
    per_image = TFLOP_PER_STEP * min(int(a.steps * a.strength), a.steps)  # the denoising steps img2img runs
    print(
        f"\n| configuration | batch | images/s | x naive | UNet TFLOP/s ({per_image:.0f}/img) | peak GPU memory "
        "|\n|---|---|---|---|---|---|"
    )
    for label, bs, ips, mem in rows:
        tf = "n/a" if a.tiny or a.resolution != 512 else f"{ips * per_image:.0f}"
        print(f"| {label} | {bs} | {ips:.3f} | {ips / base:.1f} | {tf} | {mem} |")
    diff = [np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)) for x, y in zip(ref, first)]
    print(
        f"\nsame seeds, naive vs cgddi (first {len(diff)} images, 0-255 scale): mean |diff| "
        f"{np.mean([d.mean() for d in diff]):.2f}, max {max(d.max() for d in diff):.0f}"
    )
    if a.tiny:
        print("(tiny random model: the figures check the script, they say nothing about a GPU)")


if __name__ == "__main__":
    main()
