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

# Studies as users run them (override any variable: make tune-criteria-max PAR=3 N_TRIALS=200).
PREFIX ?= hpo
MODELS ?=
PAR ?= 4
N_TRIALS ?= 800
EPOCHS ?= 100
PATIENCE ?= 20
N_TRIALS_CRITERIA ?= 5000
GPU_MEMORY ?=
CONFIG ?=

.PHONY: wheelhouse report-screenshot install demo test test-integration test-learning test-all lint format bench gpu-check gpu-study clean help tune-criteria-max tune-criteria-supermax

help:
	@echo "make demo | test | test-integration | test-learning | test-all | lint | format | bench | gpu-check | gpu-study | wheelhouse | tune-criteria-max | tune-criteria-supermax | clean | install [TORCH_SPEC=...]"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/hpo tune --config configs/studies/demo.yaml --output-dir runs/demo

# Test tiers (tests/unit: no training, no subprocess, well under a minute; tests/integration: real training,
# processes, storage, MLflow). CI (.ci/run) runs both. Tests marked `learning` (pyproject: deselected by
# default) run only in `make test-learning`.
# The unit tier runs on UNIT_WORKERS processes (pytest-xdist; 2 fit the 2-core CI machine; 0 = in this one).
UNIT_WORKERS ?= 2
test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests/unit -m "not learning" -n $(UNIT_WORKERS) $(PYTEST_ARGS)

# The GPU device machine (no registry there): `make wheelhouse` downloads into wheelhouse/ the wheels hpo needs
# beyond the device image's CUDA torch/transformers/peft (the assumed baseline and what is left out: see
# scripts/wheelhouse.py) for these Pythons and platform, plus hpo's own wheel; it fails over the carry budget.
# On the device: run(carry=["wheelhouse"], command="scripts/device_run.sh hpo tune ... --no-mlflow").
DEVICE_PYTHON ?= 3.11 3.12
DEVICE_PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE_MAX_MIB ?= 64
wheelhouse: install
	$(BIN)/python scripts/wheelhouse.py --dest wheelhouse --python-version $(DEVICE_PYTHON) \
		--platform $(DEVICE_PLATFORM) --max-mib $(WHEELHOUSE_MAX_MIB)

# On a CUDA machine: real short trainings over a grid (models x batch x length x precision x checkpointing),
# measured allocated / reserved / NVML peaks vs the estimate -> runs/gpu-check.csv, and the measured peaks as
# a calibration file for this card (runs/gpu-check-calibration.json). Without CUDA it says so and exits 0.
gpu-check: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/bench_estimator.py --gpu-check \
		--out runs/gpu-check.csv --calibration runs/gpu-check-calibration.json
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/bench_estimator.py --gpu-check --grid lora \
		--out runs/gpu-check-lora.csv

# The whole-card study (scripts/gpu_study.py, ~8 min on a CUDA card): hpo --par vs fixed PAR on an emulated
# 24 GB card, forced OOMs, estimate vs measured peaks -> one JSON line, runs/gpu-study/*.csv. Without CUDA it
# runs simulated (tiny models, "measured": false).
gpu-study: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python scripts/gpu_study.py --out runs/gpu-study

test-integration: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests/integration -m "not learning" $(PYTEST_ARGS)

# The long learning checks, outside CI (~34 min on 2 cores): MiniLM beats the no-answer baseline on the
# evidence task (tests/integration/test_evidence_minilm.py). CI guards learning with the fast criteria check.
test-learning: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests -m learning $(PYTEST_ARGS)

test-all: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check hpo tests scripts
	$(BIN)/ruff format --check hpo tests scripts
	$(BIN)/mypy

format: install
	$(BIN)/ruff format hpo tests scripts
	$(BIN)/ruff check --fix hpo tests scripts

bench: install
	$(BIN)/python scripts/bench_estimator.py
	$(BIN)/python scripts/bench_scheduler.py --repeat 10
	$(BIN)/python scripts/bench_scheduler.py --repeat 10 --agent-defaults

MODELS_FLAG = $(if $(MODELS),--models $(MODELS),)
GPU_FLAG = $(if $(GPU_MEMORY),--gpu-memory $(GPU_MEMORY),)
CONFIG_FLAG = $(if $(CONFIG),--config $(CONFIG),)

tune-criteria-max: install
	@echo "tune-criteria-max: study=$(PREFIX)-criteria-max PAR=$(PAR) N_TRIALS=$(N_TRIALS) EPOCHS=$(EPOCHS) PATIENCE=$(PATIENCE) MODELS=$(or $(MODELS),agent default) GPU_MEMORY=$(or $(GPU_MEMORY),detected) CONFIG=$(or $(CONFIG),none)"
	$(BIN)/hpo tune --agent criteria --study $(PREFIX)-criteria-max --par $(PAR) --n-trials $(N_TRIALS) \
		--epochs $(EPOCHS) --patience $(PATIENCE) $(MODELS_FLAG) $(GPU_FLAG) $(CONFIG_FLAG)

tune-criteria-supermax: PAR = 2
tune-criteria-supermax: install
	@echo "tune-criteria-supermax: study=$(PREFIX)-criteria-supermax PAR=$(PAR) N_TRIALS_CRITERIA=$(N_TRIALS_CRITERIA) EPOCHS=$(EPOCHS) PATIENCE=$(PATIENCE) MODELS=$(or $(MODELS),agent default) GPU_MEMORY=$(or $(GPU_MEMORY),detected) CONFIG=$(or $(CONFIG),none)"
	$(BIN)/hpo tune --agent criteria --study $(PREFIX)-criteria-supermax --par $(PAR) \
		--n-trials $(N_TRIALS_CRITERIA) --epochs $(EPOCHS) --patience $(PATIENCE) $(MODELS_FLAG) $(GPU_FLAG) $(CONFIG_FLAG)

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info mlflow.db mlruns
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The README's screenshot of the demo study's report (after `make demo`; needs Debian chromium).
report-screenshot: install
	$(BIN)/python scripts/report_screenshot.py --study criteria-demo --output-dir runs/demo --png docs/report.png
