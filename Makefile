# Every target sets up what it needs: a fresh machine with Python 3.11+ and make is enough
# (plus, for the SAM checks, the CPython 3.13 that pyenv provides on these machines).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The SAM CLI lives in its own venv so its pins never fight the project's.
SAM_VERSION := 1.170.0
SAM_VENV := .venv-sam
# A stand-in for the Lambda python3.13 runtime: boto3 and nothing else.
RUNTIME_VENV := .venv-runtime
BOTO3_VERSION := 1.44.8
PYENV_DIR := $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
PY313 := $(or $(lastword $(wildcard $(PYENV_DIR)/versions/3.13*/bin/python3.13)),$(shell command -v python3.13))
SAM := SAM_CLI_TELEMETRY=0 PATH="$(dir $(PY313)):$$PATH" $(SAM_VENV)/bin/sam

.PHONY: test lint typecheck cfn-lint sam stackset unit artifact demo bench mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(VENV)/.mutate-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_VERSION)
	touch $@

$(RUNTIME_VENV)/.installed:
	@test -x "$(PY313)" || { echo "python3.13 not found (sam build and the artifact test need it; pyenv install 3.13)"; exit 1; }
	$(PY313) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet boto3==$(BOTO3_VERSION)
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests bench stackset mutate
	$(BIN)/ruff format --check src tests bench stackset mutate

typecheck: $(STAMP)
	$(BIN)/mypy --strict -p jets_deploy_iam -p jets_deploy_iam_cli
	$(BIN)/mypy --strict stackset/generate.py stackset/upload.py mutate/run.py

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml examples/*.yaml stackset/artifact-bucket.yaml

sam: $(SAM_VENV)/.installed $(RUNTIME_VENV)/.installed
	$(SAM) validate --lint
	$(SAM) build

# The StackSet template and code zip (stackset/template.json, stackset/dist/<sha256>.zip), from
# template.yaml and this `sam build`: translated offline by the SAM CLI's own samtranslator.
stackset: sam
	$(SAM_VENV)/bin/python stackset/generate.py

# Everything but the tests of the `sam build` output and the StackSet build (marker `sam`):
# works on a fresh checkout, with .venv alone.
unit: $(STAMP)
	$(BIN)/pytest -m "not sam"

# The tests of the `sam build` output and the StackSet build, after building both.
artifact: $(STAMP) stackset
	$(BIN)/pytest -m sam

# The whole suite in one run (the least-privilege test reads what every other test recorded).
test: lint typecheck cfn-lint sam stackset
	$(BIN)/pytest

demo: $(STAMP)
	@$(BIN)/jets-deploy-iam demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Mutation testing (mutmut), module by module against the tests that reach each; prints the table
# of mutants, kills and scores (equivalent mutants: mutate/equivalent.toml). Not part of `make
# test`. MODULES="plan.py iam/applier.py" mutates only those; scratch copies in build/mutate/.
mutate: $(VENV)/.mutate-installed
	$(BIN)/python mutate/run.py $(MODULES)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(RUNTIME_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache \
		stackset/template.json stackset/dist build/mutate
