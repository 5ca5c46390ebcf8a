#!/usr/bin/env bash
# The earlier results/glue-cpu (one stage, selection on dev; makd at c0a5c49), kept here with the script that made
# them. Regenerate results/glue-cpu/earlier: run each sweep (configs/), copy its trials CSV and sweep.json here, then the
# fine-tuned-teacher comparison (finetuned-teacher/), then rebuild the leaderboard, the paper-style table and the
# lambda plot from the committed CSVs.
#   bash results/glue-cpu/earlier/run.sh                 # everything (an interrupted sweep is resumed)
#   SWEEPS="2x384 2x128" FT_TASKS="" bash results/glue-cpu/earlier/run.sh
#   bash results/glue-cpu/earlier/run.sh --tables-only   # only rebuild the tables from the CSVs
# Its experiments go to runs/earlier/ (the current sweeps of the same names use runs/).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=results/glue-cpu/earlier
FT=$OUT/finetuned-teacher
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}

# sweep CONFIG DEST NAME: run (or resume) one sweep, keep its trials CSV, sweep.json and log in DEST.
sweep() {
    local config=$1 dest=$2 name=$3 exp resume=""
    exp="runs/earlier/$(sed -n 's/^name: *//p' "$config")"
    if [ -d "$exp" ]; then resume="--resume"; fi
    echo "== sweep $name ($(date -u +%H:%M:%S))"
    mkdir -p "$dest/logs"
    "$MAKD" sweep "$config" --glue-dir "$GLUE_DIR" --storage runs/earlier --quiet $resume > "$dest/logs/$name.txt"
    cp "$exp/trials.csv" "$dest/trials-$name.csv"
    cp "$exp/sweep.json" "$dest/sweep-$name.json"
}

if [ "${1:-}" != "--tables-only" ]; then
    for name in ${SWEEPS-2x384 2x384-tau2 2x128 6x384 6x768}; do
        sweep "$OUT/configs/$name.yaml" "$OUT" "$name"
    done
    # The paper's cost claim: fine-tune the teacher first (timed), then distil from it with vanilla KD.
    for task in ${FT_TASKS-rte mrpc}; do
        teacher=runs/teacher-ft-$task  # where finetuned-teacher/configs/ read it
        if [ ! -f "$teacher/model/config.json" ]; then
            echo "== fine-tune the teacher on $task ($(date -u +%H:%M:%S))"
            "$MAKD" distill --task "$task" --glue-dir "$GLUE_DIR" --student zoo:mpnet-base --loss ce --lr 5e-5 \
                --epochs 1 --max-train-samples 1000 --seed 0 --output-dir "$teacher" --save-model --quiet \
                > "$FT/teacher-$task.json.tmp"
            mv "$FT/teacher-$task.json.tmp" "$FT/teacher-$task.json"
        fi
        sweep "$FT/configs/2x384-$task.yaml" "$FT" "2x384-$task"
    done
fi
# The leaderboard CSV lives in tables/ so that `makd leaderboard results/glue-cpu/*.csv` sees only trials CSVs.
mkdir -p "$OUT/tables"
"$MAKD" leaderboard "$OUT"/trials-*.csv --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md" \
    --plot "$OUT/lambda.png"
# The three-seed tau-1 sweeps alone: their best-lambda means and seed spreads, without the one-seed sweeps.
"$MAKD" leaderboard "$OUT/trials-2x384.csv" "$OUT/trials-2x128.csv" --csv "$OUT/tables/leaderboard-tau1-3seeds.csv"
# Fine-tuned vs non-fine-tuned teacher, 2x384 student, RTE and MRPC.
if compgen -G "$FT/trials-*.csv" > /dev/null; then
    "$MAKD" leaderboard "$OUT/trials-2x384.csv" "$FT"/trials-*.csv --csv "$FT/leaderboard.csv" --markdown "$FT/table.md"
fi
