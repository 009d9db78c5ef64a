#!/usr/bin/env bash
# Reproduce Table 1 of Springstein et al.: how useful is each GAN variant's output?
#
# For every ablation row (λ ∈ {0, 1, 2, 10}, no attention, swapped target domain, no handwritten
# source) it trains the GAN, exports its generator, and runs the paper's protocol
# (`formula-gan score-generator`): synthesize a fixed formula set, train the small task model on
# that synthetic data alone for a fixed budget, report perplexity (and ExpRate) on CROHME test
# 2014. Writes results/table1_<scale>.md with the task models' training-loss plot.
#
#   scripts/reproduce_table1.sh --scale tiny     # CPU, minutes per row: tiny GANs and task models
#   scripts/reproduce_table1.sh --scale cpu      # two CPU cores, hours: the refiner's ablations, the stitcher and
#                                                # the rendering GAN -> results/table1_cpu.md (scripts/table1_cpu.py;
#                                                # what follows -- goes to it, e.g. -- --rows refine,stitch)
#   scripts/reproduce_table1.sh --scale full     # GPU: the paper's sizes (configs/gan/<row>.yaml)
#
# Options: --data DIR (default $FORMULA_GAN_DATA or ../shared/data), --rows "lambda0 lambda1 ...",
#          --gan-steps N (GAN length; tiny default 150), --device cpu|cuda.
# Every step resumes: rerun the same command after an interruption.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCALE=tiny
DATA="${FORMULA_GAN_DATA:-$ROOT/../shared/data}"
ROWS="lambda0 lambda1 lambda2 lambda10 no_attention swap_target_domain no_handwritten_source"
DEVICE=auto
GAN_STEPS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) SCALE="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --gan-steps) GAN_STEPS="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$SCALE" in tiny|full) ;; cpu) exec python3 scripts/table1_cpu.py --data "$DATA" "$@" ;;
  *) echo "--scale must be tiny, cpu or full" >&2; exit 2 ;; esac
