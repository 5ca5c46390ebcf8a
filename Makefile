# Two entry points (see README): `make demo` sets up and runs the main job (a small real sweep),
# `make test` sets up and runs the tests.
VENV := .venv
PY := $(VENV)/bin/python
GLUE_DIR ?= $(MAKD_GLUE_DIR)
# A local GLUE folder when GLUE_DIR (default: $MAKD_GLUE_DIR) holds one, else makd reads nyu-mll/glue from the hub.
DATA = $(if $(wildcard $(GLUE_DIR)/RTE),--glue-dir $(GLUE_DIR),)

.PHONY: setup test test-quick coverage lint demo distill bench docs clean

$(PY): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $(PY)

setup: $(PY)

lint: setup
	$(VENV)/bin/ruff check makd makd_sweep tests bench

# Two workers, a test file each at a time (a module's tests share its local Ray): the suite mostly waits on Ray and
# subprocesses, so a second file runs in the first one's idle time (CONTRIBUTING.md, "Tests and CI").
TEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/ruff check makd makd_sweep tests bench
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=50

# The inner loop (CONTRIBUTING.md, "Tests and CI"): every module's unit tests without sweeps, clusters, real
# models or data, and benchmarks (tests marked slow or sweep), in about 3 minutes here.
test-quick: setup
	$(VENV)/bin/pytest -q -m "not slow and not sweep" --durations=10

# Line coverage of makd/ and makd_sweep/ over the whole suite (what issue 43 compares before and after a test change).
coverage: setup
	$(VENV)/bin/pytest -q --cov=makd --cov=makd_sweep --cov-report=term:skip-covered --cov-report=json:coverage.json

# The main job: a small real sweep (configs/quickstart.yaml) on Ray Tune, then its results table.
# A rerun finishes an interrupted sweep (--resume) or reprints a finished one.
demo: setup
	if [ -d runs/quickstart/rte ]; then RESUME=--resume; fi; \
	$(VENV)/bin/makd sweep configs/quickstart.yaml $(DATA) $$RESUME

# One distillation run, no Ray: the smallest end-to-end check.
distill: setup
	$(VENV)/bin/makd distill --task rte $(DATA) --teacher zoo:minilm-l6 --student 2x128 \
		--loss taylor --lam 0.5 --epochs 1 --max-train-samples 256

# Benchmarks (results/bench/): cache vs teacher-in-the-loop, throughput vs an HF Trainer, ASHA savings, 1 vs 2
# nodes, Ray overhead, trial profiles. ~80 min on 2 CPU cores. BENCH="asha scaling" runs a subset.
bench: setup
	$(if $(GLUE_DIR),MAKD_GLUE_DIR=$(GLUE_DIR)) $(PY) -m bench.run_all $(BENCH)

# docs/sweep-config.md from the schema (makd_sweep/config.py, makd/config.py); tests/test_config_reference.py checks it.
docs: setup
	$(VENV)/bin/python -m makd_sweep.config_reference docs/sweep-config.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
