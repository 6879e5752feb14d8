"""Textual inversion and LoRA training cost per disease: seconds per step, the implied time per disease, peak GPU
memory.

Builds SD 2.1-base from its architecture with random weights (bench/sd21.py) and times `--steps` steps (after
`--warmup`) of cgddi's own training loops, `cgddi.textual_inversion.train_token` (batch 4, paper: 500 steps) and
`cgddi.lora.train_lora` (batch 16 instance + 16 class images, paper: 750 steps), at `--resolution`, with the
stages' mixed precision (fp16 on a GPU). The per-disease time is s/step x the paper's steps plus the one-off
latent caching. Whether it fits a 24 GB L4 is read off the peak memory.

    python bench/parametric_training.py                                   # GPU, full size, 512 px
    python bench/parametric_training.py --lora-resolution 256             # the reference's LoRA side
    python bench/parametric_training.py --tiny --steps 2 --warmup 1 --resolution 64 --lora-resolution 64   # CPU check
    python bench/parametric_training.py --stages ti --profile 10 --precision bf16   # where a TI step spends its time
    python bench/parametric_training.py --mini       # CPU: the shipped mini at the default run's settings
    python bench/parametric_training.py --stages ti --compile-unet   # 03's compile_unet (the warm-up absorbs compiling)
    python bench/parametric_training.py --stages ti --compile-unet --compile-mode reduce-overhead   # as CUDA graphs

`--mini` times the shipped mini model at `params/default.yaml`'s settings (64 px; textual inversion batch 4, LoRA
rank 4, batch 2 + 2 class images; 60 steps a disease): on a 2-core CPU its textual-inversion step is the machine's
speed figure, since machines of one kind differ up to 2-3x (bench/README: the step on the fast and the slow kind, and
the default run's time on each).

`--profile N` runs N more textual-inversion steps under `torch.profiler` and prints the operations that take the most
time (GPU time on a GPU; host-device synchronisations show as cudaStreamSynchronize / cudaMemcpyAsync).
"""

import argparse, copy, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline
from cgddi.diffusion import load_sd, instance_prompt, class_prompt, resolve_model
from accelerate import PartialState
from cgddi.textual_inversion import COMPILE_MODES, TIConfig, add_token, train_token
from cgddi.lora import LoRAConfig, ImageSet, train_lora, prompt_embeds
import sd21


def images(n, side, seed):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (side, side, 3), np.uint8)) for _ in range(n)]


