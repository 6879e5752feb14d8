"""Classifier training throughput: seconds per step, images/s and the implied epoch time per method.

Builds each classifier of `cgddi.classifiers` at full size (ResNet-18; ViT-B/16 with PatchAlign's mask network,
heads and masked graph OT loss against `--labels` label embeddings) with random weights (speed does not depend
on them) and times `--steps` optimiser steps on random `--crop` px batches after `--warmup` steps, with the
stage's own loss, Adam, its autocast (`--precision`, as 06's `precision`: auto is bf16 on a GPU and on a CPU with
AMX or AVX512-BF16, none on other CPUs) and PatchAlign's gradient clipping.
Data loading is not included: the figure is the model's compute. The epoch time is for DDI's 524 training
images (faithful split) unless `--images` says otherwise. Peak GPU memory is printed on a GPU.

Each method is timed with PyTorch's default (NCHW) tensors and with channels-last (NHWC, `channels_last: true`)
unless `--layout` picks one; `--resnet`/`--global-pool` time another timm ResNet, e.g. the benchmark's.

    python bench/classify.py                                   # all three methods, batch 32, 224 px
    python bench/classify.py --methods patchalign --steps 20   # on a GPU: the ViT-B/16 epoch time at batch 32
    python bench/classify.py --methods baseline --resnet test_resnet --global-pool avgmax --batch 16 --crop 96 \
        --images 57 --steps 30                                 # the benchmark's classifier (params/default.yaml)

bf16 on the CPU was faster on an Intel Xeon with AMX and an AMD EPYC with AVX512-BF16 (bench/README); on another CPU
time it against fp32 in two calls, `--precision fp32` then `--precision bf16`. `--compile` times the step under
`torch.compile` (its first step, the compilation, printed apart).
"""

import argparse, dataclasses, time
import torch
from cgddi.classifiers import PatchAlign, METHODS
from cgddi.classify import PRECISIONS, ClassifyConfig, make_model, accelerator, memory_format


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
    ap.add_argument("--layout", choices=["both", "nchw", "nhwc"], default="both", help="tensor memory layout(s)")
    ap.add_argument("--resnet", default="resnet18.tv_in1k", help="timm name of the baseline/FairDisCo ResNet")
    ap.add_argument("--global-pool", default=None, help="the ResNet's pooling, e.g. avgmax (timm)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto", help="autocast, as 06's `precision`")
    ap.add_argument("--compile", action="store_true", help="the step (forward, loss, backward, Adam) in torch.compile")
    a = ap.parse_args()
    # the real ViT-B/16
    cfg = ClassifyConfig(
        resize=256,
        crop=a.crop,
        batch_size=a.batch,
        vit_kwargs={},
        device=a.device,
        resnet=a.resnet,
        resnet_kwargs={"global_pool": a.global_pool} if a.global_pool else {},
        precision=a.precision,
    )
    acc = accelerator(cfg)
    print(
        f"device: {acc.device} ({torch.cuda.get_device_name() if acc.device.type == 'cuda' else 'cpu'}), "
        f"mixed precision: {acc.mixed_precision}, threads: {torch.get_num_threads()}, batch {a.batch}, {a.crop} px"
    )
    layouts = {"both": [False, True], "nchw": [False], "nhwc": [True]}[a.layout]
    for method, channels_last in [(m, c) for m in a.methods for c in layouts]:
        fmt = memory_format(dataclasses.replace(cfg, channels_last=channels_last))
        torch.manual_seed(0)
        model = make_model(method, cfg, torch.randn(a.labels, 768)).to(acc.device, memory_format=fmt)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randn(a.batch, 3, a.crop, a.crop, device=acc.device).contiguous(memory_format=fmt)
        y = torch.randint(0, 2, (a.batch,), device=acc.device)
        s = torch.randint(0, 3, (a.batch,), device=acc.device)
        if acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def train_step():
            with acc.autocast():
                loss, _ = model.loss(model(x), y, s)
            opt.zero_grad()
            acc.backward(loss)
            if isinstance(model, PatchAlign):
                acc.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        step_fn, t_first = torch.compile(train_step) if a.compile else train_step, time.perf_counter()
        for i in range(a.warmup + a.steps):
            if i == a.warmup:
                if acc.device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            step_fn()
            if i == 0:
                first = time.perf_counter() - t_first  # with --compile: the compilation
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
            f"{method:10s} {'nhwc' if channels_last else 'nchw'} {trainable / 1e6:6.1f} M trainable  "
            f"{step:7.3f} s/step  {a.batch / step:7.1f} images/s  "
            f"epoch of {a.images} images: {a.images / a.batch * step:7.1f} s{mem}, first step {first:.1f} s"
        )


if __name__ == "__main__":
    main()
