#!/usr/bin/env bash
# On the offline GPU box (../shared/device/README.md): bench/gpu.py, then the GPU tests; logs and results under $OUT
# (the benchmark first: a session's 15 device minutes may end before the tests do).
# From the development machine, after `make setup` and `bash ../shared/device/bundle.sh`, with pytest's wheels added
# to .device/wheels (see docs/performance.md): run it through the device tool as `bash bench/device.sh`.
set -u
t0=$(date +%s)
source .device/env.sh
out=${OUT:-/tmp/makd-device-out}; mkdir -p "$out"
echo "setup $(( $(date +%s) - t0 )) s" > "$out/timing.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
t1=$(date +%s)
timeout "${BENCH_TIMEOUT:-430}" python3 -m bench.gpu --glue-dir "$MAKD_GLUE_DIR" --out "$out/bench-gpu" \
    > "$out/bench-gpu.out" 2> "$out/bench-gpu.log"
echo "bench rc=$? $(( $(date +%s) - t1 )) s (with setup: $(( $(date +%s) - t0 )) s)" >> "$out/timing.txt"
t2=$(date +%s)
MAKD_TEST_TOKENIZER_DIR=$MAKD_DEVICE_TOK timeout "${TESTS_TIMEOUT:-110}" python3 -m pytest -q -p no:cacheprovider \
    tests/test_gpu.py > "$out/tests-gpu.log" 2>&1
echo "tests rc=$? $(( $(date +%s) - t2 )) s" >> "$out/timing.txt"
# The device tool returns at most 8 files from a run: the benchmark's folder travels as one archive.
tar -C "$out" -czf "$out/bench-gpu.tgz" bench-gpu && rm -rf "$out/bench-gpu"
cat "$out/timing.txt"; tail -3 "$out/bench-gpu.log"; tail -5 "$out/tests-gpu.log"
