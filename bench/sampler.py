"""Semantic sampling's solver: the paper's sampler (SD 2.1-base's PNDM) at 100 steps against DPM-Solver++ at fewer
steps.

img2img as 05 runs it (strength 0.725, guidance 8.75, the tone's healthy-skin prompt) with cgddi's mini model on the
CPU, from the same canvases (healthy corpus scenes the mini never trained on) and the same seeds. For each sampler it
prints images/s, the small random-feature FID of its images against held-out corpus images (`cgddi.mini.small_fid`:
a comparison between samplers, not a published FID) and the mean absolute pixel difference from the paper's sampler.

    python bench/sampler.py                         # 48 images: PNDM 100 steps vs DPM-Solver++ 25 and 50 steps
    python bench/sampler.py --images 8 --dpm-steps 10   # a quick check of the script
"""

import argparse, time
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionImg2ImgPipeline
from cgddi.data import TONE_ORDER
from cgddi.diffusion import class_prompt
from cgddi.mini import MiniConfig, corpus_rng, corpus_scene, small_fid
from cgddi.diffusion import sampler_scheduler
from cgddi.tiny import mini_sd


def scenes(first: int, n: int, lesion_share: float, cfg: MiniConfig) -> list:
    "Held-out corpus scenes (never trained on), tones in turn."
    return [
        corpus_scene(corpus_rng(cfg.seed, i), TONE_ORDER[i % 3], cfg.resolution, lesion_share, 0)[0]
        for i in range(first, first + n)
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--pndm-steps", type=int, default=100)
    ap.add_argument("--dpm-steps", type=int, nargs="+", default=[25, 50])
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    cfg = MiniConfig()
    held = cfg.n_images - cfg.n_held_out
    canvases = [Image.fromarray(a) for a in scenes(held, args.images, 0.0, cfg)]  # healthy canvases
    # other held-out scenes: the FID reference
    reference = np.stack(scenes(held + args.images, 256, cfg.lesion_share, cfg))
    prompts = [class_prompt(TONE_ORDER[i % 3]) for i in range(args.images)]
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        str(mini_sd()), use_safetensors=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    base = pipe.scheduler.config
    runs, out = [("pndm", args.pndm_steps)] + [("dpmpp", s) for s in args.dpm_steps], {}
    print(
        f"mini model, CPU ({torch.get_num_threads()} threads), {args.images} images at {cfg.resolution} px, strength "
        "0.725, guidance 8.75"
    )
    for name, steps in runs:
        pipe.scheduler = sampler_scheduler(base, name)
        t0, ims = time.perf_counter(), []
        for i in range(0, args.images, args.batch):
            ims += pipe(
                prompts[i : i + args.batch],
                image=canvases[i : i + args.batch],
                strength=0.725,
                guidance_scale=8.75,
                num_inference_steps=steps,
                generator=[torch.Generator().manual_seed(j) for j in range(i, min(i + args.batch, args.images))],
            ).images
        seconds = time.perf_counter() - t0
        arr = np.stack([np.asarray(im) for im in ims]).astype(np.float32)
        out[(name, steps)] = arr
        diff = np.abs(arr - out[runs[0]]).mean()
        print(
            f"{name:5s} {steps:3d} steps: {args.images / seconds:6.2f} images/s ({seconds:6.1f} s), small FID vs "
            f"held-out corpus {small_fid(reference, [a.astype(np.uint8) for a in arr]):.4f}, mean |diff| from pndm "
            f"{runs[0][1]}: {diff:.1f} / 255"
        )
    print(f"canvases themselves: small FID {small_fid(reference, [np.asarray(c) for c in canvases]):.4f}")


if __name__ == "__main__":
    main()
