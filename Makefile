# Gatekey: one entry point. `make test` is what CI runs (.ci/run) and what the README gives.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Reinstalled whenever a requirements file changes.
STAMP  := $(VENV)/.installed

# Deploy tools, each in a venv of its own: their pins clash with the project's and each other's.
SAM_VENV     ?= .venv-sam
CHECKOV_VENV ?= .venv-checkov
SAM          := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
CHECKOV      := $(CHECKOV_VENV)/bin/checkov
# `sam build` runs the python3.13 of the Lambda runtime it targets: pyenv's if installed,
# else whatever python3.13 is on PATH.
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
                         $(shell command -v python3.13 2>/dev/null))
BUILD_DIR := .aws-sam/build
TEMPLATES := template.yaml $(wildcard examples/*/template.yaml)
# sam validate needs a region; nothing here calls AWS.
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv test lint typecheck cfn-lint validate checkov build package-check deploy \
	pytest run schedule lock clean bench interop

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt requirements/lock.txt layers/gatekey/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/dev.txt -c requirements/lock.txt
	# The `gatekey` CLI, from this checkout (its dependencies are pinned above).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--no-deps --no-build-isolation --editable .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt requirements/sam-lock.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/sam.txt -c requirements/sam-lock.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt requirements/checkov-lock.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/checkov.txt -c requirements/checkov-lock.txt
	touch $@

venv: $(STAMP) ## Create .venv and install the pinned dependencies

test: lint typecheck cfn-lint validate checkov package-check pytest ## Everything CI checks: lint, types, templates, the build, the tests

lint: $(STAMP) ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict) on the core, client, CLI, local stack, test support, tools and handlers
	$(BIN)/mypy layers/gatekey/gatekey client/gatekey_client local/gatekey_local cli/gatekey_cli tests/support \
		tools interop/run.py
	# Each handler is a module named `app`: one mypy run per function keeps them apart.
	for handler in functions/*/app.py examples/*/src/app.py; do $(BIN)/mypy "$$handler"; done

cfn-lint: $(STAMP) ## cfn-lint on the templates
	$(BIN)/cfn-lint $(TEMPLATES)

validate: $(SAM_VENV)/.installed ## sam validate --lint (the SAM transform, then cfn-lint) on the templates
	for template in $(TEMPLATES); do $(SAM) validate --lint --template-file "$$template"; done

checkov: $(CHECKOV_VENV)/.installed ## checkov on the templates: no finding unless skipped inline with a reason
	$(CHECKOV) --framework cloudformation --compact --quiet --skip-download \
		$(foreach template,$(TEMPLATES),--file $(template))

build: $(SAM_VENV)/.installed ## sam build: python3.13 on arm64, without Docker, into .aws-sam/build
	@test -n "$(PYTHON313)" || { echo "sam build needs python3.13 on PATH (e.g. pyenv install 3.13)"; exit 1; }
	PATH="$(dir $(PYTHON313)):$$PATH" $(SAM) build --template-file template.yaml --build-dir $(BUILD_DIR)

package-check: build ## Check the build: pinned versions, aarch64 binaries, the core imports under python3.13
	$(PYTHON313) tools/check_build.py $(BUILD_DIR)

deploy: build ## sam deploy --guided, with the defaults in samconfig.toml
	# The built template, with this directory's samconfig.toml (sam would look beside the
	# template it is given, in .aws-sam/build, which the next build wipes).
	$(SAM) deploy --guided --template-file $(BUILD_DIR)/template.yaml \
		--config-file "$(CURDIR)/samconfig.toml"

pytest: $(STAMP) ## pytest with coverage of layers/
	$(BIN)/pytest --cov --cov-report=term

run: $(STAMP) ## Run Gatekey locally on http://127.0.0.1:3000, or GATEKEY_PORT (GATEKEY_STATE=DIR keeps its state)
	PYTHONPATH=layers/gatekey:local:cli exec $(BIN)/python -m gatekey_local

# Node packages for `make interop`, exactly as package-lock.json pins them. Not part of `make
# test`: CI installs no node packages.
INTEROP_NODE := interop/node
$(INTEROP_NODE)/node_modules/.installed: $(INTEROP_NODE)/package.json $(INTEROP_NODE)/package-lock.json
	cd $(INTEROP_NODE) && npm ci --no-audit --no-fund
	touch $@

interop: $(STAMP) $(INTEROP_NODE)/node_modules/.installed ## openid-client and jose (Node) vs a local stack it starts: discovery, a grant, jwtVerify
	PYTHONPATH=layers/gatekey:local $(BIN)/python interop/run.py

FUNCTION ?= SigningKeysFunction
schedule: $(STAMP) ## Run a scheduled function now against `make run` (FUNCTION=...)
	PYTHONPATH=layers/gatekey:local $(BIN)/python -m gatekey_local schedule $(FUNCTION)

lock: ## Re-resolve requirements/{dev,sam,checkov}.txt into their *lock.txt in scratch venvs
	for pair in dev:lock sam:sam-lock checkov:checkov-lock; do \
	  source=$${pair%%:*}; target=$${pair##*:}; \
	  rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv; \
	  .lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/$$source.txt; \
	  { echo "# Generated by 'make lock' from requirements/$$source.txt: the full pinned tree, used as constraints."; \
	    .lock-venv/bin/python -m pip freeze --all --exclude-editable --exclude pip; } > requirements/$$target.txt; \
	done
	rm -rf .lock-venv

clean: ## Remove .venv and caches
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .mypy_cache .pytest_cache .ruff_cache .coverage .aws-sam

bench: $(STAMP) ## Benchmark the authorizer against baselines (prints ratios; writes bench/results/)
	PYTHONPATH=layers/gatekey:local $(BIN)/python bench/authorizer_bench.py
