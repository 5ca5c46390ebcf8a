#!/usr/bin/env bash
# results/transfer-cpu, step 1 (issue 42): the strong teacher, all-mpnet-base-v2 (MPNet 12x768, 109.5M), fine-tuned
# per task by makd's teacher_finetune stage and cached (with its logits on train and dev), exactly as the sweeps in
# configs/ ask for it: the same data (each task's training split less its selection hold-out; SST-2: the 20,000
# examples its transfer sweep reads, less the hold-out taken from the 1,000 labeled ones) and the same settings,
# fixed before any run: 3 epochs, lr 2e-5, batch 32, max length 128, the last epoch kept.
# A cached teacher is found, not retrained; a killed fine-tune resumes where it stopped (its checkpoint is taken
# after every epoch and every 10 minutes within one).
#   bash results/transfer-cpu/teachers.sh               # rte mrpc stsb sst2
#   TASKS="rte" bash results/transfer-cpu/teachers.sh   # one of them
# Each task appends one JSON line (its path, dev score, seconds) to logs/teachers.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/transfer-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
mkdir -p "$OUT/logs"
for task in ${TASKS-rte mrpc stsb sst2}; do
    data=(--holdout-fraction 0.1)   # configs/glue.yaml: full training sets, a 10% hold-out
    if [ "$task" = sst2 ]; then     # configs/sst2-transfer.yaml
        data=(--max-train-samples 20000 --transfer-labeled 1000 --holdout-fraction 0.2)
    fi
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: teacher for $task" >> "$OUT/logs/teachers.txt"
    "$MAKD" finetune-teacher --task "$task" --glue-dir "$GLUE_DIR" --teacher zoo:mpnet-base \
        --epochs 3 --lr 2e-5 --batch-size 32 --max-length 128 "${data[@]}" \
        2>> "$OUT/logs/teachers.txt" | tee -a "$OUT/logs/teachers.jsonl"
done
