# Every target sets itself up: a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-quick lint serve clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,recommend]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rapport demo run

# The browser tests drive Debian's chromium (Playwright cannot download a browser here).
# Installed quietly when missing and apt-get can (as root, or with sudo that asks nothing);
# otherwise the browser tests are skipped and the run says so loudly.
chromium:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else exit 0; fi; \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq >/dev/null 2>&1 && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"; }

test: $(STAMP) chromium
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/segments.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/rfm_lifecycle.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/scenarios.py
	$(BIN)/python bench/analytics.py
	$(BIN)/python bench/loyalty_recs.py

bench-quick: $(STAMP)
	$(BIN)/python tests/postgres_server.py --ensure
	$(BIN)/python bench/ingest.py --quick
	$(BIN)/python bench/segments.py --quick
	$(BIN)/python bench/sweep.py --customers 20000
	$(BIN)/python bench/rfm_lifecycle.py --quick
	$(BIN)/python bench/send.py --quick
	$(BIN)/python bench/scenarios.py --quick
	$(BIN)/python bench/analytics.py --quick
	$(BIN)/python bench/loyalty_recs.py --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

serve: $(STAMP)
	$(BIN)/rapport serve

clean:
	rm -rf $(VENV) rapport.db rapport.db-wal rapport.db-shm rapport-demo.db rapport-demo.db-wal rapport-demo.db-shm .pytest_cache
