# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the runtime requirements only; the tests, lint, format and
# screenshots also need the tools of requirements-dev.txt (which includes requirements.txt).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
NODE_STAMP := node_modules/.installed

.PHONY: run test test-machine test-fast lint format screenshots clean

# Prerequisites are made one at a time, in the order listed: `make test` sets up the
# machine before it makes .venv and node_modules.
.NOTPARALLEL:

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

# axe-core, injected into the page by the accessibility test.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(RUN_STAMP)
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# Debian's Chromium, Node.js and npm, Python's venv: installed when missing (as root with
# apt-get), otherwise one line says what to install. Silent when all is there.
test-machine:
	@PYTHON='$(PYTHON)' bash tools/setup-test-machine.sh

test: test-machine $(DEV_STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# Everything but the real servers, processes and browsers.
test-fast: $(DEV_STAMP)
	$(BIN)/pytest -m "not slow and not browser"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

screenshots: $(DEV_STAMP)
	$(BIN)/python tools/screenshots.py docs/screenshots

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis
