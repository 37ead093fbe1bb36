PYTHON ?= python

.PHONY: help test test-full lint format bench

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test:  ## fast test suite (what CI runs): everything not marked slow
	$(PYTHON) -m pytest -m "not slow"

test-full:  ## every test, slow ones included
	$(PYTHON) -m pytest

lint:  ## ruff check + format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:  ## apply ruff fixes and formatting
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

bench:  ## throughput benchmarks (ratios against references measured in the same run)
	$(PYTHON) bench/data.py
	$(PYTHON) bench/train.py
	$(PYTHON) bench/eval.py
