# The README commands. Each one alone sets everything up on a fresh clone.
#   make test       venv + pinned install, check library/notebook sync, lint the library, run pytest
#   make reproduce  venv + pinned install, fetch the benchmark's raw data, then `smat reproduce`: dvc repro stage by stage
#                   (default profile), with stage i of n and the time left
#   make foundation the tiny profile's foundation ViT from scratch (the frozen pretrain stage; 27 min on 2 CPU cores)
#   make smoke      venv + pinned install, then `smat smoke`: every stage on the smoke profile in _smoke/ (no download;
#                   the committed results are never touched)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.smat-installed
PYTEST_ARGS ?=

.PHONY: test reproduce smoke install sync-check lint data notebooks-test lab clean-venv gpu-check paper-dryrun foundation

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

test: install sync-check lint docs-browser
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest tests $(PYTEST_ARGS)

data: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat fetch-data

reproduce: install data
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat reproduce
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc status

# The tiny profile's foundation ViT from scratch: the frozen `pretrain` stage's command, then its hashes into dvc.lock.
# Commit results/pretrain/ to keep it; `make reproduce` then reruns every stage after it (README, "The tiny profile's foundation ViT").
foundation: install data
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro benchmark
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/smat pretrain
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc commit --force pretrain

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

# The documentation site (docs/build.py): library notebooks executed (cached in _docs_build/; #| slow and #| gpu cells
# skipped, as nbdev-test does), paper notebooks shown with the committed figures, an API page per module -> _docs/.
.PHONY: docs docs-serve docs-check docs-browser
DOCS_PORT ?= 8000
docs: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python docs/build.py

# Read it at http://127.0.0.1:$(DOCS_PORT)/ (Ctrl-C stops the server).
docs-serve: docs
	@echo "docs: serving _docs/ at http://127.0.0.1:$(DOCS_PORT)/ (Ctrl-C to stop)"
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory _docs

# The built site in headless Chromium: links, API coverage, console errors, equations, figures, search;
# screenshots into _docs/screenshots/.
docs-check: docs docs-browser
	$(BIN)/python docs/check_site.py _docs

# Debian's chromium and chromedriver for the browser checks (tests/test_docs.py skips without them). Idempotent and
# quiet; where apt-get cannot install them (not root, no network) it says so and goes on.
docs-browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "docs-browser: installing Debian's chromium and chromium-driver (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null) || echo "docs-browser: apt-get could not install chromium; tests/test_docs.py will skip its browser check"; \
	else echo "docs-browser: no /usr/bin/chromium and no root apt-get here; install chromium + chromium-driver, or tests/test_docs.py skips its browser check"; fi
