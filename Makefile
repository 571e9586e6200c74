# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## demo: start a local HTTP/2+TLS demo site and crawl it with the demo job (`crawler demo`; prints pages/s)
demo: $(STAMP)
	$(BIN)/crawler demo

## test: run the whole suite (what .ci/run runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

## lint: ruff, and the architecture contracts in pyproject.toml (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check crawler pipelines tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: side-by-side benchmarks against peers on loopback (writes benchmarks/RESULTS.md);
##        make bench BENCH_ARGS=--quick for a 2,000-page, one-repeat run
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache out
