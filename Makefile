# ratelab: two commands on a fresh machine with Python 3.11+.
#   make demo   set up .venv (first use) and run the main job on the built-in local server
#   make test   set up .venv (first use), lint (ruff) and run the tests
#   make test-floor   the fast tests on the oldest dependencies pyproject.toml allows (.venv-floor)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-floor lint format bench bench-smoke clean

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

# The dependency floor: a separate venv with every runtime dependency pinned to the lowest
# release pyproject.toml allows (constraints/floor.txt says why each is the floor), the test
# tools and the redis/uvloop extras at their newest; then the fast tests. Rebuilt from scratch
# when pyproject.toml or the constraints change. Python 3.11 only: the oldest Python ratelab
# supports, and the only one with wheels for the whole floor (pandas 2.1.0: no cp312).
FLOOR       := .venv-floor
FLOOR_STAMP := $(FLOOR)/.installed

$(FLOOR_STAMP): pyproject.toml constraints/floor.txt
	$(PYTHON) -c 'import sys; sys.exit("test-floor needs Python 3.11 (the floor has no wheels for newer), found " + sys.version.split()[0] + "; try PYTHON=python3.11") if sys.version_info[:2] != (3, 11) else None'
	rm -rf $(FLOOR)
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python -m pip install --quiet --only-binary=numpy,pandas,pyarrow,matplotlib \
		-c constraints/floor.txt -e '.[dev,redis,uvloop,httpx]'
	touch $(FLOOR_STAMP)

# Each runtime dependency installed at exactly its pyproject.toml floor (so the constraints
# file and pyproject.toml cannot drift apart), printed for the log.
define FLOOR_CHECK
import importlib.metadata as md, sys, tomllib
from packaging.requirements import Requirement
from packaging.version import Version
bad = []
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    req = Requirement(dep)
    floor = max(Version(s.version) for s in req.specifier if s.operator == ">=")
    have = Version(md.version(req.name))
    print(f"floor: {req.name}=={have}")
    if have != floor:
        bad.append(f"{req.name} {have} installed, pyproject.toml says >={floor}")
if bad:
    sys.exit("not the floor (see constraints/floor.txt): " + "; ".join(bad))
endef
export FLOOR_CHECK

test-floor: $(FLOOR_STAMP)
	$(FLOOR)/bin/python -c "$$FLOOR_CHECK"
	$(FLOOR)/bin/python -m pytest -q -m "not notebooks and not browser"

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(FLOOR) .pytest_cache build *.egg-info

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --smoke
