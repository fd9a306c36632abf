#!/usr/bin/env bash
# GPU checks in one run (one CUDA GPU, the project installed; from the repository root):
#
#   OUT=gpu_check bash benchmarks/perf/gpu_check.sh
#   ONLY=speed OUT=gpu_check bash benchmarks/perf/gpu_check.sh     # only the annotation speed (at most 14 min)
#
# 1. the synthetic suite; 2. `bench eval-generators` for sigma and pixel_diff on the GPU (bf16 autocast) and on
# the CPU (fp32), same weights, same pairs: the per-dataset F1/IoU must agree (compare.log); 3. annotation
# speed on the GPU (benchmarks/perf/annotate_speed.py): in one run per step, decode only, the loop with the
# zero-cost `empty` generator, the loops of pixel_diff and sigma and their model-only rates, each as a ratio
# to its limit, for the suite's corpus as a pairs manifest and as parquet, bf16 autocast, without and with
# torch.compile; then synthetic pairs at 256 and 512 px with a new instruction per pair; 4. one cpu-quick
# epoch of every detector on the GPU (the trainer's CUDA path).
# Every step has its own time limit and log under $OUT; a failing step does not stop the others. ONLY picks
# steps by name prefix (env and synth always run).
set -u
OUT=${OUT:-gpu_check}
PY=${PY:-python3}
WORKERS=${WORKERS:-8}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2
  shift 2
  case "$name" in env|synth|${ONLY:-}*) ;; *) return 0 ;; esac
  local start=$SECONDS
  echo "== $name: $*"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - start)) s"
  grep -v -E '^\s*$|it/s\]|item/s\]|pair/s\]|batch/s\]' "$OUT/$name.log" | tail -n "${TAIL:-12}"
}

EXPORT="sigma.export=results/sigma/cpu-quick/sigma.pt"   # the committed checkpoint, whatever paths.results is

step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch, timm; print(\"torch\", torch.__version__, \"timm\", timm.__version__, torch.cuda.get_device_name(0))'"
step synth 120 "$PY" -m benchmarks.cli data synth "profile.num_workers=$WORKERS"
step eval_gpu 120 "$PY" -m benchmarks.cli eval-generators --generator sigma,pixel_diff --dataset all device=cuda "$EXPORT" "paths.results=$OUT/gpu"
step eval_cpu 150 "$PY" -m benchmarks.cli eval-generators --generator sigma,pixel_diff --dataset all device=cpu "$EXPORT" "paths.results=$OUT/cpu"
TAIL=30 step compare 60 "$PY" - "$OUT" <<'EOF'
import sys
import pandas as pd
out = sys.argv[1]
gpu = pd.read_csv(f"{out}/gpu/leaderboards/generators.csv").set_index("generator")
cpu = pd.read_csv(f"{out}/cpu/leaderboards/generators.csv").set_index("generator")
cols = [c for c in gpu.columns if c.endswith(("f1_per_image", "iou_per_image"))]
print("GPU (bf16 autocast) minus CPU (fp32), per dataset; max |diff| per generator:")
for g in gpu.index:
    diff = (gpu.loc[g, cols] - cpu.loc[g, cols]).abs()
    print(f"  {g:12s} max |diff| {diff.max():.4f}   mean F1 gpu {gpu.loc[g, 'mean/f1_per_image']:.4f} "
          f"cpu {cpu.loc[g, 'mean/f1_per_image']:.4f}   mean IoU gpu {gpu.loc[g, 'mean/iou_per_image']:.4f} "
          f"cpu {cpu.loc[g, 'mean/iou_per_image']:.4f}")
for name in ("synth_removal", "synth_recolour"):
    g = pd.read_csv(f"{out}/gpu/generators/per_pair/{name}.csv").query("generator == 'sigma'").set_index("id")
    c = pd.read_csv(f"{out}/cpu/generators/per_pair/{name}.csv").query("generator == 'sigma'").set_index("id")
    d = (g["f1"] - c["f1"]).abs()
    print(f"  sigma per pair on {name}: max |F1 diff| {d.max():.4f}, pairs differing by > 0.01: {(d > 0.01).sum()} of {len(d)}")
EOF
CORPUS=$(ls -d .bench/data/synth/default-*/corpus | head -n 1)
SPEED=("$PY" -m benchmarks.perf.annotate_speed --device cuda --num-workers "$WORKERS")
# the limits and ratios: manifest + parquet, 2,000 pairs of 256 px, batch 64, best of 2; then compiled (once)
TAIL=24 step speed_ratios 240 "${SPEED[@]}" --pairs "$CORPUS" --n 2000 --batch-size 64 --repeat 2
TAIL=24 step speed_ratios_compiled 240 "${SPEED[@]}" --pairs "$CORPUS" --n 2000 --batch-size 64 --compile
TAIL=12 step speed_256 120 "${SPEED[@]}" --generators empty,sigma --size 256 --batch-size 64 --n 8192 --unique-instructions --backbone
TAIL=12 step speed_512 120 "${SPEED[@]}" --generators empty,sigma --size 512 --batch-size 32 --n 4096 --unique-instructions --backbone
TAIL=20 step detectors 150 "$PY" -m benchmarks.cli train-detector --detector all --train synth device=cuda train.epochs=1 "paths.runs=$OUT/runs" "profile.num_workers=$WORKERS"
echo "== done"
