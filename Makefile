# The two commands a newcomer needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DEALWATCH_DATABASE__URL ?= sqlite+aiosqlite:///./var/dealwatch.db

.PHONY: install run test lint typecheck migrations-check pytest demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/dealwatch init
	$(BIN)/dealwatch serve --role all --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

migrations-check: $(STAMP)
	rm -rf var/check && mkdir -p var/check
	DEALWATCH_DATABASE__URL=sqlite+aiosqlite:///./var/check/check.db $(BIN)/alembic upgrade head
	DEALWATCH_DATABASE__URL=sqlite+aiosqlite:///./var/check/check.db $(BIN)/alembic check

# The suite runs on SQLite, then again on PostgreSQL when DEALWATCH_TEST_DATABASE_URL names one.
pytest: $(STAMP)
	env -u DEALWATCH_TEST_DATABASE_URL $(BIN)/pytest
	if [ -n "$${DEALWATCH_TEST_DATABASE_URL:-}" ]; then $(BIN)/pytest -m integration; fi

test: lint typecheck migrations-check pytest

demo: $(STAMP)
	$(BIN)/python -m service.demo

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
