# Two commands a user needs:  `make repro` (run the pipeline) and `make test` (run the tests).
# Both create the virtual environment on first use: torch first and pinned (an unpinned torch pulls
# a multi-GB CUDA build), then this package with every other dependency pinned by constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# dvc.yaml runs `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install repro test profile-ci profile-full profile-default

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

repro: install
	dvc repro

test: install
	$(PY) -m pytest

profile-%: install
	$(PY) -m pipeline profile $*
