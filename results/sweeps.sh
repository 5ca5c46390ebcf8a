# Shared by the results/*/run.sh scripts that run the sweeps of their configs/ and rebuild their tables from the
# copied CSVs (glue-cpu, glue-teachers, adaptive-seeds, transfer-cpu). Source it after setting OUT, MAKD and GLUE_DIR.

# run_sweeps NAME...: `makd sweep $OUT/configs/NAME.yaml` for each NAME (SWEEPS overrides the list), resumed when
# its experiment exists. TASKS="rte" runs one piece, `makd sweep --tasks rte`: its own experiment, runs/EXP-rte,
# and its files are named NAME-rte here, so a sweep longer than a session runs in pieces that each finish within
# one. The sweep's log is appended to $OUT/logs/NAME.txt (it keeps every piece the sweep ran in); its trials CSV
# and sweep.json are copied here when `makd sweep` returns, so tables come only from finished sweeps.
run_sweeps() {
    mkdir -p "$OUT/logs"
    for name in ${SWEEPS-$*}; do
        config="$OUT/configs/$name.yaml"
        exp="runs/$(sed -n 's/^name: *//p' "$config")"
        piece=(); if [ -n "${TASKS:-}" ]; then piece=(--tasks "$TASKS"); exp="$exp-${TASKS//,/-}"; name="$name-${TASKS//,/-}"; fi
        resume=""; if [ -d "$exp" ]; then resume="--resume"; fi   # makd sweep --resume also starts a sweep stopped early
        echo "== sweep $name ($(date -u +%H:%M:%S))"
        echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: makd sweep $config $resume ${piece[*]}" >> "$OUT/logs/$name.txt"
        "$MAKD" sweep "$config" --glue-dir "$GLUE_DIR" $resume "${piece[@]}" >> "$OUT/logs/$name.txt" 2>&1
        cp "$exp/trials.csv" "$OUT/trials-$name.csv"
        cp "$exp/sweep.json" "$OUT/sweep-$name.json"
    done
}

# measure_costs CONFIG...: each task x student's inference cost re-measured on this machine, apart from the trials
# (`makd inference-cost`, issue 44), into $OUT/tables/costs.csv; every table built after it uses those numbers
# and names the machine. Run it on a quiet machine: nothing else running.
measure_costs() {
    mkdir -p "$OUT/tables"
    "$MAKD" inference-cost "$@" --glue-dir "$GLUE_DIR" --csv "$OUT/tables/costs.csv"
}

# costs_option: `--costs $OUT/tables/costs.csv` when measure_costs wrote one, else nothing (the trials' own numbers).
costs_option() {
    if [ -f "$OUT/tables/costs.csv" ]; then echo "--costs $OUT/tables/costs.csv"; fi
}

# build_tables: from every $OUT/trials-*.csv, the leaderboard CSV, the paper-style table, the lambda figure, the
# search stage's table and the HTML report; nothing when no sweep has finished yet.
build_tables() {
    if compgen -G "$OUT/trials-*.csv" > /dev/null; then
        mkdir -p "$OUT/tables"
        # shellcheck disable=SC2046  # costs_option is empty or two words without spaces
        "$MAKD" leaderboard "$OUT"/trials-*.csv $(costs_option) --csv "$OUT/tables/leaderboard.csv" \
            --markdown "$OUT/table.md" --plot "$OUT/lambda.png"
        "$MAKD" leaderboard "$OUT"/trials-*.csv --stage search --markdown "$OUT/tables/search-stage.md"
        "$MAKD" report "$OUT"/trials-*.csv $(costs_option) -o "$OUT/report.html"
    fi
}