[[ $# -eq 0 ]] || { echo "arguments after -- go to --scale cpu only" >&2; exit 2; }

FG=(python3 -m formula_gan)
# What each ablation row changes, for the tiny scale (the full scale reads configs/gan/<row>.yaml).
declare -A TINY_CHANGE=(
  [lambda0]="lambda_task=0.0" [lambda1]="lambda_task=1.0" [lambda2]="lambda_task=2.0" [lambda10]="lambda_task=10.0"
  [no_attention]="model.attention=false" [swap_target_domain]="swap_target_domain=true"
  [no_handwritten_source]="handwritten_source=false"
)
if [[ "$SCALE" == tiny ]]; then
  WORK="datasets/prepared/tiny"; RUNS="runs/reproduce-tiny/table1"
  N_TRAIN=160; N_TEST=60
  FORMULAS="datasets/samples/formulas.txt"; FORMULA_ARGS=()
  SCORE_FORMULAS="datasets/samples/formulas.txt"
  SCORE_ARGS=(--config configs/recognizer/tiny.yaml train.max_steps=200)
  DEVICE=cpu
else
  WORK="datasets/prepared"; RUNS="runs/reproduce-full/table1"
  FORMULAS="$DATA/formulas/im2latex_formulas.norm.lst"
  FORMULA_ARGS=(--filter-list "$DATA/formulas/im2latex_train_filter.lst")
  SCORE_FORMULAS="$WORK/score_formulas.txt"   # the fixed set: im2latex's validation formulas
  SCORE_ARGS=()                                # configs/recognizer/score_generator.yaml
fi
RESULTS="results"
mkdir -p "$WORK" "$RUNS" "$RESULTS"
log() { echo "[reproduce_table1 $(date +%H:%M:%S)] $*" >&2; }

# ---- 1. CROHME train (the GAN's handwriting) and test 2014, rendered formulas --------------
if [[ ! -d "$WORK/inkml/crohme/test2014" ]]; then
  log "unpacking CROHME from $DATA/crohme"
  mkdir -p "$WORK/inkml"
  for f in crohme_train_2014.tar.xz crohme_test_2014.tar.xz; do
    [[ -f "$DATA/crohme/$f" ]] || { echo "$DATA/crohme/$f not found (use --data DIR)" >&2; exit 2; }
    tar -xJf "$DATA/crohme/$f" -C "$WORK/inkml"
  done
fi
slice_dir="$WORK/inkml/table1"
if [[ ! -f "$slice_dir/.done" ]]; then
  rm -rf "$slice_dir"; mkdir -p "$slice_dir/train" "$slice_dir/test2014"
  mapfile -t files < <(cd "$WORK/inkml/crohme/train" && find . -name '*.inkml' | LC_ALL=C sort)
  mapfile -t tests < <(cd "$WORK/inkml/crohme/test2014" && find . -name '*.inkml' | LC_ALL=C sort)
  n=0
  for i in "${!files[@]}"; do
    [[ "$SCALE" == tiny && ( $n -ge $N_TRAIN || $((i % 8)) -ne 0 ) ]] && continue
    f="${files[$i]#./}"; ln -s "$ROOT/$WORK/inkml/crohme/train/$f" "$slice_dir/train/${f//\//__}"; n=$((n + 1))
  done
  for i in "${!tests[@]}"; do
    [[ "$SCALE" == tiny && $i -ge $N_TEST ]] && break
    f="${tests[$i]#./}"; ln -s "$ROOT/$WORK/inkml/crohme/test2014/$f" "$slice_dir/test2014/${f//\//__}"
  done
  touch "$slice_dir/.done"
fi
for split in train test2014; do
  out="$WORK/table1-crohme/$split"
  [[ -f "$out/manifest.json" ]] && continue
  log "prepare-crohme $split (height128)"
  "${FG[@]}" prepare-crohme "$slice_dir/$split" --out "$out" --normalize height128 --workers 2 --no-progress
done
HANDWRITTEN="$WORK/table1-crohme/train"
TEST="$WORK/table1-crohme/test2014"
if [[ ! -f "$WORK/table1-rendered/manifest.json" ]]; then
  log "prepare-formulas"
  "${FG[@]}" prepare-formulas "$FORMULAS" "${FORMULA_ARGS[@]}" --out "$WORK/table1-rendered" --vocab "$HANDWRITTEN" --no-progress
fi
if [[ "$SCALE" == full && ! -f "$SCORE_FORMULAS" ]]; then
  # im2latex validation formulas: line indices (0-based) of the filter list into the formula file
  awk 'NR == FNR { keep[$2 + 1] = 1; next } FNR in keep' \
    "$DATA/formulas/im2latex_validate_filter.lst" "$FORMULAS" > "$SCORE_FORMULAS.tmp"
  mv "$SCORE_FORMULAS.tmp" "$SCORE_FORMULAS"
fi

# ---- 2. one GAN per row, scored by the task model ----------------------------------------
for row in $ROWS; do
  [[ -n "${TINY_CHANGE[$row]:-}" ]] || { echo "unknown row $row (known: ${!TINY_CHANGE[*]})" >&2; exit 2; }
  gan="$RUNS/$row/gan"
  if [[ ! -f "$gan/generator.pt" ]]; then
    if [[ "$SCALE" == tiny ]]; then
      cfg=(--config configs/gan/tiny.yaml "steps=${GAN_STEPS:-150}" "checkpoint_every=${GAN_STEPS:-150}" "sample_every=${GAN_STEPS:-150}" "${TINY_CHANGE[$row]}")
    else
      cfg=(--config "configs/gan/$row.yaml")
      [[ -n "$GAN_STEPS" ]] && cfg+=("steps=$GAN_STEPS")
    fi
    resume=(); [[ -f "$gan/checkpoint.pt" ]] && resume=(--resume)
    log "train-gan $row"
    "${FG[@]}" train-gan "${cfg[@]}" "${resume[@]}" "out_dir=$gan" \
      "data.rendered=[$WORK/table1-rendered]" "data.handwritten=[$HANDWRITTEN]"
    "${FG[@]}" export-generator "$gan/checkpoint.pt" --out "$gan/generator.pt"
  fi
  if [[ ! -f "$RUNS/$row/score/score.json" ]]; then
    log "score-generator $row"
    "${FG[@]}" score-generator --generator "$gan/generator.pt" --formulas "$SCORE_FORMULAS" --test "$TEST" \
      --out-dir "$RUNS/$row/score" --device "$DEVICE" --no-progress "${SCORE_ARGS[@]}"
  fi
done

# ---- 3. the table and the plot -------------------------------------------------------------
python3 - "$SCALE" "$RUNS" "$RESULTS" $ROWS <<'EOF'
import json, sys
from formula_gan.reports import plot_curves, read_log, results_table, write_report

scale, runs, results, *rows = sys.argv[1:]
scores = [(r, json.load(open(f"{runs}/{r}/score/score.json"))) for r in rows]
table = results_table([(r, s["metrics"]) for r, s in scores], ["perplexity", "exprate", "wer", "cer"])
loss = {r: read_log(f"{runs}/{r}/score/task-model", "train", "loss") for r in rows}
fig = f"{results}/table1_{scale}_task_loss.png"
plot_curves(loss, fig, f"Table 1 ({scale}): task model trained on each generator's output", "cross-entropy")
json.dump({r: s["metrics"] for r, s in scores}, open(f"{results}/table1_{scale}.json", "w"), indent=1)
n = scores[0][1]["metrics"]["num_formulas"]
intro = (
    f"Perplexity (lower is better) and greedy ExpRate (%) on CROHME test 2014 ({n} formulas) of the task "
    f"model trained only on each generator's synthetic data for {scores[0][1]['train_steps']} steps. "
    f"Made by `scripts/reproduce_table1.sh --scale {scale}`."
    + (" The tiny scale checks the pipeline; its numbers say nothing about quality." if scale == "tiny" else "")
)
write_report(f"{results}/table1_{scale}.md", "Table 1: GAN ablations scored by the task model", intro, table, [fig])
print(f"wrote {results}/table1_{scale}.md")
EOF
