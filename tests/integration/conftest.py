"""Fixtures for integration tests: real llama.cpp binaries and generated models."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcore.errors import ConfigError
from meshcore.llama_bin import llama_bin_dir
from mesh_node.tiny_model import TinySpec, generate

TINY = TinySpec()
EMBED = TinySpec(name="mesh-embed-F16", pooling="mean")
# Slow enough (a few ms a token) that a stream of thousands of tokens lasts seconds.
SMALL = TinySpec(name="mesh-small-F16", width=1024, layers=8, heads=8, ff=2816)


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    try:
        return llama_bin_dir()
    except ConfigError as exc:
        pytest.fail(f"integration tests need llama.cpp: {exc}")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, llama_bin: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {spec.name: generate(spec, folder) for spec in (TINY, EMBED, SMALL)}


# Weight tensors over 10 MiB (2304 x 2304 x 2 bytes = 10.6 MB), so every matrix of a
# worker's layers takes the zero-transfer path; 3 layers, 386 MB.
SPLIT = TinySpec(name="mesh-split-F16", width=2304, layers=3, heads=18, ff=6144)


@pytest.fixture(scope="session")
def split_model(tmp_path_factory: pytest.TempPathFactory, llama_bin: Path) -> Path:
    return generate(SPLIT, tmp_path_factory.mktemp("split-model"))
