#!/usr/bin/env bash
# Reproduce Table 2 of Springstein et al.: does GAN-synthesized handwriting help a recognizer?
#
# Trains the DenseWAP recognizer on (a) CROHME train alone, (b) CROHME + synthetic data drawn
# with equal probability (the paper's setting), (c) synthetic data alone; evaluates each best
# checkpoint (chosen on a held-out 5% of CROHME train, never on the test set) on CROHME test 2014
# with beam search, and writes results/table2.md with training-loss and validation-ExpRate plots.
#
#   scripts/reproduce_table2.sh --scale tiny     # CPU, minutes: a slice of CROHME, tiny models
#   scripts/reproduce_table2.sh --scale cpu      # two CPU cores, hours: five rows (CROHME, + GAN, + stitched,
#                                                # GAN only, stitched only) with the shipped generator and the
#                                                # stitcher -> results/table2_cpu.md (scripts/table2_cpu.py)
#   scripts/reproduce_table2.sh --scale full     # GPU: all of CROHME, the paper's model sizes
#
# Options: --data DIR (CROHME tarballs + formulas; default $FORMULA_GAN_DATA or ../shared/data),
#          --normalization height128|symbol, --generator FILE (reuse a trained generator: skips
#          the GAN training), --gan-steps N (GAN length; tiny default 150), --beam N,
#          --device cpu|cuda. With --scale cpu, what follows -- goes to scripts/table2_cpu.py, e.g.
#          -- --rows ac --runs DIR train.max_steps=8000 (see python3 scripts/table2_cpu.py --help).
# Every step resumes: rerun the same command after an interruption.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCALE=tiny
DATA="${FORMULA_GAN_DATA:-$ROOT/../shared/data}"
NORM=height128
GENERATOR=""
BEAM=""
DEVICE=auto
GAN_STEPS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) SCALE="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --normalization) NORM="$2"; shift 2 ;;
    --generator) GENERATOR="$2"; shift 2 ;;
    --beam) BEAM="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --gan-steps) GAN_STEPS="$2"; shift 2 ;;
    --) shift; break ;;  # the rest goes to scripts/table2_cpu.py (--scale cpu)
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $# -gt 0 && "$SCALE" != cpu ]]; then
  echo "arguments after -- are for --scale cpu only: $*" >&2; exit 2
fi
case "$SCALE" in
  tiny|full) ;;
  cpu) exec python3 scripts/table2_cpu.py --data "$DATA" "$@" ;;  # its own steps; resumes the same way
  *) echo "--scale must be tiny, cpu or full" >&2; exit 2 ;;
esac
case "$NORM" in height128|symbol) ;; *) echo "--normalization must be height128 or symbol" >&2; exit 2 ;; esac

FG=(python3 -m formula_gan)
if [[ "$SCALE" == tiny ]]; then
  WORK="datasets/prepared/tiny"; RUNS="runs/reproduce-tiny"
  N_TRAIN=160; N_VAL=40; N_TEST=60          # CROHME files in the slice
  FORMULAS="datasets/samples/formulas.txt"; FORMULA_ARGS=()
  GAN_ARGS=(--config configs/gan/tiny.yaml "steps=${GAN_STEPS:-150}" "checkpoint_every=${GAN_STEPS:-150}" "sample_every=${GAN_STEPS:-150}")
  BEAM="${BEAM:-3}"; DEVICE=cpu
else
  WORK="datasets/prepared"; RUNS="runs/reproduce-full"
  FORMULAS="$DATA/formulas/im2latex_formulas.norm.lst"
  FORMULA_ARGS=(--filter-list "$DATA/formulas/im2latex_train_filter.lst")
  GAN_ARGS=(--config configs/gan/base.yaml)
  [[ -n "$GAN_STEPS" ]] && GAN_ARGS+=("steps=$GAN_STEPS")
  BEAM="${BEAM:-10}"
fi
RESULTS="results"
mkdir -p "$WORK" "$RUNS" "$RESULTS"
log() { echo "[reproduce_table2 $(date +%H:%M:%S)] $*" >&2; }

