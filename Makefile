# Two commands on a fresh machine: `make serve` (runtime dependencies only) and `make test` (with the
# development tools). Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_ARCHIVE ?= ../shared/data/mp-crystals.tar.gz
CACHE_DIR ?= $(HOME)/.cache/crystal-service
DATA_DIR ?= $(CACHE_DIR)/data/mp-crystals

# torch is installed first, pinned to the version the shipped models are tested with. Which build
# pip takes depends on where it looks: PyPI's wheel is the CPU build on macOS and Windows, but the
# CUDA build on Linux x86-64 (it pulls several GB of nvidia-* packages). pip
# prefers a `+cpu` wheel of the same version where an index or find-links has one (PyTorch's CPU
# index, a local wheel folder), as the Docker image does. A CPU-only Linux venv:
#   make serve TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL),)

.PHONY: runtime setup serve test test-slow bench lint data train-defaults train-snapshot evaluate-defaults report clean

# The runtime: what `make serve` needs (the service, the client, training), no development tools.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_INDEX) '$(TORCH)'
	$(PY) -m pip install -e .
	touch $@

# The development install (`make test`, `make lint`, training targets): the runtime plus the `dev` extra.
$(VENV)/.installed: $(VENV)/.runtime
	$(PY) -m pip install -e '.[dev]'
	touch $@

runtime: $(VENV)/.runtime
setup: $(VENV)/.installed

serve: runtime
	$(PY) -m service --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest

# Exit status 5 is pytest's "no tests collected": no slow test today is not a failure.
test-slow: setup
	$(PY) -m pytest -m slow; status=$$?; \
	if [ $$status -eq 5 ]; then echo "test-slow: no test is marked slow"; exit 0; fi; exit $$status

# ruff (lint and docstrings, then formatting) and mypy (strict on crystalgraph): see pyproject.toml.
LINT_PATHS := crystalgraph crystal_client training service tests bench
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# Extract the shared training data to a cache folder outside the repository.
data: $(DATA_DIR)/labels.csv
$(DATA_DIR)/labels.csv: $(DATA_ARCHIVE)
	mkdir -p $(dir $(DATA_DIR))
	tar -xzf $(DATA_ARCHIVE) -C $(dir $(DATA_DIR))
	touch $@

bench: setup data
	$(PY) -m bench --data $(DATA_DIR) --soak-s 600

clean:
	rm -rf $(VENV) .pytest_cache

# --- the default models: the v3 protocol (models/REPORT.md) -----------------------------------
# Every shipped v3 model, `name:version`, side by side (one thread each); each resumes where it
# stopped (its run folder, else the snapshot committed under training/checkpoints/) and a model
# already in models/ is skipped, so the command is safe to re-run. `make train-snapshot` refreshes
# that snapshot. One run: ONLY="cgcnn-mp-formation-energy:3"; a name without `:` gets VERSION.
EPOCHS ?= 150
VERSION ?= 3
ONLY ?= cgcnn-mp-formation-energy:3 sr-cgcnn-mp-formation-energy:3 cgcnn-mp-multitask:1 sr-cgcnn-mp-multitask:1
RECIPE ?= --loss l1 --batch-size 64 --lr 1e-3 --warmup-epochs 5 --ema-decay 0.999 --compile
RUNS_DIR ?= $(CACHE_DIR)/runs/v3-e$(EPOCHS)
PROTOCOL = $(PY) -m training.protocol
ONLY_NAMES = $(foreach m,$(ONLY),$(firstword $(subst :, ,$(m))))
train-defaults: setup data
	mkdir -p $(RUNS_DIR)
	for m in $(ONLY); do \
		name=$${m%%:*}; version=$(VERSION); case $$m in *:*) version=$${m#*:};; esac; \
		$(PROTOCOL) train --data $(DATA_DIR) --runs-dir $(RUNS_DIR) --epochs $(EPOCHS) $(RECIPE) \
			--version $$version --only $$name --threads 1 --workers 1 --no-progress > $(RUNS_DIR)/$$name.log 2>&1 & \
	done; wait; tail -n 4 $(RUNS_DIR)/*.log

train-snapshot: setup
	$(PROTOCOL) snapshot --runs-dir $(RUNS_DIR) --epochs $(EPOCHS) --only $(ONLY_NAMES)

evaluate-defaults: setup data
	$(PY) -m training.protocol evaluate --data $(DATA_DIR)

report: setup
	$(PY) -m training.protocol report
