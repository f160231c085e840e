# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with only Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch: installed first so that the torch range in pyproject.toml pulls no CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-spark bench bench-batch docs notebooks clean

$(BIN)/tsformers: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/tsformers

demo: install
	$(BIN)/tsformers demo --out demo_forecast.csv

# The tests also cover MLflow tracking (the mlflow extra), plots (the plot extra), ONNX export (the onnx
# extra), the documentation site and the notebooks (the docs extra; the browser test needs Debian's chromium,
# which .ci/run installs); the Spark ones need pyspark and run in test-spark.
$(VENV)/.test-deps: $(BIN)/tsformers
	$(BIN)/pip install --quiet -e ".[dev,mlflow,plot,onnx,docs]"
	touch $@

# On a fresh clone, tests that need what a clone does not bring (Chromium for the site test, the benchmark files
# of ../shared/datasets, the shared contract in ../shared/contract) are skipped with their reason printed (-rs).
# .ci/run exports TSFORMERS_NO_SKIPS=1: there every skip fails, and the contract must be present.
TSFORMERS_NO_SKIPS ?= 0
CONTRACT ?= ../shared/contract
# Extra pytest arguments for the contract run (.ci/run deselects the checks that are wrong for an estimator there).
CONTRACT_ARGS ?=

test: $(VENV)/.test-deps
	TSFORMERS_NO_SKIPS=$(TSFORMERS_NO_SKIPS) $(BIN)/python -m pytest -q -rs -m "not spark" tests
	@if [ -d "$(CONTRACT)" ]; then \
		$(BIN)/python -m pytest -q -p no:cacheprovider $(CONTRACT_ARGS) "$(CONTRACT)"; \
	elif [ "$(TSFORMERS_NO_SKIPS)" = 1 ]; then \
		echo "error: the shared estimator contract is not at $(CONTRACT) (TSFORMERS_NO_SKIPS=1)"; exit 1; \
	else \
		echo "SKIPPED: the shared estimator contract ($(CONTRACT) is not beside this checkout)"; \
	fi

test-spark: $(VENV)/.test-deps
	$(BIN)/pip install --quiet -e ".[spark]"
	TSFORMERS_NO_SKIPS=$(TSFORMERS_NO_SKIPS) $(BIN)/python -m pytest -q -rs -m spark tests

bench: install
	$(BIN)/python benchmarks/long_horizon.py --dataset ETTh1 --horizons 96

bench-batch: install
	$(BIN)/python benchmarks/batch.py --threads 1

# The site, into site/ (tests/test_docs.py builds it into a temporary folder and opens it in Chromium).
docs: install
	$(BIN)/pip install --quiet -e ".[docs]"
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Execute the notebooks and write their outputs in place, to commit them (tests/test_notebooks.py only checks).
notebooks: install
	$(BIN)/pip install --quiet -e ".[docs,mlflow,plot]"
	OMP_NUM_THREADS=1 $(BIN)/python notebooks/execute.py

clean:
	rm -rf $(VENV) site demo_forecast.csv
