# sentiment-worker — make targets create the venv, install everything, and run the main jobs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo ui test test-fast lint format schemas starter bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel (a looser requirement pulls a multi-GB CUDA build)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,train,http,ui,datasets,otel,schema-registry]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the worker with its pinned stack

demo: $(STAMP)  ## embedded broker + offline starter model + sample stream → enriched output
	$(BIN)/sentiment-worker demo

ui: $(STAMP)  ## the live web app over the demo stream (embedded broker, worker, sample stream), in a browser
	$(BIN)/sentiment-worker ui --demo

# Test processes (pytest-xdist): the integration tests spend most of their time waiting on the broker, worker
# processes and timers, so a few run side by side even on 2 cores. Each has its own embedded broker; a file's tests
# stay together (--dist loadfile: their module fixtures are built once). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4

test: $(STAMP)  ## all tests: unit, integration (real broker, real ONNX exports) and slow ones; lists the 20 slowest
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest -q -m "unit" --durations=20

lint: $(STAMP)
	$(BIN)/ruff check worker devtools tests benchmarks
	$(BIN)/ruff format --check worker devtools tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix worker devtools tests benchmarks
	$(BIN)/ruff format worker devtools tests benchmarks

schemas: $(STAMP)  ## regenerate schemas/*.json from worker/records.py
	$(BIN)/sentiment-worker schemas

starter: $(STAMP)  ## build (or reuse) the offline starter model; prints its directory
	$(BIN)/sentiment-worker model build-starter

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
