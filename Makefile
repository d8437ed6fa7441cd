# Two commands do all set-up on a fresh machine:
#   make run    # creates .venv, installs nsl-ser[train], runs the pipeline
#   make test   # creates .venv, installs nsl-ser[train,dev], runs the test suite
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= ../shared/data
WORK_DIR ?= work
RUN_FLAGS ?=

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[train,dev]"
	touch $@

.PHONY: install run test
install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/nsl-ser run --data_dir=$(DATA_DIR) --work_dir=$(WORK_DIR) $(RUN_FLAGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests
