#!/usr/bin/env bash
# Every GPU benchmark in one device call: the HF training anchor, bench/train_gpu.py,
# bench/generate.py and bench/block_65b.py, one after another, each under its own time limit
# and writing into $OUT. A script that fails or runs out of time is logged and the next one
# runs; the summary at the end (what the device call's output tail shows) has each one's
# exit status and the last lines of its output.
#
#   bash bench/gpu_session.sh            # about 500 s: give the device call a 550 s timeout
#   bash bench/gpu_session.sh float8     # with the float8 variants and the loss-curve check
#
# gpu/gpu_anchor.py must be in place beforehand (a copy of /work/shared/bench/gpu_anchor.py;
# gpu/ is git-ignored: carry it). Without it the anchor is skipped and train_gpu.py has no
# anchor column.
#
# Time: each script's --budget-s bounds its own run (a variant starts only if it and its
# rounds still fit) and `timeout` cuts it 15 s later at the latest; the anchor has no budget
# of its own, only the limit. Limits: anchor 125 + train 165 + generate 150 + block 65 = 505 s.
# With float8, train gets 215 s (two more variants and the curve) and generate 100 s.
# Estimates from bench/results/*_h200.*: the anchor ~110 s (hf_compile compiles for 64 s);
# train ~130 s for four variants (round 0 builds each twice, then two rounds of a rebuild and
# 10 steps); generate fits about seven variants in 135 s (HF's dynamic cache takes 17 s per
# call, so its turns come last), block_65b ~40 s. Override the variant lists with
# TRAIN_VARIANTS and GEN_VARIANTS (space-separated), the interpreter with PYTHON.
set -u
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
MODE=${1:-}

TRAIN_LIMIT=165 TRAIN_BUDGET=150 GEN_LIMIT=150 GEN_BUDGET=135 CURVE=()
TRAIN_DEFAULT="ac_selective_cudnn ac_off_cudnn ac_selective ac_off"
case "$MODE" in
  "") ;;
  float8)
    TRAIN_DEFAULT="ac_selective_cudnn ac_selective_cudnn_float8 ac_off_cudnn ac_off_cudnn_float8"
    TRAIN_LIMIT=215 TRAIN_BUDGET=200 GEN_LIMIT=100 GEN_BUDGET=85 CURVE=(--curve-steps 30)
    ;;
  *) echo "usage: bash bench/gpu_session.sh [float8]" >&2; exit 2 ;;
esac
# Admission order is priority: ours compiled and HF static first, the slow eager paths last.
GEN_DEFAULT="ours_compile@1 hf_static@1 ours_compile@16 hf_static@16 ours_graph@1 ours_graph@16
ours_eager@1 hf_dynamic@1 ours_eager@16 hf_dynamic@16"
read -r -a TRAIN <<<"${TRAIN_VARIANTS:-$TRAIN_DEFAULT}"
read -r -d '' -a GEN <<<"${GEN_VARIANTS:-$GEN_DEFAULT}"

LOG="$OUT/session.log"
STEPS=()

step() {  # step NAME LIMIT_S COMMAND...: stdout to $OUT/NAME.txt, stderr to $OUT/NAME.err
  local name=$1 limit=$2
  shift 2
  local began=$SECONDS
  echo "== $name (limit ${limit} s): $*" | tee -a "$LOG"
  timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  local rc=$?
  local why=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why=" (time limit)"; fi
  echo "== $name: exit $rc$why after $((SECONDS - began)) s" | tee -a "$LOG"
  STEPS+=("$name")
}

{ nvidia-smi -L; "$PYTHON" -c "import torch; print(torch.__version__)"; } 2>&1 | tee -a "$LOG"

if [ -f gpu/gpu_anchor.py ]; then
  step anchor 125 "$PYTHON" gpu/gpu_anchor.py hf_eager hf_compile
else
  echo "== anchor: gpu/gpu_anchor.py is missing, skipped" | tee -a "$LOG"
fi
step train_gpu "$TRAIN_LIMIT" "$PYTHON" bench/train_gpu.py --out "$OUT/train_gpu.json" \
  --anchor "$OUT/anchor.txt" --budget-s "$TRAIN_BUDGET" ${CURVE[@]+"${CURVE[@]}"} "${TRAIN[@]}"
step generate "$GEN_LIMIT" "$PYTHON" bench/generate.py --out "$OUT/generate.json" \
  --budget-s "$GEN_BUDGET" "${GEN[@]}"
step block_65b 65 "$PYTHON" bench/block_65b.py --out "$OUT/block_65b" --budget-s 55

echo
echo "==== summary ($SECONDS s)"
cat "$LOG"
for name in "${STEPS[@]}"; do
  echo "---- $name: last lines of $name.txt, then of $name.err"
  tail -n 16 "$OUT/$name.txt"
  tail -n 4 "$OUT/$name.err"
done
