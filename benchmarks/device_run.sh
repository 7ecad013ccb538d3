#!/usr/bin/env bash
# The GPU checks, the GPU tier of the BioHit benchmark and the bundled recipe's GPU training, in one command on a
# lent GPU machine.
#
#   python benchmarks/device_bundle.py --biohit   # here: wheels, stubs and data into .device/ (git-ignored;
#                                                 # --two-source WORKDIR for the bundled step)
#   bash benchmarks/device_run.sh                 # there, with .device carried; everything lands in $OUT
#
# 1. installs the bundle into /tmp (the machine's own PyTorch stays; nnunet-tongue is this checkout, with its
#    start-up hook and console script as an install makes them) and checks the stock trainer lookup; from here
#    on the data of the steps that train is prepared in the background (CPU only);
# 2. speed: network training step, bf16, at the GPU tier's planned patch and batch (network_speed.py);
# 3. compile: the same step torch.compile'd, PlainConvUNet and COMPILE_NETWORKS (nnU-Net compiles on CUDA by default);
# 4. tier: the four trainers trained side by side on the GPU, with as many epochs as fit before END_S
#    (sized from step 2's times), segment the 60 held-out photos on the GPU, evaluate
#    (benchmarks/biohit_benchmark.py --tier gpu);
# 5. long: LONG_TRAINERS (default nnUNetTrainerTUNet) trained alone with nnU-Net's torch.compile for as
#    many 50-iteration epochs as fit before END_S, then segmented and scored on the 60 held-out photos: the
#    GPU tier's study LONG_STUDY (default long2). Meant to run without `tier` (both take what time is left).
# 6. cpu: the CUDA-trained T-Unet segments photos with -device cpu, compared with its GPU masks;
# 7. bundled: the bundled model's recipe (trainer, data, batch, resolution) trained for as many steps as fit
#    before END_S, packed into $OUT for `python benchmarks/device_bundled.py bring-home` (bundle made with
#    `device_bundle.py --two-source ...`; not with tier or long, which need --biohit).
# Each step writes to $OUT as soon as it ends, so a run cut short still returns what it finished; a step
# that fails is reported and the next one runs.
#
# Settings (environment): STEPS (which of "speed compile tier long cpu bundled" to run, default "speed compile
# tier cpu"; e.g. STEPS="speed compile long" for a long training after the speed checks), OUT (default
# ./device_out), BUNDLE (.device), DEVICE (cuda), SPEED_PATCH ("640 768", the patch nnU-Net plans for BioHit
# at full resolution), SPEED_BATCH (7), SPEED_STEPS (10), SPEED_NETWORKS (default: all), COMPILE_NETWORKS
# (compiled beside PlainConvUNet, TUNetFast), COMPILE_TIMEOUT_S (150), END_S (seconds after the
# start by which everything should be done, 560: give the command a limit of 600), BUDGET_ARGS (the tier's
# schedule by hand, e.g. "--epochs 6 --iterations 40"), TIER_ARGS (further arguments for biohit_benchmark.py),
# BUNDLED_ITERATIONS (the bundled step's steps per epoch, 250), LONG_TRAINERS, LONG_STUDY, LONG_STEP_S (seconds
# per compiled step; default: 0.7 × the network's eager step from `speed`, else 0.065, the compiled T-Unet's 0.055
# plus loss and optimiser).
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
END_S=${END_S:-560}
COMPILE_TIMEOUT_S=${COMPILE_TIMEOUT_S:-150}
COMPILE_NETWORKS=${COMPILE_NETWORKS:-TUNetFast}  # the compiled T-Unet was measured on 2026-11-26
SITE=${SITE:-/tmp/nnunet_tongue_site}
SPEED_JSON=/tmp/network_speed_$DEVICE.json  # $OUT brings back 8 files at most: the .md holds the same
rm -f "$SPEED_JSON"
STEPS=" ${STEPS:-speed compile tier cpu} "
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_run.log") 2>&1
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date -u +%T) +${SECONDS}s] $*"; }
want() { [[ "$STEPS" == *" $1 "* ]]; }

