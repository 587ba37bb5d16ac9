# Two entry points for a new machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
AZURITE := node_modules/.bin/azurite-blob
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.PHONY: install run test serve benchmarks clean

# torch first, from the local CPU wheel, so pip never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(AZURITE): package.json
	npm install --no-audit --no-fund --silent
	touch $(AZURITE)

install: $(STAMP)

run: install
	$(BIN)/python flows/retrain_all.py

test: install $(AZURITE)
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest

serve: install
	$(BIN)/python -m deployments.serve

benchmarks: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf lake mlflow.db mlartifacts .prefect .salesrisk config/endpoints.yaml runs lightning_logs catboost_info
