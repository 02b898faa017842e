# crmlake — every target sets itself up first; see README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONF   ?= conf/local.yaml
# Sample size for `make run` (about 2,000 customers x 60 days).
CUSTOMERS ?= 2000
DAYS      ?= 60
SEED      ?= 7
# The sample's planted identity truth (paths.landing of conf/base.yaml): organize measures persons
# against it when it is there (a sample generated before it was planted has none).
TRUTH     ?= data/landing/_truth/identity.csv

.PHONY: setup airflow-venv browser run test test-unit bench package cluster-up cluster-down mlflow-server clean help

help:
	@echo "make run    - set up, generate sample data, run acquire/organize/analyze/decide"
	@echo "make test   - set up and run the test suite"
	@echo "make airflow-venv - Airflow and its Spark provider in $(AIRFLOW_VENV), apart from the project's venv"
	@echo "make bench  - print figures against peers measured in the same run (ARGS=\"--only lake ...\" passes arguments)"
	@echo "make package     - dist/: a wheel, and crmlake.zip for spark-submit --py-files"
	@echo "make cluster-up  - start a standalone Spark master and worker on 127.0.0.1 (cluster-down stops them)"
	@echo "make mlflow-server - MLflow tracking server on 127.0.0.1:$(MLFLOW_PORT) over mlflow/mlflow.db"
	@echo "make clean  - remove generated data, MLflow store and the virtualenv"

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Airflow has a virtualenv of its own: it caps FastAPI below the version MLflow brings here. The
# DAGs in deploy/airflow/ load in it and tests/integration/test_cluster.py runs crmlake_daily with it.
AIRFLOW_VENV  := .venv-airflow
AIRFLOW_LOCK  := deploy/airflow/requirements.lock
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): $(AIRFLOW_LOCK)
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r $(AIRFLOW_LOCK)
	$(AIRFLOW_VENV)/bin/python -m pip check
	touch $(AIRFLOW_STAMP)

run: setup
	$(BIN)/crmlake generate --conf $(CONF) --customers $(CUSTOMERS) --days $(DAYS) --seed $(SEED) --skip-if-present
	$(BIN)/crmlake run --conf $(CONF) --stage all $$(test -f $(TRUTH) && echo --set organize.identity.truth_file=$(TRUTH))

# Debian's Chromium drives the audience catalog's browser test (headless).
BROWSER_BIN := /usr/bin/chromium
browser: $(BROWSER_BIN)

$(BROWSER_BIN):
	command -v apt-get >/dev/null || { echo "chromium missing and no apt-get: install Debian's chromium"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# Two workers: the cluster test and the shared generated pipeline run side by side.
TEST_WORKERS ?= 2
# Its three installs (two virtualenvs, Debian's Chromium) wait on the network mostly: side by side.
test:
	$(MAKE) --no-print-directory -j3 setup browser airflow-venv
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --durations=25

test-unit: setup airflow-venv
	$(BIN)/python -m pytest tests/unit

# Arguments pass through: make bench ARGS="--only lake --rows 200000" (python -m benchmarks --help lists them).
# The harness is the top-level benchmarks/ folder, outside the runtime package: run from this folder.
ARGS ?=
bench: setup
	$(BIN)/python -m benchmarks --conf $(CONF) $(ARGS)

package: setup
	rm -rf dist
	$(BIN)/python -m pip wheel -q --disable-pip-version-check --no-deps -w dist .
	$(BIN)/python -m crmlake.cluster zip dist/crmlake.zip
	@ls -l dist

cluster-up: setup
	$(BIN)/python -m crmlake.cluster up --state data/cluster

cluster-down: setup
	$(BIN)/python -m crmlake.cluster down --state data/cluster

MLFLOW_PORT ?= 5000
# A tracking server on loopback over the same SQLite store; point jobs at it with
# --set mlflow.tracking_uri=http://127.0.0.1:$(MLFLOW_PORT) (or CRMLAKE__MLFLOW__TRACKING_URI).
mlflow-server: setup
	mkdir -p mlflow/artifacts
	$(BIN)/mlflow server --backend-store-uri sqlite:///mlflow/mlflow.db --artifacts-destination mlflow/artifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

clean:
	rm -rf data dist mlflow/mlflow.db mlflow/artifacts spark-warehouse metastore_db derby.log $(VENV) $(AIRFLOW_VENV)
