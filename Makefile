# iatrun — setup, tests and experiments. `make test` and `make run` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
TORCH  ?= torch==2.13.0
JOBS   ?= 2
DEVICE ?= auto
ARGS   ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-slurm run sweep paper bench gpu-check docs-figures slurm-up slurm-down lint clean \
	reference reference-paper reference-mesh reference-study reference-exact reference-parts

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

# The reference results (docs/results.md): four sweep folders under results/reference/, each made
# part by part (every part a resumable sweep that fits in 90 minutes on 2 CPU cores), then
# reported whole; `make reference-parts` lists the parts. Paper parts are task x input row x half
# of the output columns (local: rect, pwl, pwq; rest: fourier and the wavelets), mesh parts
# task x input x mesh ratios (low: 1, 2, 4; r8; r16). `make reference-paper` runs every part in
# order, `make reference-paper-fitting-pwq` both halves of a row, `make
# reference-paper-fitting-pwq-local` one part. An interrupted part resumes where it stopped, and
# each part's report covers every part done so far. Lean cells (no model.pt, no figures, a curve
# point every 10 steps) keep the folders small enough to commit.
REF      := results/reference
REF_LEAN := artifacts=lean train.log_every=10
REF_RUN   = $(BIN)/iatrun sweep --jobs $(JOBS) --device $(DEVICE)
BASES6   := rect pwl pwq fourier pwl-w rect-w
MESH_IN  := fourier pwq pwl rect-w rect
OUT_local := rect,pwl,pwq
OUT_rest := fourier,pwl-w,rect-w
PAPER_ROWS  := $(foreach t,fitting memorization,$(addprefix $(t)-,$(BASES6)))
PAPER_PARTS := baselines $(foreach r,$(PAPER_ROWS),$(r)-local $(r)-rest)
R_low := 1,2,4
R_r8  := 8
R_r16 := 16
MESH_ROWS   := $(foreach t,fitting memorization,$(addprefix $(t)-,$(MESH_IN)))
MESH_PARTS  := relu $(foreach r,$(MESH_ROWS),$(r)-low $(r)-r8 $(r)-r16)
# The mesh grid's r = 4 cells and relu are paper-grid cells: copied from there when it has them,
# so run `make reference` without -j (the paper parts first); a mesh part run before its paper
# cells exist trains them itself.
MESH_REUSE = $(if $(wildcard $(REF)/paper/cells),--reuse $(REF)/paper)
STUDY_PARTS := $(foreach n,gain none layer,$(addprefix $(n)-,fitting memorization))
task_of  = $(firstword $(subst -, ,$(1)))
rest_of  = $(patsubst $(call task_of,$(1))-%,%,$(1))

reference: reference-paper reference-mesh reference-study reference-exact

reference-parts:
	@echo "paper: $(addprefix reference-paper-,$(PAPER_PARTS))"
	@echo "mesh:  $(addprefix reference-mesh-,$(MESH_PARTS))"
	@echo "study: $(addprefix reference-study-,$(STUDY_PARTS))"
	@echo "exact: reference-exact"

reference-paper: $(addprefix reference-paper-,$(PAPER_PARTS))
	$(REF_RUN) --grid paper --out $(REF)/paper $(REF_LEAN) $(ARGS)

reference-paper-baselines: $(STAMP)
	$(REF_RUN) --grid paper --out $(REF)/paper --where model=relu,tanh,sigmoid $(REF_LEAN) $(ARGS)

# One part: row $(1) (task-input), output half $(2); and the row as both of its halves.
define paper_part
reference-paper-$(1)-$(2): $$(STAMP)
	$$(REF_RUN) --grid paper --out $$(REF)/paper --where task=$(call task_of,$(1)) \
		--where model.basis_in=$(call rest_of,$(1)) --where model.basis_out=$$(OUT_$(2)) $$(REF_LEAN) $$(ARGS)
endef
$(foreach r,$(PAPER_ROWS),$(foreach h,local rest,$(eval $(call paper_part,$(r),$(h)))))
$(foreach r,$(PAPER_ROWS),$(eval reference-paper-$(r): reference-paper-$(r)-local reference-paper-$(r)-rest))

reference-mesh: $(addprefix reference-mesh-,$(MESH_PARTS))
	$(REF_RUN) --grid mesh --out $(REF)/mesh $(MESH_REUSE) $(REF_LEAN) $(ARGS)

reference-mesh-relu: $(STAMP)
	$(REF_RUN) --grid mesh --out $(REF)/mesh --where model=relu $(MESH_REUSE) $(REF_LEAN) $(ARGS)

# One part: row $(1) (task-input) at the mesh ratios $(2) names (low: r = 1, 2, 4); the row whole.
define mesh_part
reference-mesh-$(1)-$(2): $$(STAMP)
	$$(REF_RUN) --grid mesh --out $$(REF)/mesh --where task=$(call task_of,$(1)) \
		--where model.basis_in=$(call rest_of,$(1)) --where model.mesh_ratio=$$(R_$(2)) $$(MESH_REUSE) \
		$$(REF_LEAN) $$(ARGS)
endef
$(foreach r,$(MESH_ROWS),$(foreach h,low r8 r16,$(eval $(call mesh_part,$(r),$(h)))))
$(foreach r,$(MESH_ROWS),$(eval reference-mesh-$(r): $(addprefix reference-mesh-$(r)-,low r8 r16)))

# The study grid is lean already (conf/sweep/study.yaml); its parts are norm x task.
reference-study: $(addprefix reference-study-,$(STUDY_PARTS))
	$(REF_RUN) --grid study --out $(REF)/study $(ARGS)

reference-study-%: $(STAMP)
	$(REF_RUN) --grid study --out $(REF)/study --where model.norm=$(call task_of,$*) \
		--where task=$(call rest_of,$*) $(ARGS)

reference-exact: $(STAMP)
	$(REF_RUN) --grid exact --out $(REF)/exact $(REF_LEAN) $(ARGS)

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
