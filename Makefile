# hpo: `make demo` and `make test` work on a fresh machine (they install first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch requirement is installed first so users can pick their build:
#   make install TORCH_SPEC="torch==2.13.0"            (CPU build from local disk on our machines; default)
#   make install TORCH_SPEC="torch --index-url ..."     (a CUDA build)
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
STAMP := $(VENV)/.install.stamp

# Studies as users run them. Every study target (demo, tune-criteria-max, tune-criteria-supermax) takes
# N_TRIALS, OUTPUT_DIR, MODELS, PAR, EPOCHS, PATIENCE, GPU_MEMORY (the tune-* targets also CONFIG and PREFIX)
# and prints the hpo command it resolved to before running it:
#   make tune-criteria-supermax N_TRIALS=2 OUTPUT_DIR=/tmp/x PAR=3
# An unset variable takes the target's default (listed on its line, see `make help`). Old name still honoured:
# N_TRIALS_CRITERIA (tune-criteria-supermax's trial count; N_TRIALS wins over it).
PREFIX ?= hpo
N_TRIALS ?=
OUTPUT_DIR ?=
MODELS ?=
PAR ?=
EPOCHS ?=
PATIENCE ?=
GPU_MEMORY ?=
CONFIG ?=
N_TRIALS_CRITERIA ?=

.PHONY: wheelhouse report-screenshot install demo test test-integration test-learning test-all lint format bench gpu-check gpu-study clean help tune-criteria-max tune-criteria-supermax

# `make help` is built from the `## ` comment on each target's line (tests/integration/test_makefile.py checks
# that every target has one).
help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9][a-zA-Z0-9_-]*:.*## / {printf "  make %-24s %s\n", $$1, $$2}' \
		$(firstword $(MAKEFILE_LIST))
	@echo "Study targets take N_TRIALS= OUTPUT_DIR= MODELS=a,b PAR= EPOCHS= PATIENCE= GPU_MEMORY= (tune-*: CONFIG= PREFIX=)"

install: $(STAMP) ## create .venv and install hpo with its dev tools (TORCH_SPEC="torch==..." picks the build)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# $(call flag,--option,VALUE): "--option VALUE" when VALUE is set, else nothing.
flag = $(if $(strip $(2)),$(1) $(strip $(2)))
# The flags every study target passes through when set.
STUDY_FLAGS = $(call flag,--models,$(MODELS)) $(call flag,--gpu-memory,$(GPU_MEMORY)) $(call flag,--config,$(CONFIG))

demo: CMD = HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/hpo tune --config configs/studies/demo.yaml \
	--output-dir $(or $(OUTPUT_DIR),runs/demo) $(call flag,--n-trials,$(N_TRIALS)) $(call flag,--par,$(PAR)) \
	$(call flag,--epochs,$(EPOCHS)) $(call flag,--patience,$(PATIENCE)) $(call flag,--models,$(MODELS)) \
	$(call flag,--gpu-memory,$(GPU_MEMORY))
demo: install ## a small real study on the shipped sample, CPU, ~10 min (study criteria-demo in OUTPUT_DIR=runs/demo)
	@echo '$(strip $(CMD))'
	@$(strip $(CMD))

# Test tiers (tests/unit: no training, no subprocess, well under a minute; tests/integration: real training,
# processes, storage, MLflow). CI (.ci/run) runs both. Tests marked `learning` (pyproject: deselected by
# default) run only in `make test-learning`.
# The unit tier runs on UNIT_WORKERS processes (pytest-xdist; 2 fit the 2-core CI machine; 0 = in this one).
UNIT_WORKERS ?= 2
test: install ## the unit tier (CPU, no network, under a minute; UNIT_WORKERS=2 processes)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests/unit -m "not learning" -n $(UNIT_WORKERS) $(PYTEST_ARGS)

# The GPU device machine (no registry there): `make wheelhouse` downloads into wheelhouse/ the wheels hpo needs
# beyond the device image's CUDA torch/transformers/peft (the assumed baseline and what is left out: see
# scripts/wheelhouse.py) for these Pythons and platform, plus hpo's own wheel; it fails over the carry budget.
# On the device: run(carry=["wheelhouse"], command="scripts/device_run.sh hpo tune ... --no-mlflow").
DEVICE_PYTHON ?= 3.11 3.12
DEVICE_PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE_MAX_MIB ?= 64
wheelhouse: install ## wheels hpo needs on the GPU device machine, into wheelhouse/
	$(BIN)/python scripts/wheelhouse.py --dest wheelhouse --python-version $(DEVICE_PYTHON) \
		--platform $(DEVICE_PLATFORM) --max-mib $(WHEELHOUSE_MAX_MIB)

