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

test: $(VENV)/.test-deps
	TSFORMERS_NO_SKIPS=1 $(BIN)/python -m pytest -q -rs -m "not spark" tests
	$(BIN)/python -m pytest -q -p no:cacheprovider ../shared/contract

test-spark: $(VENV)/.test-deps
	$(BIN)/pip install --quiet -e ".[spark]"
	TSFORMERS_NO_SKIPS=1 $(BIN)/python -m pytest -q -rs -m spark tests

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