stamp "install $(ls "$BUNDLE"/wheels | wc -l) wheels into $SITE"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl
# --target is no site dir: make it one, holding this checkout's start-up hook (nnunet_tongue.pth registers the
# trainers, as an install does) with the checkout on the path before it, then the stubs' folder, behind
# everything the machine has; the console script as an install writes it
mkdir -p "$SITE/boot" "$SITE/bin"
cp nnunet_tongue/_startup/nnunet_tongue.pth "$SITE/"
printf 'import site, sys\nsys.path.append("%s")\nsite.addsitedir("%s")\nsite.addsitedir("%s")\n' \
  "$REPO" "$SITE" "$BUNDLE/stubs" >"$SITE/boot/sitecustomize.py"
printf '#!/usr/bin/env python3\nimport sys\nfrom nnunet_tongue.cli import main\nsys.exit(main())\n' \
  >"$SITE/bin/nnunet-tongue"
chmod +x "$SITE/bin/nnunet-tongue"
export PYTHONPATH="$SITE/boot" PATH="$SITE/bin:$PATH"
python3 - <<'EOF'
import torch, nnunetv2, timm
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
print("torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("stock lookup:", find("nnUNetTrainerTUNet").__module__)
EOF

WORK=/tmp/nnunet_tongue_runs
TIER=(python3 benchmarks/biohit_benchmark.py --tier gpu --data "$BUNDLE/data" --workdir "$WORK" --results-dir "$OUT")
if want tier || want long; then  # CPU work: converts and preprocesses while the GPU is timed
  stamp "preparing the GPU tier's data in the background"
  "${TIER[@]}" ${TIER_ARGS:-} --prepare-only >/tmp/prepare.log 2>&1 &
  PREPARE=$!
fi
BUNDLED=(python3 benchmarks/device_bundled.py)
if want bundled; then
  stamp "preparing the two-source dataset in the background"
  "${BUNDLED[@]}" prepare --bundle "$BUNDLE" --workdir "$WORK/bundled" >/tmp/bundled_prepare.log 2>&1 &
  PREPARE_BUNDLED=$!
fi

if want speed; then
  stamp "network training step, $DEVICE, patch $SPEED_PATCH, batch $SPEED_BATCH"
  python3 benchmarks/network_speed.py --device "$DEVICE" --patch $SPEED_PATCH --batch "$SPEED_BATCH" \
    --steps "$SPEED_STEPS" --json "$SPEED_JSON" ${SPEED_NETWORKS:+--networks $SPEED_NETWORKS} \
    | tee "$OUT/network_speed_$DEVICE.md" \
    || stamp "network step FAILED"
fi

if want compile; then  # nnU-Net compiles the network by default on CUDA: the T-Unet must compile and train
  stamp "torch.compile'd step (stopped after ${COMPILE_TIMEOUT_S}s)"
  timeout "$COMPILE_TIMEOUT_S" python3 benchmarks/network_speed.py --device "$DEVICE" --patch $SPEED_PATCH \
    --batch "$SPEED_BATCH" --steps "$SPEED_STEPS" --compile --networks PlainConvUNet $COMPILE_NETWORKS \
    | tee "$OUT/network_speed_${DEVICE}_compiled.md" || stamp "compiled step FAILED or ran out of time"
fi

if want tier; then
  wait "$PREPARE" && stamp "data prepared" || { stamp "preparing the data FAILED:"; tail -n 30 /tmp/prepare.log; }
  # The schedule: as many epochs as fit before END_S, sized from the eager step times just measured. The
  # four trainings share the GPU, so one iteration of all four costs about the sum of their steps (on the
  # H200 on 2026-11-26: at most 0.31 s per iteration for steps summing to 0.35 s, so OVERHEAD 1.0); AFTER
  # covers segmenting and scoring (149 s there), STARTUP the trainings' start and first epoch's extra
  # (about 20 s), CPU the CPU-inference step (17 s). Without step times (STEPS has no speed) the tier's
  # own schedule runs; BUDGET_ARGS="--epochs E --iterations I" sets one by hand.
  if [[ -z "${BUDGET_ARGS:-}" && -f "$SPEED_JSON" ]]; then
    BUDGET_ARGS=$(python3 - "$SPEED_JSON" "$((END_S - SECONDS))" <<'EOF'
import json, sys
iterations, val_iterations, overhead, after, startup, cpu = 50, 5, 1.0, 160, 30, 30
tier = {"PlainConvUNet", "ResUNet", "FabiansUNet", "TUNet"}  # the networks of the tier's four trainers
step = overhead * sum(r["step_s"] for r in json.load(open(sys.argv[1])) if r["network"] in tier)
epoch = (iterations + 0.4 * val_iterations) * step + 2
epochs = max(2, min(250, int((float(sys.argv[2]) - after - startup - cpu) / epoch)))
print(f"--epochs {epochs} --iterations {iterations} --val-iterations {val_iterations}")
EOF
)
  fi
  LIMIT=$((END_S - SECONDS - 45 > 60 ? END_S - SECONDS - 45 : 60))
  stamp "GPU tier, ${BUDGET_ARGS:-its default schedule} (stopped after ${LIMIT}s)"
  if timeout "$LIMIT" "${TIER[@]}" ${BUDGET_ARGS:-} ${TIER_ARGS:-}; then
    stamp "GPU tier done"
  else
    stamp "GPU tier FAILED or ran out of time: its training logs (epoch times) are in train_logs_tail.txt"
  fi
  for log in "$WORK"/gpu/train_*.log; do echo "== $log"; tail -n 40 "$log"; done \
    >"$OUT/train_logs_tail.txt" 2>&1 || true
fi

if want long; then
  wait "$PREPARE" && stamp "data prepared" || { stamp "preparing the data FAILED:"; tail -n 30 /tmp/prepare.log; }
  LONG_TRAINERS=${LONG_TRAINERS:-nnUNetTrainerTUNet}
  # epochs of 50 steps (+2 validation steps) that fit before END_S; 240 s cover start-up, compilation (about
  # 60 s for the T-Unet), nnU-Net's final validation, segmenting and scoring
  LONG_EPOCHS=$(python3 - "$SPEED_JSON" "$((END_S - SECONDS - 240))" "${LONG_STEP_S:-}" $LONG_TRAINERS <<'EOF'
import json, os, sys
speed_json, seconds, step, trainers = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
if not step:
    eager = {r["network"]: r["step_s"] for r in json.load(open(speed_json))} if os.path.exists(speed_json) else {}
    nets = [t.replace("nnUNetTrainer", "").replace("Upright", "") or "PlainConvUNet" for t in trainers]
    step = 0.7 * sum(eager[n] for n in nets) if all(n in eager for n in nets) else 0.065 * len(trainers)
print(max(0, int(seconds / (52 * float(step) + 1))))
EOF
)
  if (( LONG_EPOCHS < 2 )); then
    stamp "long: no time left for 2 epochs; skipped"
  else
    stamp "long: $LONG_TRAINERS, $LONG_EPOCHS epochs x 50 iterations, compiled (study ${LONG_STUDY:-long2})"
    timeout "$((END_S - SECONDS > 60 ? END_S - SECONDS : 60))" "${TIER[@]}" --study "${LONG_STUDY:-long2}" \
      --trainers $LONG_TRAINERS --epochs "$LONG_EPOCHS" --iterations 50 --val-iterations 2 --compile ${TIER_ARGS:-} \
      && stamp "long done" || stamp "long FAILED or ran out of time"
    for log in "$WORK"/gpu/train_"${LONG_STUDY:-long2}"_*.log; do echo "== $log"; tail -n 40 "$log"; done \
      >"$OUT/train_logs_tail.txt" 2>&1 || true
  fi
fi

RUNS=$WORK/gpu
if want cpu && [[ -d "$RUNS/segmented_nnUNetTrainerTUNet/masks" ]]; then
  stamp "the $DEVICE-trained T-Unet segments on CPU"
  MODEL=$(ls -d "$RUNS"/results/Dataset501_Tongue/nnUNetTrainerTUNet_*epochs_*its*__nnUNetPlans__2d | head -n 1)
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

if want bundled; then
  if wait "$PREPARE_BUNDLED"; then
    stamp "two-source dataset prepared: $(grep 'plans:' /tmp/bundled_prepare.log || true)"
    # training ends 45 s before END_S: packing the checkpoint and the log's last lines
    "${BUNDLED[@]}" train --workdir "$WORK/bundled" --out "$OUT" --device "$DEVICE" \
      ${BUNDLED_ITERATIONS:+--iterations $BUNDLED_ITERATIONS} --end-at "$(( $(date +%s) + END_S - SECONDS - 45 ))" \
      && stamp "bundled done" || stamp "bundled FAILED or ran out of time (bundled_train.log)"
  else
    stamp "preparing the two-source dataset FAILED:"; tail -n 30 /tmp/bundled_prepare.log
  fi
fi

stamp "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
sleep 1  # let tee write the log's last lines