def measure(fn, steps, warmup, device):
    "Seconds per step from two runs (warmup, warmup + steps): the difference excludes set-up and caching."

    def run(n):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(n)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    run(warmup)  # throwaway: CUDA context, kernel autotuning and the allocator's first growth would bias the difference
    t0 = run(warmup)
    t1 = run(warmup + steps)
    return (t1 - t0) / steps, t0 - warmup * (t1 - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--mini", action="store_true", help="the shipped mini at the default run's settings (CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resolution", type=int, default=512, help="textual-inversion side (paper: 512)")
    ap.add_argument(
        "--lora-resolution", type=int, default=512, help="LoRA side (reference: 256; cgddi's ddi.yaml: 512)"
    )
    ap.add_argument("--instance-images", type=int, default=20, help="a disease's training images")
    ap.add_argument(
        "--class-images", type=int, default=96, help="healthy class images cached (the reference's num_class_images)"
    )
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="mixed precision of both stages (auto: fp16 on a GPU)",
    )
    ap.add_argument(
        "--profile", type=int, default=0, help="textual-inversion steps to profile after the timing (0: none)"
    )
    ap.add_argument(
        "--compile-unet", action="store_true", help="textual inversion with 03's compile_unet (torch.compile the UNet)"
    )
    ap.add_argument(
        "--compile-mode",
        default="default",
        choices=list(COMPILE_MODES),
        help="its torch.compile mode (03's compile_mode; reduce-overhead: CUDA graphs)",
    )
    ap.add_argument("--stages", nargs="+", default=["ti", "lora"], choices=["ti", "lora"])
    ap.add_argument("--root", default=None)
    a = ap.parse_args()
    if a.mini:  # params/default.yaml's 03 and 04
        a.resolution, a.lora_resolution, a.instance_images = 64, 64, 4
    rank, lora_batch, ti_steps, lora_steps = (4, 2, 60, 60) if a.mini else (8, 16, 500, 750)
    if a.device == "cpu":
        PartialState(cpu=True)  # the stages take their device from accelerate
    root = Path(a.root or tempfile.mkdtemp(prefix="cgddi-bench-"))
    model = resolve_model("mini", root) if a.mini else str(sd21.model(a.tiny, root))
    name = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    kind = "the shipped mini" if a.mini else "tiny" if a.tiny else "SD 2.1-base architecture, random weights"
    print(f"device {a.device} ({name}); model {kind}")
    sd = load_sd(model)
    tok0, te0 = sd.tokenizer, sd.text_encoder
    rows, tones = [], ["light", "medium", "dark"] * max(a.instance_images, a.class_images)

    if "ti" in a.stages:
        # textual inversion: batch 4, only the new row trained
        sd.tokenizer, sd.text_encoder = copy.deepcopy(tok0), copy.deepcopy(te0)
        add_token(sd.tokenizer, sd.text_encoder, "<bench>")
        inst = images(a.instance_images, a.resolution, 0)
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ti = lambda n: train_token(
            sd,
            "<bench>",
            inst,
            tones[: len(inst)],
            TIConfig(
                steps=n,
                batch_size=4,
                precision=a.precision,
                compile_unet=a.compile_unet,
                compile_mode=a.compile_mode,
            ),
            progress=False,
        )
        per, setup = measure(ti, a.steps, a.warmup, a.device)
        mem = torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else float("nan")
        label = f"{a.precision}, compiled UNet ({a.compile_mode})" if a.compile_unet else a.precision
        rows.append((f"textual inversion ({label})", f"4 @ {a.resolution} px", per, ti_steps, setup, mem))
        if a.profile:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
            with profile(activities=activities) as prof:
                ti(a.profile)
            key = "self_cuda_time_total" if a.device == "cuda" else "self_cpu_time_total"
            print(f"\ntextual inversion, {a.profile} steps (plus latent caching) under torch.profiler, by {key}:")
            print(prof.key_averages().table(sort_by=key, row_limit=20))

    if "lora" in a.stages:
        # LoRA: batch 16 + 16 class images, embeddings cached
        sd.tokenizer, sd.text_encoder = tok0, te0
        sd.text_encoder.to("cpu")
        sd.unet.to(torch.float32)
        sd.vae.to(torch.float32)
        pipe = StableDiffusionPipeline(
            **vars(sd), safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        inst = images(a.instance_images, a.lora_resolution, 1)
        cls = images(a.class_images, a.lora_resolution, 2)
        ie = prompt_embeds(pipe, [instance_prompt("skin", t) for t in tones[: len(inst)]])
        ce = prompt_embeds(pipe, [class_prompt(t) for t in tones[: len(cls)]])
        if a.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        per, setup = measure(
            lambda n: train_lora(
                sd,
                "bench",
                ImageSet(inst, ie, tones[: len(inst)]),
                ImageSet(cls, ce, tones[: len(cls)]),
                LoRAConfig(
                    rank=rank,
                    steps=n,
                    batch_size=lora_batch,
                    gradient_checkpointing=a.gradient_checkpointing,
                    precision=a.precision,
                ),
                progress=False,
            ),
            a.steps,
            a.warmup,
            a.device,
        )
        mem = torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else float("nan")
        rows.append(
            (
                f"LoRA rank {rank}{' + grad. checkpointing' if a.gradient_checkpointing else ''}",
                f"{lora_batch} + {lora_batch} @ {a.lora_resolution} px",
                per,
                lora_steps,
                setup,
                mem,
            )
        )

    print(
        f"\n| stage | batch | s/step | {'default run' if a.mini else 'paper'} steps | set-up s | s per disease "
        "| peak GPU memory (GiB) | fits 24 GB L4 |\n|---|---|---|---|---|---|---|---|"
    )
    for stage, batch, per, steps, setup, mem in rows:
        fits = "n/a" if np.isnan(mem) else ("yes" if mem < 22 else "no")
        print(
            f"| {stage} | {batch} | {per:.3f} | {steps} | {setup:.1f} | {per * steps + setup:.0f} | {mem:.1f} | "
            f"{fits} |"
        )
    if a.tiny:
        print("(tiny random model: the figures check the script, they say nothing about a GPU)")


if __name__ == "__main__":
    main()
