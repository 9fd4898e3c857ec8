# Every target sets up .venv itself; repeating a target is safe.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app dev

# The browser tests (tests/test_browser.py) drive Debian's chromium; say whether they run.
test: $(STAMP)
	@chromium=$$(command -v /usr/bin/chromium || command -v chromium || true); \
	if [ -n "$$chromium" ]; then echo "browser tests: chromium found at $$chromium"; \
	elif [ "$${REQUIRE_BROWSER:-}" = 1 ]; then \
	  echo "browser tests: WILL FAIL (REQUIRE_BROWSER=1, chromium not installed; apt-get install chromium)"; \
	else echo "browser tests: SKIPPED (chromium not installed; apt-get install chromium)"; fi
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tasks tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data/*.db
