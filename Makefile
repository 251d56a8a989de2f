# Fresh machine: `make train` (set up, then train) and `make test` (set up, then lint and test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test test-fast lint clean

setup: $(STAMP)

# torch==2.13.0 goes in first, and the project's torch range then installs nothing
# more (a bare `torch` pulls CUDA). Where pip has no CPU wheel at hand (PyPI's Linux
# torch is the CUDA build), TORCH_INDEX=https://download.pytorch.org/whl/cpu takes
# PyTorch's CPU build.
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev,pettingzoo]"
	touch $(STAMP)

train: setup
	$(BIN)/mappo train

# Lint, format and types: what `make test` runs first, and the pre-commit hooks run too.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2

# The suite without the tests marked slow (training until a return rises, long env runs).
test-fast: lint
	$(BIN)/python -m pytest -n 2 -m "not slow"

clean:
	rm -rf $(VENV)
