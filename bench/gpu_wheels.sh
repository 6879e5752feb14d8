#!/usr/bin/env bash
# The wheels the GPU machine's image lacks for bench/gpu.sh, downloaded here (the GPU machine reaches no registry)
# into .gpu-wheels/ (git-ignored; carried with `carry: [".gpu-wheels"]`, about 11 MB). Versions: this checkout's
# venv's; binary wheels for the image's Python (PYVER, 3.12; PYVER=3.11 for a CHECK=1 run in a local venv).
# The image has torch, accelerate, peft, transformers, timm, torchmetrics, opencv, pandas, scikit-learn and the rest
# cgddi's benchmarks import (checked by running bench/gpu.sh with CHECK=1 in a venv holding only the image's
# packages plus these).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
pins() {
  python - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version


def pin(p):
    try:
        return f"{p}=={version(p)}"
    except PackageNotFoundError:  # not in this venv: the newest
        return p


print(" ".join(map(pin, sys.argv[1:])))
EOF
}
# every generative stage (diffusers), cgddi.quality (lpips, torch-fidelity), CLIP's BPE vocabulary (open_clip_torch);
# peft and timm at this venv's releases too (pure Python): the image's are of unknown release and pyproject.toml's
# floors (peft >= 0.20, timm >= 1.0.21) are recent; the image's accelerate 1.15, transformers 5.17 and torchmetrics
# 1.9 (device/KINDS.md, 2026-11) are inside theirs. gpu.sh prints any release still outside (cgddi.run.check_releases).
python -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu-wheels \
  $(pins diffusers lpips torch-fidelity open_clip_torch peft timm)
# PART=shards: bench/shard.py reads a params file as `cgddi run` does (papermill's notebook inspection)
python -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu-wheels \
  --python-version "${PYVER:-3.12}" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  $(pins papermill nbformat nbclient jupyter_client jupyter_core traitlets fastjsonschema jsonschema \
    jsonschema-specifications referencing rpds-py entrypoints tenacity pyzmq tornado platformdirs)
ls -l .gpu-wheels
du -sh .gpu-wheels
