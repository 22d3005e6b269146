# Two commands for a fresh machine: `make demo` and `make test`. Both (re)build .venv when missing or stale.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ladon-installed

.PHONY: setup demo test test-slow lint bench clean

setup: $(STAMP)

# Stale = created before the last change to the dependency list or the package metadata.
$(STAMP): requirements.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# One resolve: torch/torchvision/compressai, the ROS 2 Kilted wheels, test tools and the project (editable).
	$(PY) -m pip install --quiet -r requirements.txt -e '.[reference,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ladon.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest test -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest test -m slow -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/ladon bench

clean:
	rm -rf demo_output .pytest_cache .ruff_cache .hypothesis
