#!/usr/bin/env bash
# results/mrpc-budget (issue 22): does the pretrained 2x384 student (zoo:minilm-l6@0,5) learn MRPC above the
# majority class when ce gets more budget than results/glue-teachers gave it (lr 1e-4, 3 epochs)? ce only (no teacher
# is read), lr in LRS x EPOCHS epochs x SEEDS, one `makd distill` each; each run chooses its epoch on the 10% train
# hold-out and reports dev at it, untouched; the table chooses the lr on the hold-out too.
# Two runs at a time, one thread each; a rerun skips finished runs and resumes the others from their last epoch.
#   bash results/mrpc-budget/run.sh                 # the runs, then the table
#   bash results/mrpc-budget/run.sh --tables-only   # only the table, from results/mrpc-budget/runs/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-results/mrpc-budget}
MAKD=${MAKD:-.venv/bin/makd}
PY=${PY:-.venv/bin/python}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
WORK=${WORK:-runs/mrpc-budget}
LRS=${LRS:-1e-4 3e-4 1e-3}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-10}
EXTRA=${EXTRA:-}   # more `makd distill` flags (a toy run's --max-train-samples)

one_run() {  # lr seed: train, then copy its result.json here (a finished run is skipped)
    local dir="$WORK/lr$1-seed$2"
    if [ -f "$OUT/runs/lr$1-seed$2.json" ]; then return 0; fi
    OMP_NUM_THREADS=1 "$MAKD" distill --task mrpc --glue-dir "$GLUE_DIR" --student zoo:minilm-l6@0,5 --loss ce \
        --lr "$1" --seed "$2" --epochs "$EPOCHS" --batch-size 32 --max-length 128 --output-dir "$dir" --quiet \
        $EXTRA > "$dir.log" 2>&1
    cp "$dir/result.json" "$OUT/runs/lr$1-seed$2.json"
}

if [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$WORK" "$OUT/runs"
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: LRS='$LRS' SEEDS='$SEEDS' EPOCHS=$EPOCHS $EXTRA"
    start=$(date +%s)
    running=0
    for lr in $LRS; do
        for seed in $SEEDS; do
            one_run "$lr" "$seed" &
            running=$((running + 1))
            if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
        done
    done
    while [ "$running" -gt 0 ]; do wait -n; running=$((running - 1)); done
    echo "== done in $(( $(date +%s) - start )) s"
fi
"$PY" results/mrpc-budget/table.py "$OUT"/runs/*.json --teacher-leaderboard results/glue-teachers/tables/leaderboard.csv \
    > "$OUT/table.md.tmp"
mv "$OUT/table.md.tmp" "$OUT/table.md"
cat "$OUT/table.md"
