# Mesh LLM. `make run` and `make test` do all the set-up a fresh machine needs.
.PHONY: setup run test test-unit test-integration test-docker images proto bench gpu-check clean

MODEL ?= mesh-tiny-F16
ARGS ?=
PYTEST_ARGS ?=

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/mesh-llm --model $(MODEL) $(ARGS)

# The Docker tests (tests/docker) run where a Docker engine answers; the images are built first.
test: setup
	@scripts/test-deps.sh
	@if docker info >/dev/null 2>&1; then scripts/images.sh; else echo "[test] no Docker engine here: tests/docker will say so"; fi
	.venv/bin/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	.venv/bin/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	.venv/bin/python -m pytest tests/integration $(PYTEST_ARGS)

test-docker: images
	.venv/bin/python -m pytest tests/docker $(PYTEST_ARGS)

images: setup
	@scripts/images.sh

proto: setup
	.venv/bin/python proto/generate.py

clean:
	rm -rf .venv .pytest_cache

bench: setup
	@scripts/bench-deps.sh
	.venv/bin/python bench/run.py $(if $(QUICK),--quick,)

# On a machine with an NVIDIA GPU and nvcc: CUDA build, solo and split on the GPU, tokens/s.
gpu-check: setup
	scripts/gpu-check.sh $(ARGS)
