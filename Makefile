# Two commands on a fresh machine: `make serve` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_ARCHIVE ?= ../shared/data/mp-crystals.tar.gz
CACHE_DIR ?= $(HOME)/.cache/crystal-service
DATA_DIR ?= $(CACHE_DIR)/data/mp-crystals

.PHONY: setup serve test test-slow bench lint data train-defaults evaluate-defaults report clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# Pinned so that pip takes the CPU wheel instead of gigabytes of CUDA packages.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

serve: setup
	$(PY) -m service --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check crystalgraph crystal_client training service tests bench

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

# --- the default models (issue: train and ship) ---------------------------------------------
EPOCHS ?= 12
VERSION ?= 1
ONLY ?=
train-defaults: setup data
	$(PY) -m training.protocol train --data $(DATA_DIR) --epochs $(EPOCHS) --version $(VERSION) \
		$(if $(ONLY),--only $(ONLY)) --threads 1 --no-progress

evaluate-defaults: setup data
	$(PY) -m training.protocol evaluate --data $(DATA_DIR)

report: setup
	$(PY) -m training.protocol report
