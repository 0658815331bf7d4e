# One virtual environment per checkout; torch is installed first, pinned, so pip never pulls a CUDA build
# on a CPU machine (on a GPU machine set TORCH to the CUDA wheel you want).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install system-deps demo up run test test-fast reliability reliability-full lint format openapi bench bench-gpu gpu-wheels toy-model clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: system-deps $(VENV)/.installed

# redis-server (also run as a Sentinel and as cluster nodes by the tests) and redis-cli (`--cluster create`)
# for the service and its tests; docker-compose (config validation only: no engine needed);
# chromium and its driver for the playground's browser test.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "please install:$$missing"; fi; \
	fi

# The main job end to end through HTTP: a local stack (redis-server, API, GPU worker, webhook worker)
# runs a keyframe + reference steering job on the tiny model unless real weights are configured.
demo: install
	$(BIN)/vsteer demo --out out/demo
	@echo "play out/demo/video.mp4"

# The same job in-process, no servers.
run: install
	$(BIN)/vsteer run examples/morph.json --out out/morph

# Retrain the toy SVD (about 23 minutes on 2 CPU cores) into models/toy, replacing the committed
# weights; run a job on it with `vsteer run JOB --model toy`.
toy-model: install
	$(BIN)/vsteer models train-toy models/toy --plot models/toy-loss.png

# The whole service on this machine, until Ctrl-C.
up: install
	$(BIN)/vsteer up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

# Fault, load and bad-input suites (short variants also run in `make test`); figures in docs/reliability.md.
reliability: install
	$(PY) -m pytest tests/reliability -q -s

reliability-full: install
	VSTEER_RELIABILITY_FULL=1 $(PY) -m pytest tests/reliability -q -s --timeout 1800

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: install
	$(PY) -m service.openapi > api_schemas/openapi.json

# Side-by-side benchmarks (docs/benchmarks.md); not tests: nothing here gates CI.
bench: install
	for b in engine_overhead service_overhead sweep_batching bidirectional segments video_edit api_load warm_workers scale_sim gpu_svd unet_call gpu_memory cpu_tail host_memory; do \
	  $(PY) -m bench.$$b || exit 1; done

bench-gpu: install
	$(PY) -m bench.gpu_svd --compile --no-reference

# Wheels for bench/gpu_device.sh on a CUDA machine without a package registry (Python 3.12, the
# versions installed here): what such a machine lacks of what the GPU benchmarks import (bench.gpu_svd;
# bench.sweep_batching also writes videos with av).
GPU_WHEEL_PYTHON ?= 3.12
gpu-wheels: install
	rm -rf bench/wheelhouse
	$(PY) -m pip download --quiet --only-binary=:all: --no-deps --dest bench/wheelhouse \
		--python-version $(GPU_WHEEL_PYTHON) --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		$$($(PY) -c "from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in ('diffusers', 'pydantic', 'pydantic-core', 'annotated-types', 'typing-inspection', 'av')))")

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
