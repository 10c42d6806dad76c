# Everything the project needs goes into .venv; each target sets it up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

# Refreshed whenever pyproject.toml changes; re-running is a no-op otherwise.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch; any other torch requirement pulls gigabytes of CUDA packages.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	# ray[tune] installs a `tune` script too: if it won, install our entry point again, last.
	grep -qs "tune_core.cli" $(VENV)/bin/tune || \
		$(PY) -m pip install --quiet --no-deps --force-reinstall -e .
	@grep -qs "tune_core.cli" $(VENV)/bin/tune || { echo "$(VENV)/bin/tune is not tune_core's;" \
		"use: $(PY) -m tune_core" >&2; exit 1; }
	touch $(STAMP)

run: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) doc_code/quickstart_torch.py

test: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m pytest -q -p no:cacheprovider --durations=25 tests

bench: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/bookkeeping_overhead.py
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/result_throughput.py
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/startup.py
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/scale.py
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/vs_inprocess.py
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) release_tests/multinode_storage.py

clean:
	rm -rf $(VENV) build *.egg-info
