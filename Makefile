# Two entry points (see README): `make demo` sets up and runs the main job, `make test` sets up and runs the tests.
VENV := .venv
PY := $(VENV)/bin/python
GLUE_DIR ?= ../shared/glue

.PHONY: setup test lint demo clean

$(PY): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $(PY)

setup: $(PY)

lint: setup
	$(VENV)/bin/ruff check makd tune tests

test: setup
	$(VENV)/bin/ruff check makd tune tests
	$(VENV)/bin/pytest -q

demo: setup
	$(VENV)/bin/makd distill --task rte --glue-dir $(GLUE_DIR) --teacher zoo:minilm-l6 --student 2x128 \
		--loss taylor --lam 0.5 --epochs 1 --max-train-samples 256

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
