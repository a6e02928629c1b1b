# Two commands do all the set-up on a fresh machine (Python >= 3.11 and pip):
#   make demo   # .venv + install + the full pipeline on the built-in mock survey
#   make test   # .venv + install + the test suite (what CI runs)
#   make test-fast  # unit tests only (no Snakefile run, SLURM or browser): under 3 minutes
# constraints.txt is the lock file: every dependency pinned, torch==2.13.0 (CPU wheel).

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install lint dryrun config-doc clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,slurm]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests -m "not e2e and not slurm and not browser"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

dryrun: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake -n --cores $(CORES)

config-doc: $(STAMP)
	$(BIN)/python -m skysift.configdoc --out docs/config.md

clean:
	rm -rf results logs data/mock .snakemake
