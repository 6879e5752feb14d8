"""Classifier training throughput: seconds per step, images/s and the implied epoch time per method.

Builds each classifier of `cgddi.classifiers` at full size (ResNet-18; ViT-B/16 with PatchAlign's mask network,
heads and masked graph OT loss against `--labels` label embeddings) with random weights (speed does not depend
on them) and times `--steps` optimiser steps on random `--crop` px batches after `--warmup` steps, with the
stage's own loss, Adam, bf16 autocast on a GPU (as `06_classify` does) and PatchAlign's gradient clipping.
Data loading is not included: the figure is the model's compute. The epoch time is for DDI's 524 training
images (faithful split) unless `--images` says otherwise. Peak GPU memory is printed on a GPU.

    python bench/classify.py                                   # all three methods, batch 32, 224 px
    python bench/classify.py --methods patchalign --steps 20   # on a GPU: the ViT-B/16 epoch time at batch 32
"""

import argparse, time
import torch
from cgddi.classifiers import PatchAlign, METHODS
from cgddi.classify import ClassifyConfig, make_model, accelerator


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--labels", type=int, default=66, help="label-graph nodes (DDI's 65 joined diseases + healthy)")
    ap.add_argument("--images", type=int, default=524, help="training images per epoch")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    # the real ViT-B/16
    cfg = ClassifyConfig(resize=256, crop=a.crop, batch_size=a.batch, vit_kwargs={}, device=a.device)
    acc = accelerator(cfg)
    print(
        f"device: {acc.device} ({torch.cuda.get_device_name() if acc.device.type == 'cuda' else 'cpu'}), "
        f"mixed precision: {acc.mixed_precision}, threads: {torch.get_num_threads()}, batch {a.batch}, {a.crop} px"
    )
    for method in a.methods:
        torch.manual_seed(0)
        model = make_model(method, cfg, torch.randn(a.labels, 768)).to(acc.device)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randn(a.batch, 3, a.crop, a.crop, device=acc.device)
        y = torch.randint(0, 2, (a.batch,), device=acc.device)
        s = torch.randint(0, 3, (a.batch,), device=acc.device)
        if acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(a.warmup + a.steps):
            if i == a.warmup:
                if acc.device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with acc.autocast():
                loss, _ = model.loss(model(x), y, s)
            opt.zero_grad()
            acc.backward(loss)
            if isinstance(model, PatchAlign):
                acc.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / a.steps
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        mem = (
            f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
            if acc.device.type == "cuda"
            else ""
        )
        print(
            f"{method:10s} {trainable / 1e6:6.1f} M trainable  {step:7.3f} s/step  {a.batch / step:7.1f} images/s  "
            f"epoch of {a.images} images: {a.images / a.batch * step:7.1f} s{mem}"
        )


if __name__ == "__main__":
    main()
