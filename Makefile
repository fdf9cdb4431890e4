# The two commands README promises: `make test` and `make demo`. Everything else is their plumbing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo serve lint typecheck pytest clean check-infra

$(STAMP): pyproject.toml requirements.txt package.json package-lock.json Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
# The Functions Python worker's own indexing code, for tests/unit/test_worker_indexing.py. It
# declares Python >=3.13 but is pure Python and the code the test runs works on 3.11, so it is
# installed pinned and apart from '.[dev]' (whose resolve would refuse it). --no-deps: its one
# other dependency, azurefunctions-extensions-base, is imported only by apps that use deferred
# bindings or HTTP streaming, and this one uses neither; azure-functions is requirements.txt's.
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python azure-functions-runtime==1.3.0
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: lint typecheck pytest check-infra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# A worker per core (each starts its own Azurite); a file's tests stay on one worker, so a module's
# long simulation runs once.
pytest: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile

# The report's browser test drives Debian's chromium headless; installed once when it is missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
pytest: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

demo: $(STAMP)
	$(BIN)/python -m local.demo

# The Function App on http://127.0.0.1:7071 with Azurite and the ARM simulator, as `func start`.
serve: $(STAMP)
	$(BIN)/python -m local.serve

# checkov lives in its own virtualenv: its many pinned dependencies must not move the app's.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# Static checks of infra/*.bicep (the Bicep compiler is not needed); skips are inline and justified.
check-infra: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --quiet --compact --skip-download

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
