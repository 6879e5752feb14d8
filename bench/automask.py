"""Automatic masks: milliseconds per image of `cgddi.automask.auto_mask`, classical and SAM.

Classical: `auto_mask` on the embedded benchmark's images (native size in, 256 px mask out), and the Dice of
what it found against the benchmark's masks (a check that the timed code did its work). SAM: the same call
with `backend="sam"` through `cgddi.automask.SamPrompter` (transformers `SamModel` + `SamProcessor`, 1024 px
input, one box prompt per image) on a model with SAM ViT-B's or ViT-H's published architecture and random
weights (speed does not depend on the weights; the masks do, so no Dice is printed for SAM). Peak GPU memory
is printed on a GPU.

    python bench/automask.py                       # classical on the CPU, SAM ViT-B (--sam vit-h) on a GPU if any
    python bench/automask.py --sam tiny --images 4 # CPU check of the SAM path with cgddi's tiny random SAM
"""

import argparse, tempfile, time
from pathlib import Path
import numpy as np
import torch
from cgddi.automask import auto_mask, mask_dice, SamPrompter, MASK_CLASSES
from cgddi.benchmark import make_benchmark
from cgddi.data import load_ddi, read_image, read_mask
from cgddi.tiny import tiny_sam

SAM_VISION = {  # the published SAM image encoders (SamConfig's defaults are ViT-B)
    "vit-b": {},
    "vit-l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit-h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]),
}


def random_sam(kind: str, out: Path, device: str) -> Path:
    "A SAM folder with `kind`'s architecture and random weights (safetensors), loadable by `SamPrompter`."
    if kind == "tiny":
        return tiny_sam(out, "sam")
    from transformers import SamConfig, SamModel, SamProcessor, SamImageProcessor

    with torch.device(device):
        model = SamModel(SamConfig(vision_config=SAM_VISION[kind]))
    model.save_pretrained(out, safe_serialization=True)
    SamProcessor(image_processor=SamImageProcessor()).save_pretrained(out)
    return out


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=80, help="benchmark images timed (after one warm-up image)")
    ap.add_argument(
        "--sam",
        nargs="*",
        default=None,
        help="SAM architectures to time: vit-b, vit-l, vit-h, tiny; default: vit-b on a GPU, none on a CPU",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    sams = a.sam if a.sam is not None else (["vit-b"] if a.device.startswith("cuda") else [])
    root = Path(tempfile.mkdtemp(prefix="cgddi-bench-"))
    ddi = load_ddi(make_benchmark(root / "benchmark", seed=0, n_images=max(a.images + 1, 20)), check_images=False)
    images = [read_image(p) for p in ddi.image_path[: a.images + 1]]
    sizes = sorted({im.size for im in images})
    print(
        f"{len(images) - 1} benchmark images, native sizes {sizes}; device {a.device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if a.device.startswith("cuda")
            else f" ({torch.get_num_threads()} threads)"
        )
    )
    auto_mask(images[0])
    t = time.perf_counter()
    masks = [auto_mask(im) for im in images[1:]]
    dt = time.perf_counter() - t
    annotated = [(m, read_mask(p)) for m, p in zip(masks, ddi.mask_path[1 : a.images + 1]) if isinstance(p, str)]
    dice = np.nanmean(mask_dice(np.stack([m for m, _ in annotated]), np.stack([t for _, t in annotated])), 0)
    print(
        f"classical: {1000 * dt / len(masks):.1f} ms/image ({len(masks) / dt:.1f} images/s); Dice on "
        f"{len(annotated)} annotated: " + ", ".join(f"{n} {d:.3f}" for n, d in zip(MASK_CLASSES.values(), dice))
    )
    for kind in sams:
        t = time.perf_counter()
        folder = random_sam(kind, root / f"sam-{kind}", a.device)
        sam = SamPrompter(folder, device=a.device)
        load = time.perf_counter() - t
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        auto_mask(images[0], "sam", sam)
        sync(a.device)
        t = time.perf_counter()
        for im in images[1:]:
            auto_mask(im, "sam", sam)
        sync(a.device)
        dt = time.perf_counter() - t
        mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if a.device.startswith("cuda") else ""
        n_params = sum(p.numel() for p in sam.model.parameters()) / 1e6
        print(
            f"sam {kind} ({n_params:.0f} M parameters, random weights, float32): {1000 * dt / len(masks):.0f} ms/image "
            f"({len(masks) / dt:.2f} images/s, classical step included){mem}; build + load {load:.0f} s"
        )


if __name__ == "__main__":
    main()
