# Two commands do everything: `make demo` runs the whole study on the embedded dataset,
# `make test` runs the test suite. Each bootstraps a virtual environment in .venv/ when
# none is active (VIRTUAL_ENV or a non-base conda environment), installs the package, then works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv

ACTIVE_ENV := $(or $(VIRTUAL_ENV),$(if $(filter-out base,$(CONDA_DEFAULT_ENV)),$(CONDA_PREFIX)))
ifneq ($(ACTIVE_ENV),)
  PY := python
  STAMP := $(ACTIVE_ENV)/.xai-helpers-installed
else
  PY := $(VENV)/bin/python
  STAMP := $(VENV)/.xai-helpers-installed
endif

.PHONY: install demo book test lab notebooks clean help
help:
	@echo "make demo   - run all notebooks on the embedded synthetic dataset (runs/demo/)"
	@echo "make book   - the static book of runs/demo (after make demo) in runs/demo/book/"
	@echo "make test   - run the test suite"
	@echo "make lab    - JupyterLab on notebooks/ with this environment as the kernel"
	@echo "make notebooks - rewrite notebooks/*.ipynb from their paired notebooks/*.py sources"

$(STAMP): pyproject.toml
	@if [ -z "$(ACTIVE_ENV)" ] && [ ! -x "$(VENV)/bin/python" ]; then \
	  echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (xai-helpers)" >/dev/null
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m xai_helpers.run --profile demo

book: $(STAMP)
	$(PY) -m xai_helpers.book runs/demo

test: $(STAMP)
	$(PY) -m ruff check
	$(PY) -m pytest --durations=20

lab: $(STAMP)
	$(PY) -m jupyter lab --notebook-dir=notebooks

notebooks: $(STAMP)
	$(PY) -c "from xai_helpers.config import write_parameter_cells; write_parameter_cells('notebooks')"
	$(PY) -c "from xai_helpers.distribution import write_install_cells; write_install_cells('notebooks')"
	$(PY) -m jupytext --update --to ipynb notebooks/[0-9][0-9]_*.py

clean:
	rm -rf runs cache data/synthetic data/synthetic_quick
