# drcnet: the two entry points. Both create .venv (Python >= 3.11) and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# the shared reference data beside the checkout, unless DRCNET_DATA is set already
DRCNET_DATA ?= $(abspath ../shared/data)
export DRCNET_DATA

.PHONY: install demo test bench clean

$(BIN)/drcnet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned: 2.13.0 is the CPU build on disk here; a looser pin pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/drcnet

install: $(BIN)/drcnet

demo: install
	$(BIN)/python -m drcnet.demo --out out/demo

test: install
	$(BIN)/python -m pytest -q -n 2 tests

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out
