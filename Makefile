# adherence-bot: `make run` starts the bot, `make test` runs every check. `make help` lists all.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install run demo test lint format typecheck pytest migrate migration migration-reset bench clean train-intent

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "adherence-bot needs Python 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,parquet]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the bot with its dev tools

run: $(STAMP) ## Set up and start the bot (needs TELEGRAM_BOT_TOKEN in .env)
	@$(BIN)/adherence-bot run

demo: $(STAMP) ## Chat with the bot in this terminal, offline, no token needed
	@$(BIN)/adherence-bot demo

migrate: $(STAMP) ## Apply database migrations
	@$(BIN)/adherence-bot db upgrade

migration: $(STAMP) ## Write a migration for model changes: make migration MSG="add x to y"
	$(BIN)/python -m bot.devtools.make_migration "$(or $(MSG),schema change)"

migration-reset: $(STAMP) ## Rewrite the initial migration from the models (before any release)
	$(BIN)/python -m bot.devtools.make_migration --initial

test: $(STAMP) lint typecheck pytest ## Set up and run ruff, mypy and the whole test suite

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Reformat the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy on bot/ and handlers/
	$(BIN)/mypy

# Three pytest-xdist workers on two cores: some tests wait on a real bot process or a real
# clock (see WAITING_FILES in tests/conftest.py), and a third worker keeps both cores busy
# meanwhile (measured: 140 s against 196 s with two). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 3

# Bytecode caching on even where the shell turns it off (PYTHONDONTWRITEBYTECODE=1): the tests
# start the bot as a process dozens of times, and each start would compile the whole checkout.
pytest: $(STAMP) ## Run the tests (PostgreSQL ones need TEST_POSTGRES_URL)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

train-intent: $(STAMP) ## Retrain the intent model (scikit-learn) and write content/safety/intent_model_en.json
	$(BIN)/python -m bot.devtools.train_intent

bench: $(STAMP) ## Run the benchmarks in bench/ (dispatch needs PostgreSQL; several minutes)
	$(BIN)/python bench/tap_bench.py
	$(BIN)/python bench/startup_bench.py
	$(BIN)/python bench/dispatch_bench.py
	$(BIN)/python bench/broadcast_bench.py
	$(BIN)/python bench/export_bench.py
	$(BIN)/python bench/pytest_workers_bench.py

clean: ## Remove .venv and caches (keeps data/)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
