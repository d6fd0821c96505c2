# Two commands do all set-up on a fresh machine:  make explore  |  make test
PYTHON ?= python3
VENV   ?= .venv
# CPU build of PyTorch; installed before the package so nothing pulls a CUDA build.
TORCH  ?= torch==2.13.0
# Tools the energy cross-checks compare against (tests/test_energy_crosscheck.py, the Norse adapter
# test); --no-deps so they cannot pull a CUDA torch; loguru, nir and nirtorch are what they import
CROSSCHECK ?= spikingjelly==2.0.0 neurobench==2.3.0 norse==1.1.0 loguru==0.7.3 nir==1.0.8 nirtorch==2.6
BIN    := $(VENV)/bin
# OpenMP threads that spin between ops stall badly on shared or CPU-limited machines
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: explore test test-fast notebooks browser docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(CROSSCHECK)
	touch $@

## install and launch the explorer on the built-in digits-dvs data (http://localhost:5006/explorer)
explore: $(VENV)/.installed
	$(BIN)/hstlab data build digits-dvs
	HSTLAB_EXPLORER_RUNS=runs $(BIN)/panel serve apps/explorer.py --address 127.0.0.1 --port 5006 --allow-websocket-origin=localhost:5006 --allow-websocket-origin=127.0.0.1:5006

## install and run every test: unit tests, docstring examples, notebooks (smoke mode) and the browser tests
test: $(VENV)/.installed browser
	HSTLAB_SMOKE=1 $(BIN)/pytest --nbmake --doctest-modules hstlab tests notebooks -q -n 2 --dist loadgroup

## quick loop while developing: unit tests without the slow ones
test-fast: $(VENV)/.installed
	HSTLAB_SMOKE=1 $(BIN)/pytest tests -q -m "not slow and not browser"

## execute every notebook (full mode; SMOKE=1 for smoke mode) into build/notebooks/, signed so they open with plots
notebooks: $(VENV)/.installed
	$(BIN)/python tools/run_notebooks.py --out build/notebooks $(if $(SMOKE),--smoke)

## the documentation site (Sphinx + MyST: docs/*.md and API pages from the docstrings) in docs/_build/html
docs: $(VENV)/.installed
	HSTLAB_SMOKE=1 $(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

## Debian's chromium for the browser tests (playwright cannot download browsers offline)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not found: install it (e.g. apt-get install chromium) to run the browser tests"; }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build
