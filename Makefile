# iatrun — setup, tests and experiments. `make test` and `make run` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
TORCH  ?= torch==2.13.0
JOBS   ?= 2
DEVICE ?= auto
ARGS   ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-slurm run sweep paper bench gpu-check docs-figures slurm-up slurm-down lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Torch first, by a pinned version, so pip never resolves a large CUDA build on its own.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not slurm"

# The tests against a running cluster (make slurm-up first; CI's .ci/run does both).
test-slurm: $(STAMP)
	$(BIN)/pytest -q -m slurm --slurm

run: $(STAMP)
	$(BIN)/iatrun fit --device $(DEVICE) $(ARGS)

sweep: $(STAMP)
	$(BIN)/iatrun sweep --grid quick --jobs $(JOBS) --device $(DEVICE) $(ARGS)

paper: $(STAMP)
	$(BIN)/iatrun sweep --grid paper --jobs $(JOBS) --device $(DEVICE) $(ARGS)

bench: $(STAMP)
	$(BIN)/iatrun bench $(ARGS)

# On a machine with one GPU: device tests, stack step times, the paper grid end to end (gpu.csv).
gpu-check: $(STAMP)
	$(BIN)/iatrun gpu-check $(ARGS)

# The figures of the README and docs/, redrawn from committed results and one short run (docs/img/).
docs-figures: $(STAMP)
	$(BIN)/python tools/docs-figures

# A single-node SLURM cluster on localhost (Debian's slurm-wlm and munge; root): tools/slurm-local.
slurm-up:
	tools/slurm-local up

slurm-down:
	tools/slurm-local down

lint: $(STAMP)
	$(BIN)/ruff check iatrun tests tools/docs-figures
	$(BIN)/ruff format --check iatrun tests tools/docs-figures

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
