#!/usr/bin/env bash
# The GPU benchmarks of bench/README in one call of the device tool, in the order the open goals need them, each
# under its own time limit and all within BUDGET seconds (a bench that would start past it is skipped and says so).
# Each log goes to $OUT/<name>.log; the summary table of each is printed at the end.
#
#   bash bench/gpu_wheels.sh                                              # here, once: .gpu-wheels/
#   device run: command "bash bench/gpu.sh", carry [".gpu-wheels"], timeout_s 600
#   device run: command "PART=shards bash bench/gpu.sh", the same carry      # a second call, or a later session
#   device run: command "PART=ti bash bench/gpu.sh", the same carry          # the textual-inversion benches alone
#   device run: command "PART=kandinsky bash bench/gpu.sh", the same carry   # the Kandinsky benches alone
#   device run: command "PART=goals bash bench/gpu.sh", the same carry       # the two open goals' new code, ~5 min:
#     Kandinsky frames per call (kandinsky_batch), textual inversion fp16 without and with compile_unet (default
#     mode, then reduce-overhead: CUDA graphs)
#   CHECK=1 OUT=/tmp/gpu-check bash bench/gpu.sh                           # here: the script on the CPU, tiny models
#
# PART=benches (the default): textual inversion (goal <= 60 s a disease on an H100: fp16, fp16 with 03's compile_unet,
# then bf16 with a profile of where a step goes), Kandinsky inpainting (goal <= 2 s an image: 1 and 4 candidates a
# call; 4 and 8 frames a call, 01's batch_size; three one-image processes at once), semantic sampling (PNDM 100 steps, the paper's; DPM-Solver++ 25 steps),
# LoRA. SD 2.1-base and Kandinsky are built from their architectures with random
# weights (speed does not depend on them), once, under /dev/shm/cgddi-bench.
# PART=shards: issue 27's "a 2-process run of each sharded stage" on the GPU: bench/shard.py --make-source runs 00-05
# with params/default.yaml (the mini model; bench/check.yaml's few steps under CHECK=1) into one folder, then each of
# 01, 03, 04 and 06 (two split seeds) in 1 and in 2 processes sharing the GPU: seconds and the largest difference.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
root=${ROOT:-/dev/shm/cgddi-bench}
py=${PYTHON:-python3}
if [ -d .gpu-wheels ]; then
  $py -m pip install --quiet --no-deps --no-index .gpu-wheels/*.whl || echo "gpu.sh: installing .gpu-wheels failed"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU (CHECK run)"
$py -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
# releases outside pyproject.toml's requirements (the benches need only some of the packages; a figure made on a release
# outside a floor is suspect: transformers < 5.6 runs the mini's text encoder random)
$py -c "from cgddi.run import declared_requirements as d, releases_outside as o; print('outside the requirements:', o(d()))"

bench() {  # name, seconds, command...: run it under its limit unless the budget is spent
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "== $name: skipped (${left} s of the budget left)" | tee "$OUT/$name.log"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name ($limit s at most): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/$name.log"
}

summary() {  # each bench's own summary lines
  echo
  for f in "$@"; do
    echo "== $f"
    grep -E '^\||^device|s per image|exit|skipped|Error|error:' "$OUT/$f.log" | grep -v Warning | tail -15
  done
}

if [ "${PART:-benches}" = shards ]; then
  params=params/default.yaml
  [ "${CHECK:-0}" = 1 ] && params=bench/check.yaml
  bench shards "${SHARDS_S:-$BUDGET}" $py bench/shard.py --source "$root/run" --make-source --params "$params" \
    --stages 01 03 04 06 --processes 2 --root "$root/shard"
  grep -E '^\||^source|process\(es\)|exit|skipped|Error|error:' "$OUT/shards.log" | grep -v Warning | tail -30
  exit 0
fi

if [ "${CHECK:-0}" = 1 ]; then  # the same benches, tiny and on the CPU: does the script run?
  ti="--tiny --device cpu --resolution 64 --lora-resolution 64 --steps 2 --warmup 1"
  kd="--tiny --device cpu --steps 2 --size 64 --images 1"
  kd_batch="--tiny --device cpu --steps 2 --size 64 --images 2 --batch-sizes 2"
  sm="--tiny --device cpu --resolution 64 --images 2 --batches 2 --no-compile"
  sm_pndm=$sm
  sm_steps=(4 4)
else
  ti="--steps 40 --warmup 5"
  kd="--images 3"
  kd_batch="--images 8 --batch-sizes 4 8"
  sm="--images 32 --batches 8 32 --no-compile"
  sm_pndm="--images 8 --batches 8 --no-compile"  # its naive loop of 32 images alone is 148 s on an H200
  sm_steps=(100 25)
fi

kandinsky_batch() {
  bench kandinsky_batch "${KD_S:-180}" $py bench/healthy.py $kd_batch --candidates 1 --root "$root/kandinsky"
}
ti_bench() {  # name, extra options: a textual-inversion bench
  local name=$1
  shift
  bench "$name" "${TI_S:-150}" $py bench/parametric_training.py --stages ti $ti "$@" --root "$root/sd21"
}
if [ "${PART:-benches}" = kandinsky ]; then  # the Kandinsky goal alone: frames per call, then 4 candidates a call
  kandinsky_batch
  bench kandinsky "${KD_S:-180}" $py bench/healthy.py $kd --root "$root/kandinsky"
  summary kandinsky_batch kandinsky
  exit 0
fi
if [ "${PART:-benches}" = goals ]; then  # what the open goals' untried code does, first: the most in one short call
  kandinsky_batch
  ti_bench ti
  ti_bench ti_compile --compile-unet
  ti_bench ti_graphs --compile-unet --compile-mode reduce-overhead
  summary kandinsky_batch ti ti_compile ti_graphs
  exit 0
fi
ti_bench ti
ti_bench ti_compile --compile-unet
ti_bench ti_bf16 --precision bf16 --profile 10
if [ "${PART:-benches}" = ti ]; then  # the textual-inversion goal alone (its three benches, about 3-4 min on an H200)
  summary ti ti_compile ti_bf16
  exit 0
fi
kandinsky_batch
bench kandinsky "${KD_S:-180}" $py bench/healthy.py $kd --root "$root/kandinsky"
# several one-image processes on one GPU (01's num_processes above the number of GPUs): three at once, 1 candidate
bench kandinsky_x3 "${KD_S:-180}" bash -c 'for i in 1 2 3; do "$0" bench/healthy.py "$@" --candidates 1 & done; wait' \
  $py $kd --root "$root/kandinsky"
bench semantic_pndm "${SM_S:-120}" $py bench/semantic.py $sm_pndm --steps "${sm_steps[0]}" --root "$root/sd21"
bench semantic_dpmpp "${SM_S:-120}" $py bench/semantic.py $sm --steps "${sm_steps[1]}" --scheduler dpmpp --root "$root/sd21"
bench lora "${LORA_S:-120}" $py bench/parametric_training.py --stages lora $ti --root "$root/sd21"

summary ti ti_compile ti_bf16 kandinsky_batch kandinsky kandinsky_x3 semantic_pndm semantic_dpmpp lora
