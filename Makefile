# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check setup migrate demo migration bench-rest bench-chat bench-email bench-voice clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@mkdir -p var

migrate: setup
	$(BIN)/helpdesk migrate

demo: migrate
	$(BIN)/helpdesk demo

run: demo
	$(BIN)/helpdesk serve

test: setup
	$(BIN)/pytest

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

migration: setup
	$(BIN)/python scripts/regen_migration.py

bench-rest: setup
	$(BIN)/python bench/rest.py

bench-chat: setup
	$(BIN)/python bench/chat.py

bench-email: setup
	$(BIN)/python bench/email.py

bench-voice: setup
	$(BIN)/python bench/voice.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
