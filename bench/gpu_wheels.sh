#!/usr/bin/env bash
# The wheels the GPU machine's image lacks for bench/gpu.sh, downloaded here (it reaches no registry) into
# .gpu-wheels/ (git-ignored; carried with `carry: [".gpu-wheels"]`, about 8 MB). Versions: this checkout's venv's.
# The image has torch, accelerate, peft, transformers, timm, torchmetrics, opencv, pandas, scikit-learn and the rest
# cgddi's benchmarks import (checked by importing them in a venv holding only the image's packages plus these).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
pins=$(python - <<'EOF'
from importlib.metadata import version
# diffusers: every generative stage; lpips, torch-fidelity: cgddi.quality; open_clip_torch: CLIP's BPE vocabulary file
print(" ".join(f"{p}=={version(p)}" for p in ["diffusers", "lpips", "torch-fidelity", "open_clip_torch"]))
EOF
)
python -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu-wheels $pins
ls -l .gpu-wheels
