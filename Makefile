# Every target sets up what it needs: a fresh clone runs `make train` or `make test` and nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BACKEND ?= cpu

.PHONY: venv train test lint clean

$(VENV)/.installed-$(BACKEND): pyproject.toml backends/$(BACKEND).txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r backends/$(BACKEND).txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed-$(BACKEND)

$(VENV)/.installed-test: $(VENV)/.installed-$(BACKEND) backends/test.txt
	$(PY) -m pip install --quiet -r backends/test.txt
	touch $@

## The main job: train the default model (an MLP on MNIST) on the best device available.
train: venv
	$(PY) scripts/train.py $(ARGS)

## The whole test suite, on every backend in the matrix (numpy, array_api_strict, cupy if visible).
test: $(VENV)/.installed-test
	$(PY) -m ruff check xpnet scripts tests
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check xpnet scripts tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
