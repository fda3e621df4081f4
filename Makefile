# ratelab: two commands on a fresh machine with Python 3.11+.
#   make demo   set up .venv (first use) and run the main job on the built-in local server
#   make test   set up .venv (first use), lint (ruff) and run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint format bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("ratelab needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks,redis,uvloop,httpx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ratelab demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# the quick loop: everything but the notebooks and the real browser
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not notebooks and not browser"

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --smoke