# ---- 1. CROHME: unpack, split train into train / held-out val, rasterize -------------------
if [[ ! -d "$WORK/inkml/crohme/test2014" ]]; then
  log "unpacking CROHME from $DATA/crohme"
  mkdir -p "$WORK/inkml"
  for f in crohme_train_2014.tar.xz crohme_test_2014.tar.xz; do
    [[ -f "$DATA/crohme/$f" ]] || { echo "$DATA/crohme/$f not found (use --data DIR)" >&2; exit 2; }
    tar -xJf "$DATA/crohme/$f" -C "$WORK/inkml"
  done
fi
split_dir="$WORK/inkml/split"
if [[ ! -f "$split_dir/.done" ]]; then
  log "splitting CROHME train: every 20th file (sorted by path) held out for validation"
  rm -rf "$split_dir"; mkdir -p "$split_dir/train" "$split_dir/val" "$split_dir/test2014"
  mapfile -t files < <(cd "$WORK/inkml/crohme/train" && find . -name '*.inkml' | LC_ALL=C sort)
  mapfile -t tests < <(cd "$WORK/inkml/crohme/test2014" && find . -name '*.inkml' | LC_ALL=C sort)
  n_train=0; n_val=0
  for i in "${!files[@]}"; do
    f="${files[$i]#./}"; name="${f//\//__}"
    if (( i % 20 == 19 )); then
      [[ "$SCALE" == tiny && $n_val -ge $N_VAL ]] && continue
      ln -s "$ROOT/$WORK/inkml/crohme/train/$f" "$split_dir/val/$name"; n_val=$((n_val + 1))
    else
      [[ "$SCALE" == tiny && ( $n_train -ge $N_TRAIN || $((i % 8)) -ne 0 ) ]] && continue
      ln -s "$ROOT/$WORK/inkml/crohme/train/$f" "$split_dir/train/$name"; n_train=$((n_train + 1))
    fi
  done
  for i in "${!tests[@]}"; do
    [[ "$SCALE" == tiny && $i -ge $N_TEST ]] && break
    f="${tests[$i]#./}"; ln -s "$ROOT/$WORK/inkml/crohme/test2014/$f" "$split_dir/test2014/${f//\//__}"
  done
  touch "$split_dir/.done"
fi
prepare() {  # prepare <split> <normalization>
  local out="$WORK/crohme-$2/$1"
  [[ -f "$out/manifest.json" ]] && return 0
  log "prepare-crohme $1 ($2)"
  "${FG[@]}" prepare-crohme "$split_dir/$1" --out "$out" --normalize "$2" --workers 2 --no-progress
}
for split in train val test2014; do prepare "$split" "$NORM"; done
prepare train height128   # the GAN always learns at height 128

# ---- 2. synthetic handwriting: render formulas, train the GAN, synthesize ----------------
if [[ -z "$GENERATOR" ]]; then
  GENERATOR="$RUNS/gan/generator.pt"
  if [[ ! -f "$GENERATOR" ]]; then
    [[ -f "$WORK/rendered/manifest.json" ]] || {
      log "prepare-formulas: rendered GAN inputs, tokens within CROHME's vocabulary, <= 50 tokens"
      "${FG[@]}" prepare-formulas "$FORMULAS" "${FORMULA_ARGS[@]}" --out "$WORK/rendered" \
        --vocab "$WORK/crohme-height128/train" --no-progress
    }
    log "train-gan"
    resume=(); [[ -f "$RUNS/gan/checkpoint.pt" ]] && resume=(--resume)
    "${FG[@]}" train-gan "${GAN_ARGS[@]}" "${resume[@]}" "out_dir=$RUNS/gan" \
      "data.rendered=[$WORK/rendered]" "data.handwritten=[$WORK/crohme-height128/train]"
    "${FG[@]}" export-generator "$RUNS/gan/checkpoint.pt" --out "$GENERATOR"
  fi
