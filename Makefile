# Every target sets up .venv itself; repeating a target is safe.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

# A new venv holds Python's bundled setuptools, old enough for pip-audit to flag: upgrade it.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q -e '.[dev,embedded]'
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

# pip-audit asks PyPI about every installed package. When it cannot (no network, or an
# index without PyPI's vulnerability data) the lint fails and says so; AUDIT=0 skips it.
AUDIT ?= 1
AUDIT_UNREACHABLE := could not be audited|ConnectionError|ProxyError|Max retries|timed out|Temporary failure in name resolution

lint: $(STAMP)
	$(BIN)/ruff check app tasks tests bench
	$(BIN)/mypy
	@if [ "$(AUDIT)" = 0 ]; then \
	  echo "pip-audit: SKIPPED (AUDIT=0): dependencies not checked for known vulnerabilities"; \
	else \
	  out=$$(mktemp); \
	  if $(BIN)/pip-audit --strict --skip-editable --progress-spinner off >"$$out" 2>&1; then \
	    cat "$$out"; rm -f "$$out"; \
	  elif grep -qE '$(AUDIT_UNREACHABLE)' "$$out"; then \
	    tail -n 1 "$$out"; rm -f "$$out"; \
	    echo "pip-audit: NOT RUN: PyPI's vulnerability data could not be read, so dependencies were NOT checked. Run it with network access, or 'make lint AUDIT=0' to lint without it."; \
	    exit 1; \
	  else \
	    cat "$$out"; rm -f "$$out"; \
	    echo "pip-audit: known vulnerabilities above: upgrade those packages (or --ignore-vuln ID, with the reason, here)"; \
	    exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) data/*.db
