# Two commands do all the set-up on a fresh machine (Python >= 3.11 and pip):
#   make demo   # .venv + install + the full pipeline on the built-in mock survey
#   make test   # .venv + install + the test suite (what CI runs)
# constraints.txt is the lock file: every dependency pinned, torch==2.13.0 (CPU wheel).

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint dryrun clean

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

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

dryrun: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake -n --cores $(CORES)

clean:
	rm -rf results logs data/mock .snakemake