fi
if [[ ! -f "$WORK/synthetic/manifest.json" ]]; then
  log "synthesize with $GENERATOR"
  device=(); [[ "$DEVICE" != auto ]] && device=(--device "$DEVICE")
  "${FG[@]}" synthesize "$FORMULAS" --generator "$GENERATOR" --out "$WORK/synthetic" --max-tokens 50 \
    --no-progress "${device[@]}"
fi

# ---- 3. the three recognizers ----------------------------------------------------------
CROHME_TRAIN="{path: $WORK/crohme-$NORM/train, weight: 1.0}"
SYNTH="{path: $WORK/synthetic, weight: 1.0}"
declare -A TRAIN_SETS=(
  [crohme_only]="[$CROHME_TRAIN]"
  [crohme_plus_synthetic]="[$CROHME_TRAIN, $SYNTH]"
  [synthetic_only]="[$SYNTH]"
)
ROWS=(crohme_only crohme_plus_synthetic synthetic_only)
for row in "${ROWS[@]}"; do
  if [[ "$SCALE" == tiny ]]; then
    cfg=(--config configs/recognizer/tiny.yaml "name=$row" train.max_steps=300 train.val_every=50)
  else
    cfg=(--config "configs/recognizer/$row.yaml" "train.device=$DEVICE")
  fi
  log "train-recognizer $row"
  "${FG[@]}" train-recognizer --no-progress "${cfg[@]}" "out_dir=$RUNS/recognizer/{name}" \
    "data.normalization=$NORM" "data.train=${TRAIN_SETS[$row]}" "data.val=[$WORK/crohme-$NORM/val]"
  log "evaluate $row on CROHME test 2014 (beam $BEAM)"
  "${FG[@]}" evaluate --recognizer "$RUNS/recognizer/$row/best.pt" "$WORK/crohme-$NORM/test2014" \
    --beam "$BEAM" --device "$DEVICE" --out "$RESULTS/table2_${SCALE}_$row.json" --no-progress
done

# ---- 4. the table and the plots --------------------------------------------------------
python3 - "$SCALE" "$RUNS" "$RESULTS" "$BEAM" "$NORM" "${ROWS[@]}" <<'EOF'
import json, sys
from formula_gan.reports import plot_curves, read_log, results_table, write_report

scale, runs, results, beam, norm, *rows = sys.argv[1:]
metrics = [(r, json.load(open(f"{results}/table2_{scale}_{r}.json"))["metrics"]) for r in rows]
keys = ["exprate", "le1", "le2", "wer", "cer", "bleu", "edit_score", "perplexity"]
loss = {r: read_log(f"{runs}/recognizer/{r}", "train", "loss") for r in rows}
val = {r: [(s, 100 * v) for s, v in read_log(f"{runs}/recognizer/{r}", "val", "exprate")] for r in rows}
figs = [f"{results}/table2_{scale}_loss.png", f"{results}/table2_{scale}_val_exprate.png"]
plot_curves(loss, figs[0], f"Table 2 ({scale}): training loss", "cross-entropy")
plot_curves(val, figs[1], f"Table 2 ({scale}): validation ExpRate (greedy, held-out CROHME train)", "ExpRate %")
intro = (
    f"CROHME test 2014, {metrics[0][1]['num_formulas']} formulas, beam {beam}, normalization {norm}, "
    f"scale `{scale}`. Rates in %. Each recognizer's checkpoint was chosen by greedy ExpRate on a held-out "
    f"5% of CROHME train. Made by `scripts/reproduce_table2.sh --scale {scale}`; per-sample predictions in "
    f"`table2_{scale}_<run>.json`."
    + (" The tiny scale checks the pipeline; its numbers say nothing about quality." if scale == "tiny" else "")
)
write_report(f"{results}/table2_{scale}.md", "Table 2: recognizers trained with and without synthetic data",
             intro, results_table(metrics, keys), figs)
print(f"wrote {results}/table2_{scale}.md")
EOF
