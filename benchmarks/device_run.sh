#!/usr/bin/env bash
# The GPU checks and the GPU tier of the BioHit benchmark, in one command on a lent GPU machine.
#
#   python benchmarks/device_bundle.py            # here: wheels, stubs and BioHit into .device/ (git-ignored)
#   bash benchmarks/device_run.sh                 # there, with .device carried; everything lands in $OUT
#
# 1. installs the bundle into /tmp (the machine's own PyTorch stays) and checks the stock trainer lookup;
# 2. network training step, bf16, at the GPU tier's planned patch and batch (benchmarks/network_speed.py);
# 3. the GPU tier: convert, stock plan/preprocess, the four trainers trained side by side on the GPU,
#    segment the 60 held-out photos on the GPU, evaluate (benchmarks/biohit_benchmark.py --tier gpu);
# 4. the CUDA-trained T-Unet segments photos with -device cpu, compared with its GPU masks;
# 5. torch.compile'd step of PlainConvUNet and T-Unet, if time is left.
# Each step writes to $OUT as soon as it ends, so a run cut short still returns what it finished; a step
# that fails is reported and the next one runs.
#
# Settings (environment): STEPS (which of "speed tier cpu compile" to run, default all; e.g. STEPS=compile
# for a second, short call), OUT (default ./device_out), BUNDLE (.device), DEVICE (cuda), SPEED_PATCH ("640 768",
# the patch nnU-Net plans for BioHit at full resolution), SPEED_BATCH (7), SPEED_STEPS (10), TIER_ARGS (extra
# arguments for biohit_benchmark.py), TIER_TIMEOUT_S (the GPU tier is stopped after it, 450), DEADLINE_S
# (seconds after the start past which the optional compile check is skipped, 420).
# A dry run on a CPU machine: DEVICE=cpu SPEED_PATCH="64 96" SPEED_BATCH=2 SPEED_STEPS=1 \
#   TIER_ARGS="--device cpu --max-size 96 --epochs 1 --iterations 2 --val-iterations 1" bash benchmarks/device_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/device_out}
BUNDLE=${BUNDLE:-$REPO/.device}
DEVICE=${DEVICE:-cuda}
SPEED_PATCH=${SPEED_PATCH:-640 768}
SPEED_BATCH=${SPEED_BATCH:-7}
SPEED_STEPS=${SPEED_STEPS:-10}
DEADLINE_S=${DEADLINE_S:-420}
TIER_TIMEOUT_S=${TIER_TIMEOUT_S:-450}
SITE=${SITE:-/tmp/nnunet_tongue_site}
STEPS=" ${STEPS:-speed tier cpu compile} "
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_run.log") 2>&1
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date -u +%T) +${SECONDS}s] $*"; }
want() { [[ "$STEPS" == *" $1 "* ]]; }

stamp "install $(ls "$BUNDLE"/wheels | wc -l) wheels into $SITE"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl
# --target is no site dir: make it one (its nnunet_tongue.pth registers the trainers, as a normal install
# does), then the stubs' folder, behind everything the machine has
mkdir -p "$SITE/boot"
printf 'import site\nsite.addsitedir("%s")\nsite.addsitedir("%s")\n' "$SITE" "$BUNDLE/stubs" >"$SITE/boot/sitecustomize.py"
export PYTHONPATH="$SITE/boot" PATH="$SITE/bin:$PATH"
python3 - <<'EOF'
import torch, nnunetv2, timm
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
print("torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("stock lookup:", find("nnUNetTrainerTUNet").__module__)
EOF

if want speed; then
  stamp "network training step, $DEVICE, patch $SPEED_PATCH, batch $SPEED_BATCH"
  python3 benchmarks/network_speed.py --device "$DEVICE" --patch $SPEED_PATCH --batch "$SPEED_BATCH" \
    --steps "$SPEED_STEPS" | tee "$OUT/network_speed_$DEVICE.md" || stamp "network step FAILED"
fi

if want tier; then
  stamp "GPU tier (stopped after TIER_TIMEOUT_S=$TIER_TIMEOUT_S s)"
  if timeout "$TIER_TIMEOUT_S" python3 benchmarks/biohit_benchmark.py --tier gpu --data "$BUNDLE/data" \
    --workdir /tmp/nnunet_tongue_runs --results-dir "$OUT" ${TIER_ARGS:-}; then
    stamp "GPU tier done"
  else
    stamp "GPU tier FAILED or ran out of time: its training logs (epoch times) are in train_logs_tail.txt"
  fi
  for log in /tmp/nnunet_tongue_runs/gpu/train_*.log; do echo "== $log"; tail -n 40 "$log"; done \
    >"$OUT/train_logs_tail.txt" 2>&1 || true
fi

RUNS=/tmp/nnunet_tongue_runs/gpu
if want cpu && [[ -d "$RUNS/segmented_nnUNetTrainerTUNet/masks" ]]; then
  stamp "the $DEVICE-trained T-Unet segments on CPU"
  MODEL=$RUNS/results/Dataset501_Tongue/nnUNetTrainerTUNet_Budget__nnUNetPlans__2d
  mkdir -p /tmp/cpu_photos
  for f in $(ls "$RUNS"/test_photos | head -n 3); do ln -sf "$(readlink -f "$RUNS/test_photos/$f")" /tmp/cpu_photos/; done
  CUDA_VISIBLE_DEVICES= nnunet-tongue segment -i /tmp/cpu_photos -o /tmp/cpu_segmented -m "$MODEL" -f 0 \
    -device cpu --no-mirroring --overwrite --no-progress || stamp "CPU segmentation FAILED"
  python3 - "$RUNS/segmented_nnUNetTrainerTUNet/masks" /tmp/cpu_segmented/masks <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from nnunet_tongue.evaluation.metrics import binary_metrics
gpu, cpu = map(Path, sys.argv[1:])
for mask in sorted(cpu.glob("*.png")):
    dice = binary_metrics(np.asarray(Image.open(mask)), np.asarray(Image.open(gpu / mask.name)))["dice"]
    print(f"{mask.name}: Dice(GPU mask, CPU mask) = {dice:.5f}")
EOF
fi

if want compile && ((SECONDS < DEADLINE_S)); then
  stamp "torch.compile'd step"
  python3 benchmarks/network_speed.py --device "$DEVICE" --patch $SPEED_PATCH --batch "$SPEED_BATCH" \
    --steps "$SPEED_STEPS" --compile --networks PlainConvUNet TUNet | tee "$OUT/network_speed_${DEVICE}_compiled.md" \
    || stamp "compiled step FAILED"
elif want compile; then
  stamp "skipped the torch.compile check: past DEADLINE_S=$DEADLINE_S (run it alone: STEPS=compile)"
fi
stamp "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
sleep 1  # let tee write the log's last lines
