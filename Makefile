# Every target sets up what it needs: a fresh clone runs `make train` or `make test` and nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BACKEND ?= cpu

.PHONY: venv train test lint clean lock image-check

# The tests install the CPU set plus backends/test.txt, which carries CuPy, NVRTC and the CUDA headers (no GPU
# libraries): where no GPU is visible CuPy still imports, so the CUDA fallback is tested for real, and the nvrtc
# tests compile every kernel. `make test TEST_BACKEND=cuda12` installs the whole CUDA 12 set (CuPy's [ctk]) first.
TEST_BACKEND ?= cpu

$(VENV)/.installed-%: pyproject.toml backends/%.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r backends/$*.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed-$(BACKEND)

$(VENV)/.installed-test: $(VENV)/.installed-$(TEST_BACKEND) backends/test.txt
	$(PY) -m pip install --quiet -r backends/test.txt
	touch $@

## The main job: train the default model (an MLP on MNIST) on the best device available.
train: venv
	$(PY) scripts/train.py $(ARGS)

## Training throughput of xpnet vs PyTorch eager (torch compared when installed: pip install torch==2.13.0).
.PHONY: bench
bench: venv
	$(PY) scripts/bench.py $(BENCH_ARGS)

## The whole test suite, on every backend in the matrix (numpy, array_api_strict, cupy if visible).
test: $(VENV)/.installed-test
	$(PY) -m ruff check xpnet scripts tests
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check xpnet scripts tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

## Re-pin backends/*.txt (with hashes) from pyproject.toml; see backends/README.md. LOCK_ARGS=--upgrade to bump.
LOCK_VENV := build/lock-venv
LOCK_ENV  := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
LOCK_CMD  := $(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "make lock needs Python 3.11")'
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools==7.6.2

lock: $(LOCK_VENV)/bin/pip-compile
	$(LOCK_CMD) -o backends/cpu.txt pyproject.toml
	$(LOCK_CMD) --extra cuda12 --constraint backends/cpu.txt -o backends/cuda12.txt pyproject.toml
	$(LOCK_CMD) --extra cuda13 --constraint backends/cpu.txt -o backends/cuda13.txt pyproject.toml
	$(LOCK_CMD) --extra mpi --constraint backends/cpu.txt -o backends/mpi.txt pyproject.toml
	$(LOCK_CMD) --extra test --constraint backends/cpu.txt --constraint backends/cuda12.txt \
		-o backends/test.txt pyproject.toml
	$(LOCK_CMD) --allow-unsafe -o backends/build.txt backends/build.in

## Build the Docker image with podman (CPU smoke training inside); slow, not part of `make test`.
image-check:
	scripts/check_image.sh $(IMAGE_ARGS)

## On a host with an NVIDIA GPU: the staged proof (doctor, the CUDA tests with CuPy required, the main job on
## CUDA, a Trainer no-sync run, a bench against PyTorch), each stage killed at its time budget (480 s in all);
## rewrites gpu-report/report.{json,md} after every stage. Uses $(GPU_PYTHON) as it is (GPU hosts are often
## offline: nothing is installed); without CUDA it stops at once with exit 2 and one line saying what is missing.
## `GPU_CHECK_ARGS=--plan` lists the stages; `GPU_CHECK_ARGS='--stage train'` runs one. See docs/gpu.md.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
.PHONY: gpu-check
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

## For an offline GPU host: gpu-bundle/ (git-ignored, <= 48 MiB) with the wheels it lacks, MNIST (from
## XPNET_DATA_DIR) and run.sh; there, `bash gpu-bundle/run.sh REPORT_DIR`. Needs PyPI here.
GPU_BUNDLE ?= gpu-bundle
.PHONY: gpu-bundle
gpu-bundle: venv
	$(PY) scripts/gpu_bundle.py --out $(GPU_BUNDLE)
