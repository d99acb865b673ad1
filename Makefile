# `make demo` and `make test` each build the virtual environment they need in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# The oracles. fastmri's declared dependencies pull a CUDA torch and torchvision of several GB,
# so it is installed without them, beside the CPU build of torch and what its modules import
# (listed in the test extra).
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps fastmri==0.3.0
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m mskjax demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/operator_speed.py
	$(BIN)/python benchmarks/recon_speed.py

clean:
	rm -rf $(VENV) mskjax-demo .pytest_cache
