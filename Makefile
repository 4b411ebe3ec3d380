# Every target sets itself up: a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-quick lint serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rapport demo run

test: $(STAMP)
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/segments.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/rfm_lifecycle.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/scenarios.py

bench-quick: $(STAMP)
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python bench/ingest.py --quick
	$(BIN)/python bench/segments.py --quick
	$(BIN)/python bench/sweep.py --customers 20000
	$(BIN)/python bench/rfm_lifecycle.py --quick
	$(BIN)/python bench/send.py --quick
	$(BIN)/python bench/scenarios.py --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

serve: $(STAMP)
	$(BIN)/rapport serve

clean:
	rm -rf $(VENV) rapport.db rapport.db-wal rapport.db-shm rapport-demo.db rapport-demo.db-wal rapport-demo.db-shm .pytest_cache
