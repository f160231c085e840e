# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with only Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch: installed first so that the torch range in pyproject.toml pulls no CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test bench docs clean

$(BIN)/tsformers: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/tsformers

demo: install
	$(BIN)/tsformers demo --out demo_forecast.csv

test: install
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q -p no:cacheprovider ../shared/contract

bench: install
	$(BIN)/python benchmarks/long_horizon.py --dataset ETTh1 --horizons 96

docs: install
	$(BIN)/pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site demo_forecast.csv
