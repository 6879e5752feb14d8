"""What knowing a model by content costs: `cgddi.config.content_fingerprint` of a model folder, against a full SHA-256.

A setting that names a model or a local weights file is hashed by content (`StageConfig.params_hash`), once per stage
process. This writes a folder shaped like SD 2.1-base's UNet (`--gib` of float32 tensors in `--tensors` tensors, one
safetensors file, plus a config), then times the fingerprint the first time (the file's samples read, from the page
cache: the file was just written) and again (cached per process by size and modification time), and a full SHA-256 of
the same bytes in the same run, for the ratio. Also the shipped mini model.

    python bench/fingerprint.py --gib 1
"""

import argparse, hashlib, tempfile, time
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
from cgddi.config import _fingerprint, content_fingerprint
from cgddi.tiny import mini_sd


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="size of the weights file (SD 2.1-base's UNet: 3.2 GiB)")
    ap.add_argument("--tensors", type=int, default=686, help="tensors in it (SD 2.1-base's UNet: 686)")
    ap.add_argument("--root", default=None, help="folder to write in; default a temporary one")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.root) as d:
        model = Path(d, "unet")
        model.mkdir()
        n = int(a.gib * 2**30 / 4 / a.tensors)
        rng = np.random.default_rng(0)
        save_file(
            {f"t{i:04d}": rng.standard_normal(n, dtype=np.float32) for i in range(a.tensors)},
            model / "diffusion_pytorch_model.safetensors",
        )
        (model / "config.json").write_text("{}")
        size = (model / "diffusion_pytorch_model.safetensors").stat().st_size
        fp, first = timed(lambda: content_fingerprint(model))
        _, again = timed(lambda: content_fingerprint(model))
        _, full = timed(lambda: hashlib.sha256((model / "diffusion_pytorch_model.safetensors").read_bytes()).digest())
        print("| folder | size | fingerprint, first | again (cached) | full SHA-256 | ratio |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {a.tensors} tensors | {size / 2**30:.2f} GiB | {first * 1e3:.1f} ms | {again * 1e3:.2f} ms | "
            f"{full * 1e3:.0f} ms | {full / first:.0f}x |"
        )
        _fingerprint.cache_clear()
        mini = mini_sd()
        _, first = timed(lambda: content_fingerprint(mini))
        _, again = timed(lambda: content_fingerprint(mini))
        total = sum(p.stat().st_size for p in mini.rglob("*") if p.is_file())
        print(f"| shipped mini | {total / 2**20:.0f} MiB | {first * 1e3:.1f} ms | {again * 1e3:.2f} ms | | |")


if __name__ == "__main__":
    main()
