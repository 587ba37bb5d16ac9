# Two entry points for a new machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
AZURITE := node_modules/.bin/azurite-blob
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.PHONY: install run test serve ui benchmarks clean

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
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

serve: install
	$(BIN)/python -m deployments.serve

# The two UIs on what `make run` left in this folder: the Prefect UI on its PREFECT_HOME (flow and
# task runs, artifacts) and the MLflow UI on its store (runs, plots, registered models). Ctrl+C
# stops both. The flows' artifacts link MLflow at SALESRISK_MLFLOW_UI_URL (default port 5000).
PREFECT_UI_PORT ?= 4200
MLFLOW_UI_PORT ?= 5000
ui: install
	@set -e; \
	export PREFECT_HOME="$${PREFECT_HOME:-$(CURDIR)/.prefect}"; \
	store="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"; \
	mkdir -p "$$PREFECT_HOME" "$(CURDIR)/.cache"; \
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_UI_PORT)/api \
		$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_UI_PORT) --analytics-off \
		> "$$PREFECT_HOME/ui.log" 2>&1 & prefect_ui=$$!; \
	$(BIN)/mlflow ui --backend-store-uri "$$store" --host 127.0.0.1 --port $(MLFLOW_UI_PORT) \
		> "$(CURDIR)/.cache/mlflow-ui.log" 2>&1 & mlflow_ui=$$!; \
	trap 'kill $$prefect_ui $$mlflow_ui 2>/dev/null' INT TERM EXIT; \
	echo "Prefect UI: http://127.0.0.1:$(PREFECT_UI_PORT)  (PREFECT_HOME=$$PREFECT_HOME, log $$PREFECT_HOME/ui.log)"; \
	echo "MLflow UI:  http://127.0.0.1:$(MLFLOW_UI_PORT)  (store $$store, log .cache/mlflow-ui.log)"; \
	echo "Flows started meanwhile can use this API: export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_UI_PORT)/api"; \
	echo "Ctrl+C stops both."; \
	wait

benchmarks: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf lake mlflow.db mlartifacts .prefect .salesrisk config/endpoints.yaml runs lightning_logs catboost_info