# On a CUDA machine: real short trainings over a grid (models x batch x length x precision x checkpointing),
# measured allocated / reserved / NVML peaks vs the estimate -> runs/gpu-check.csv, and the measured peaks as
# a calibration file for this card (runs/gpu-check-calibration.json). Without CUDA it says so and exits 0.
gpu-check: install ## on a CUDA card: measured vs estimated peaks -> runs/gpu-check*.csv (CPU: says so, exits 0)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/bench_estimator.py --gpu-check \
		--out runs/gpu-check.csv --calibration runs/gpu-check-calibration.json
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/bench_estimator.py --gpu-check --grid lora \
		--out runs/gpu-check-lora.csv

# The whole-card study (scripts/gpu_study.py, ~8 min on a CUDA card): hpo --par vs fixed PAR on an emulated
# 24 GB card, forced OOMs, estimate vs measured peaks -> one JSON line, runs/gpu-study/*.csv. Without CUDA it
# runs simulated (tiny models, "measured": false).
gpu-study: install ## the whole-card study (~8 min on a card; simulated without CUDA) -> runs/gpu-study
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/gpu_study.py --out runs/gpu-study

test-integration: install ## the integration tier (real training, processes, storage, MLflow, browser)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests/integration -m "not learning" $(PYTEST_ARGS)

# The long learning checks, outside CI (~34 min on 2 cores): MiniLM beats the no-answer baseline on the
# evidence task (tests/integration/test_evidence_minilm.py). CI guards learning with the fast criteria check.
test-learning: install ## the long learning checks, outside CI (~34 min on 2 cores)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests -m learning $(PYTEST_ARGS)

test-all: install ## every test tier
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests $(PYTEST_ARGS)

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check hpo tests scripts
	$(BIN)/ruff format --check hpo tests scripts
	$(BIN)/mypy

format: install ## ruff format and ruff check --fix
	$(BIN)/ruff format hpo tests scripts
	$(BIN)/ruff check --fix hpo tests scripts

bench: install ## the estimator and scheduler benchmarks
	$(BIN)/python scripts/bench_estimator.py
	$(BIN)/python scripts/bench_scheduler.py --repeat 10
	$(BIN)/python scripts/bench_scheduler.py --repeat 10 --agent-defaults

# Long studies the way they are run on a 24 GB card.
tune-criteria-max: CMD = $(BIN)/hpo tune --agent criteria --study $(PREFIX)-criteria-max --par $(or $(PAR),4) \
	--n-trials $(or $(N_TRIALS),800) --epochs $(or $(EPOCHS),100) --patience $(or $(PATIENCE),20) \
	--output-dir $(or $(OUTPUT_DIR),runs) $(STUDY_FLAGS)
tune-criteria-max: install ## study hpo-criteria-max (PREFIX=hpo): PAR=4 N_TRIALS=800 EPOCHS=100 PATIENCE=20 OUTPUT_DIR=runs
	@echo '$(strip $(CMD))'
	@$(strip $(CMD))

tune-criteria-supermax: CMD = $(BIN)/hpo tune --agent criteria --study $(PREFIX)-criteria-supermax --par $(or $(PAR),2) \
	--n-trials $(or $(N_TRIALS),$(N_TRIALS_CRITERIA),5000) --epochs $(or $(EPOCHS),100) \
	--patience $(or $(PATIENCE),20) --output-dir $(or $(OUTPUT_DIR),runs) $(STUDY_FLAGS)
tune-criteria-supermax: install ## study hpo-criteria-supermax (PREFIX=hpo): PAR=2 N_TRIALS=5000 EPOCHS=100 PATIENCE=20 OUTPUT_DIR=runs
	@echo '$(strip $(CMD))'
	@$(strip $(CMD))

clean: ## remove runs/, caches and build outputs (keeps .venv)
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info mlflow.db mlruns
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The README's screenshot of the demo study's report (after `make demo`; needs Debian chromium).
report-screenshot: install ## docs/report.png from the demo study's report (after make demo; needs Debian chromium)
	$(BIN)/python scripts/report_screenshot.py --study criteria-demo --output-dir $(or $(OUTPUT_DIR),runs/demo) \
		--png docs/report.png
