# Mesh LLM. `make run` and `make test` do all the set-up a fresh machine needs.
.PHONY: setup run test test-unit test-integration proto bench clean

MODEL ?= mesh-tiny-F16
ARGS ?=
PYTEST_ARGS ?=

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/mesh-llm --model $(MODEL) $(ARGS)

test: setup
	@scripts/test-deps.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	.venv/bin/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	.venv/bin/python -m pytest tests/integration $(PYTEST_ARGS)

proto: setup
	.venv/bin/python proto/generate.py

clean:
	rm -rf .venv .pytest_cache

bench: setup
	.venv/bin/python bench/run.py $(if $(QUICK),--quick,)
