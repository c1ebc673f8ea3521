# The README commands. Each one alone sets everything up on a fresh clone.
#   make test       venv + pinned install, check library/notebook sync, lint the library, run pytest
#   make reproduce  venv + pinned install, fetch the benchmark's raw data, then `smat reproduce`: dvc repro stage by stage
#                   (default profile), with stage i of n and the time left
#   make smoke      venv + pinned install, then `smat smoke`: every stage on the smoke profile in _smoke/ (no download;
#                   the committed results are never touched)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.smat-installed
PYTEST_ARGS ?=

.PHONY: test reproduce smoke install sync-check lint data notebooks-test lab clean-venv gpu-check paper-dryrun

$(STAMP): requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP)

# The library in smat_nb/ must be exactly what nbdev-export makes from nbs/.
sync-check: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_hygiene.py -k sync

# pyflakes rules over the exported library ([tool.ruff] in pyproject.toml); fix findings in nbs/, then export.
lint: install
	$(BIN)/ruff check smat_nb

test: install sync-check lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest tests $(PYTEST_ARGS)

data: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat fetch-data

reproduce: install data
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat reproduce
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc status

# The whole pipeline on the smoke profile, in a scratch copy (_smoke/, git-ignored); no data download.
smoke: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat smoke

notebooks-test: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/nbdev-test --n-workers 2

# On a machine with a CUDA device (under 8 minutes): the ViT-S/16 step in bf16 (smat bench) and a torchrun
# paper-profile SMAT run on generated Meta-Dataset files; prints the README's Performance rows.
gpu-check: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat gpu-check --out _gpu_check

# The paper profile's dry run at the ViT-S/16 shape (CPU or GPU): every dvc.yaml stage on generated Meta-Dataset files
# (P>M>F h5, then TFRecords), OOD image folders and a DINO-named checkpoint, with only sizes changed (nbs/18_dryrun.ipynb).
paper-dryrun: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat paper-dryrun --full

lab: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/jupyter lab nbs

clean-venv:
	rm -rf $(VENV)
