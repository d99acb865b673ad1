# `make demo` and `make test` each build the virtual environment they need in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test fuzz bench bench-quant dosma-env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# The oracles. fastmri's declared dependencies pull a CUDA torch and torchvision of several GB,
# so it is installed without them, beside the CPU build of torch and what its modules import
# (listed in the test extra); torchvision (the ResNet and DenseNet oracles) likewise, without
# its pinned torch; torchkbnufft (a NUFFT peer) likewise.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps fastmri==0.3.0
	$(BIN)/python -m pip install --quiet --no-deps torchvision==0.28.0
	$(BIN)/python -m pip install --quiet --no-deps torchkbnufft==1.5.2
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m mskjax demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The property-based tests of tests/fuzz with many examples each (the tests run 15).
fuzz: $(VENV)/.installed-test
	MSKJAX_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest tests/fuzz -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/operator_speed.py
	$(BIN)/python benchmarks/recon_speed.py
	$(BIN)/python benchmarks/nufft_speed.py

# DOSMA 0.1.2, the reference of benchmarks/quant_t2.py, needs numpy<2 and pandas<2.3: it gets an
# environment of its own, run by the benchmark as a subprocess.
DOSMA_VENV ?= benchmarks/.venv-dosma

$(DOSMA_VENV)/.installed:
	$(PYTHON) -m venv $(DOSMA_VENV)
	$(DOSMA_VENV)/bin/python -m pip install --quiet "dosma==0.1.2" "numpy<2" "pandas<2.3"
	touch $@

dosma-env: $(DOSMA_VENV)/.installed

bench-quant: $(VENV)/.installed-test $(DOSMA_VENV)/.installed
	$(BIN)/python benchmarks/quant_t2.py --dosma-python $(DOSMA_VENV)/bin/python

clean:
	rm -rf $(VENV) mskjax-demo .pytest_cache
