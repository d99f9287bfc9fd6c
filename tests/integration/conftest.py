"""Fixtures for integration tests: real llama.cpp binaries and generated models."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

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


# Files like the ones people run (DESIGN.md, testing): quantized, GQA, two architectures.
# Qwen2.5-3B's shapes (width 2048, FFN 11008, 16 heads, 2 KV heads), 2 of its 36 layers, Q8_0:
# the file that crashed llama-server with SIGILL on a machine whose build was not its own.
Q3B_Q8 = TinySpec(name="mesh-q3b-Q8_0", arch="qwen2", width=2048, heads=16, kv_heads=2, ff=11008, layers=2,
                  dtype="q8_0")
GQA_Q4_0 = TinySpec(name="mesh-gqa-Q4_0", width=512, heads=8, kv_heads=2, ff=1536, layers=4, dtype="q4_0")
QWEN2_Q4KM = TinySpec(name="mesh-qwen2-Q4_K_M", arch="qwen2", width=512, heads=8, kv_heads=2, ff=1536, layers=4,
                      dtype="q4_k_m")
# The split fixture: K-quants made by llama-quantize, GQA, 4 layers, 21 MB.
GQA_Q4KM = TinySpec(name="mesh-gqa-Q4_K_M", width=1024, heads=16, kv_heads=4, ff=2816, layers=4, dtype="q4_k_m")
REAL_FILES = (Q3B_Q8, GQA_Q4_0, QWEN2_Q4KM, GQA_Q4KM)


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory, llama_bin: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("real-models")
    return {spec.name: generate(spec, folder) for spec in REAL_FILES}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the console test needs Chromium and ChromeDriver: `make test` installs them as root "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield drv
    drv.quit()


# The directory's PostgreSQL server (session) and fresh databases (tests/integration/directory_postgres.py).
from directory_postgres import directory_db, postgres_server, postgres_url  # noqa: E402, F401


# Network namespaces joined by a veth pair: two hosts with their own addresses.
SUBNET = "10.201.{}.{}"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str, str]]:
    tag = str(os.getpid() % 10000)
    a, b = f"mla{tag}", f"mlb{tag}"
    try:
        sh("ip", "netns", "add", a)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        reason = getattr(exc, "stderr", "") or str(exc)
        pytest.fail(f"these tests need network namespaces (`ip netns add`, as root, from iproute2) to give "
                    f"two nodes their own addresses, and this machine refused: {reason.strip()}")
    net = int(tag) % 250
    ip_a, ip_b = SUBNET.format(net, 1), SUBNET.format(net, 2)
    try:
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        sh("ip", "link", "set", f"va{tag}", "netns", a)
        sh("ip", "link", "set", f"vb{tag}", "netns", b)
        for ns, dev, ip in ((a, f"va{tag}", ip_a), (b, f"vb{tag}", ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b, ip_a, ip_b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
