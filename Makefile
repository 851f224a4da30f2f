# drcnet: the two entry points. Both create .venv (Python >= 3.11) and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# the shared reference data beside the checkout, unless DRCNET_DATA is set already
DRCNET_DATA ?= $(abspath ../shared/data)
export DRCNET_DATA

.PHONY: install demo test test-fast lint format bench clean

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

# the fast loop: every test not marked slow (no full-size exposure, night, DDP or dataset simulation)
test-fast: install
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

# what CI checks before the tests: lint rules, formatting, types (mypy's files) and the import contracts,
# all configured in pyproject.toml. Each check runs even when an earlier one fails; the target fails if any did.
# lint-imports analyses the drcnet found on the import path: this checkout's src/ first.
LINT_PATHS := src tests benchmarks scripts
lint: install
	@status=0; \
	echo "== ruff check"; $(BIN)/ruff check $(LINT_PATHS) || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check --output-format concise $(LINT_PATHS) || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1; \
	echo "== lint-imports"; PYTHONPATH="$(CURDIR)/src$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/lint-imports || status=1; \
	exit $$status

# rewrite the code in place: safe lint fixes (import order, pyupgrade, ...), then the formatter
format: install
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out
