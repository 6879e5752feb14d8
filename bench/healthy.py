"""Healthy-skin inpainting cost: seconds per image of Kandinsky 2.2 inpainting at the paper's settings.

Builds Kandinsky 2.2's prior and inpainting decoder from their published architectures with random weights
(`cgddi.tiny.random_pipeline`; speed does not depend on the weights) and times `cgddi.healthy.Inpainter` — the
class 01_healthy calls per image — on `--images` 256 px frames with a lesion-sized soft mask: 512 px, decoder
100 steps, guidance 4 (paper F.1), `--candidates` samples per call, and with `--batch-sizes` several frames of one
candidate per call (01's `batch_size`: `Inpainter.batch`, through its workaround of huggingface/diffusers#13596, one
throwaway image per call). The prior runs once per run (the prompt is the same for every image); its cost is printed
apart. Peak GPU memory is printed on a GPU.

    python bench/healthy.py                                   # GPU, full size, 1 and 4 candidates per image
    python bench/healthy.py --candidates 1 --batch-sizes 4 8 --images 16   # frames per call (01's batch_size)
    python bench/healthy.py --tiny --device cpu --steps 2 --size 64 --images 2 --candidates 1  # CPU check
"""

import argparse, dataclasses, tempfile, time
from pathlib import Path
import numpy as np
import torch
from cgddi.data import LESION, SKIN
from cgddi.healthy import HealthyConfig, Inpainter, inpaint_region
from cgddi.tiny import random_pipeline, tiny_kandinsky


def frame_and_mask(seed):
    "A skin-coloured 256 px frame and a soft mask around an elliptic lesion of about 15 % of the side."
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal((190, 140, 110), 10, (256, 256, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:256, :256]
    mask = np.full((256, 256), SKIN, np.uint8)
    mask[((yy - 128) / 40) ** 2 + ((xx - 120) / 30) ** 2 <= 1] = LESION
    return img, inpaint_region(mask)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tiny", action="store_true", help="cgddi's tiny Kandinsky instead of the full-size architecture (a CPU check)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on a GPU, as 01 does), fp32, fp16, bf16")
    ap.add_argument("--steps", type=int, default=100, help="decoder steps (paper: 100)")
    ap.add_argument("--size", type=int, default=512, help="side the decoder works at (01's inpaint_size)")
    ap.add_argument("--images", type=int, default=8, help="images timed per configuration, after one warm-up image")
    ap.add_argument("--candidates", type=int, nargs="+", default=[1, 4], help="samples per image (01's n_candidates)")
    ap.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[],
        help="also: this many frames per call, 1 candidate each (01's batch_size; --images a multiple of each)",
    )
    ap.add_argument(
        "--root",
        default=None,
        help="folder for the random models (kept between runs); default: a temp folder (/dev/shm is fastest)",
    )
    a = ap.parse_args()
    if too_big := [b for b in a.batch_sizes if b > a.images]:
        ap.error(f"--batch-sizes {too_big[0]} is more than --images {a.images}: nothing would be timed")
    root = Path(a.root or tempfile.mkdtemp(prefix="cgddi-bench-"))
    t = time.perf_counter()
    if a.tiny:
        prior, decoder = tiny_kandinsky(root / "tiny-kandinsky")
    else:

        def build(name, out):  # random initialisation of 4.9 B parameters is minutes on a CPU, seconds on the GPU
            try:
                with torch.device(a.device):
                    return random_pipeline(name, out, dtype=torch.bfloat16)
            except (RuntimeError, TypeError) as e:
                print(f"building {name} on {a.device} failed ({e}); building it on the CPU")
                return random_pipeline(name, out, dtype=torch.bfloat16)

        prior, decoder = (
            build("kandinsky-2-2-prior", root / "prior"),
            build("kandinsky-2-2-decoder-inpaint", root / "decoder"),
        )
    print(f"random models written in {time.perf_counter() - t:.0f} s")
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    cfg = HealthyConfig(
        backend="kandinsky",
        kandinsky_prior=str(prior),
        kandinsky_decoder=str(decoder),
        steps=a.steps,
        inpaint_size=a.size,
        device=a.device,
        dtype=a.dtype,
    )
    print(
        f"device {a.device} ({name}); model {'tiny' if a.tiny else 'Kandinsky 2.2 architecture, random weights'}; "
        f"{cfg.inpaint_size} px, decoder {cfg.steps} steps, guidance {cfg.guidance}, prior {cfg.prior_steps} steps"
    )
    frames = [frame_and_mask(i) for i in range(a.images + 1)]
    rows = []
    for n, b in [(n, 1) for n in a.candidates] + [(1, b) for b in a.batch_sizes]:
        sync(a.device)
        t = time.perf_counter()
        inpaint = Inpainter(dataclasses.replace(cfg, n_candidates=n, batch_size=b))
        sync(a.device)
        setup = time.perf_counter() - t
        inpaint.batch(*zip(*frames[:b]), list(range(b)))  # warm-up, at the batch's shape
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        sync(a.device)
        t = time.perf_counter()
        timed = frames[1 : 1 + a.images // b * b]
        for i in range(0, len(timed), b):
            images, softs = zip(*timed[i : i + b])
            out = inpaint.batch(list(images), list(softs), list(range(i + 1, i + 1 + b)))
        sync(a.device)
        per = (time.perf_counter() - t) / len(timed)
        assert len(out) == b and len(out[0]) == n and out[0][0].shape == (256, 256, 3)
        mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if a.device.startswith("cuda") else "n/a"
        rows.append((n, b, per, per / n, setup, mem, inpaint.generator))
        del inpaint
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(
        "\n| candidates per image | images per call | s per image | s per candidate | load + prior s "
        "| peak GPU memory (GiB) |\n|---|---|---|---|---|---|"
    )
    for n, b, per, per_c, setup, mem, _ in rows:
        print(f"| {n} | {b} | {per:.2f} | {per_c:.2f} | {setup:.1f} | {mem} |")
    print(f"generator label: {rows[0][6]}")
    if a.tiny:
        print("(tiny random model: the figures check the script, they say nothing about a GPU)")


if __name__ == "__main__":
    main()
