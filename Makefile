# Two entry points (see README Quickstart):
#   make demo   set up .venv, then run the whole pipeline offline on CPU
#   make test   set up .venv, then run the test suite
# On a CPU-only machine without a local torch wheel, use the PyTorch CPU index:
#   make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
EXTRAS ?= dev,quantize

BIN := $(VENV)/bin
STAMP := $(VENV)/.ray-bench-installed
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple,)

.PHONY: setup demo test clean

setup: $(STAMP)

# torch is installed first and pinned: an unpinned torch pulls GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_INDEX_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" "torch==$(TORCH_VERSION)" $(TORCH_INDEX_ARGS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ray-bench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
