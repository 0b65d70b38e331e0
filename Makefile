# Dynamics Connect: `make run` starts the app with the local Entra ID emulator; `make test`
# sets everything up and runs the whole suite. Both need nothing but Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run serve test lint format e2e bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_dev.py

# Production mode: gunicorn, DEBUG off, PostgreSQL (DATABASE_URL), Redis (CACHE_URL, optional).
serve: $(STAMP)
	$(BIN)/python scripts/serve.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/bandit -q -c pyproject.toml -r accounts connections lib bizible_site entra_emulator
	$(BIN)/python -m pytest

# Browser journeys in Debian's Chromium (`apt-get install chromium`); `make test` runs them too.
e2e: $(STAMP)
	$(BIN)/python -m pytest -m e2e tests/e2e

# Regenerates docs/screenshots/*.png (1280x800): starts the app and the emulator as `make run` does.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -c pyproject.toml -r accounts connections lib bizible_site entra_emulator

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# What one sign-in costs beside the framework's floors, pages at 1 to 10,000 accounts, Entra ID
# calls and RSS, against the local emulator; prints a Markdown table, writes bench/results.json.
bench: $(STAMP)
	$(BIN)/python bench/signin.py 50

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
