"""`mesh-llm download` and `--model CATALOG_NAME` against a local hub (fake_hub: it answers
like huggingface.co; HF_ENDPOINT points at it), through the real `huggingface_hub`
client: list, fetch by prefix or size, drafts, multi-part files, resume after a network
loss, sha256 check, 404/401 in one line, and a catalog name that is downloaded and then
served."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import TINY
from fake_hub import FakeHub
from meshnode import free_port, start_node
from meshnode import wait_until

CATALOG = """
[[model]]
name = "Mesh-Tiny-8B-Q4_K_M"
repo = "mesh-test/Mesh-Tiny-GGUF"
files = ["mesh-tiny-F16.gguf"]
size = {tiny_size}
draft = "Mesh-Draft-0.5B-Q4_K_M"

[[model]]
name = "Mesh-Parts-32B-Q4_K_M"
repo = "mesh-test/Mesh-Parts-GGUF"
files = ["mesh-parts-q4_k_m-00001-of-00002.gguf", "mesh-parts-q4_k_m-00002-of-00002.gguf"]
size = 26000000

[[model]]
name = "Mesh-Draft-0.5B-Q4_K_M"
repo = "mesh-test/Mesh-Draft-GGUF"
files = ["mesh-draft.gguf"]
size = 1000

[[model]]
name = "Mesh-Wanted-3B-Q8_0"
repo = "mesh-test/Mesh-Wanted-GGUF"
files = ["mesh-wanted-q8_0.gguf"]
size = {wanted_size}

[[model]]
name = "Mesh-Pinned-1B-Q4_K_M"
repo = "mesh-test/Mesh-Pinned-GGUF"
files = ["mesh-pinned.gguf"]
size = 1000
sha256 = ["{pinned_sha}"]

[[model]]
name = "Mesh-Gone-1B-Q4_K_M"
repo = "mesh-test/Mesh-Gone-GGUF"
files = ["mesh-gone.gguf"]
size = 1000
"""


@pytest.fixture
def hub(tmp_path: Path, models: dict[str, Path]) -> Iterator[tuple[FakeHub, dict[str, str]]]:
    tiny = models[TINY.name]
    hub = FakeHub()
    hub.add_file("mesh-test/Mesh-Tiny-GGUF", tiny)
    hub.add("mesh-test/Mesh-Parts-GGUF", "mesh-parts-q4_k_m-00001-of-00002.gguf", os.urandom(24_000_000))
    hub.add("mesh-test/Mesh-Parts-GGUF", "mesh-parts-q4_k_m-00002-of-00002.gguf", os.urandom(2_000_000))
    hub.add("mesh-test/Mesh-Draft-GGUF", "mesh-draft.gguf", b"GGUF" + os.urandom(996))
    catalog = tmp_path / "catalog.toml"
    hub.add("mesh-test/Mesh-Wanted-GGUF", "mesh-wanted-q8_0.gguf", models["mesh-small-F16"].read_bytes())
    pinned = b"GGUF" + os.urandom(996)
    hub.add("mesh-test/Mesh-Pinned-GGUF", "mesh-pinned.gguf", pinned)
    catalog.write_text(CATALOG.format(tiny_size=tiny.stat().st_size,
                                      wanted_size=models["mesh-small-F16"].stat().st_size,
                                      pinned_sha=hashlib.sha256(pinned).hexdigest()))
    env = {"HF_ENDPOINT": hub.start(), "MESH_LLM_CATALOG": str(catalog), "MESH_LLM_MODELS_DIR": str(tmp_path / "m"),
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5",
           "HF_TOKEN": ""}
    yield hub, env
    hub.stop()


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh_cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command says (progress bars aside), no traceback."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if line.startswith("mesh-llm: ")][-1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_list_fetch_by_prefix_or_size_with_draft_and_parts(hub: tuple[FakeHub, dict[str, str]]) -> None:
    fake, env = hub
    folder = Path(env["MESH_LLM_MODELS_DIR"])
    listing = cli(env, "download")
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("Mesh-Tiny-8B-Q4_K_M"))
    assert "Mesh-Draft-0.5B-Q4_K_M" in row and row.rstrip().endswith("-")  # not on disk yet
    got = cli(env, "download", "mesh-tiny", "--draft")
    assert got.returncode == 0, got.stderr[-2000:]
    assert (folder / "mesh-tiny-F16.gguf").read_bytes() == fake.files[("mesh-test/Mesh-Tiny-GGUF", "mesh-tiny-F16.gguf")]
    assert (folder / "mesh-draft.gguf").is_file()
    assert cli(env, "download", "32b").returncode == 0  # the size shorthand only one model has
    for name in ("mesh-parts-q4_k_m-00001-of-00002.gguf", "mesh-parts-q4_k_m-00002-of-00002.gguf"):
        assert sha((folder / name).read_bytes()) == sha(fake.files[("mesh-test/Mesh-Parts-GGUF", name)])
    listing = cli(env, "download").stdout
    assert next(line for line in listing.splitlines() if line.startswith("Mesh-Parts")).rstrip().endswith("yes")
    assert not list(folder.glob("*.incomplete")) and not list(folder.glob("*.part"))
    assert "say which" in error_line(cli(env, "download", "mesh"))  # ambiguous prefix
    assert "not in the catalog" in error_line(cli(env, "download", "nope-7b"))


def test_an_interrupted_download_resumes_and_never_sits_where_the_model_goes(hub: tuple[FakeHub, dict[str, str]]
                                                                            ) -> None:
    fake, env = hub
    folder = Path(env["MESH_LLM_MODELS_DIR"])
    fake.cut_after = 15_000_000  # the network goes away mid-file (huggingface_hub writes 10 MiB chunks)
    first = cli(env, "download", "Mesh-Parts-32B-Q4_K_M")
    assert "run it again" in error_line(first)
    assert not (folder / "mesh-parts-q4_k_m-00001-of-00002.gguf").exists()  # nothing half-written in place
    fake.down = False  # the network is back
    second = cli(env, "download", "Mesh-Parts-32B-Q4_K_M")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming mesh-parts-q4_k_m-00001-of-00002.gguf at" in second.stderr
    assert any(method == "GET" and rng == "bytes=10485760-" for method, _, rng in fake.requests), \
        f"the second run started over instead of resuming: {fake.requests}"
    name = "mesh-parts-q4_k_m-00001-of-00002.gguf"
    assert (folder / name).read_bytes() == fake.files[("mesh-test/Mesh-Parts-GGUF", name)]


def test_a_second_download_of_the_same_file_at_once_is_refused_not_interleaved(
        hub: tuple[FakeHub, dict[str, str]]) -> None:
    """Two processes appending to one part file (the node's rebalance fetch and a user's
    `mesh-llm download`) would install a mix of both: the second is refused while the
    first holds the file, and goes through once it is done."""
    fake, env = hub
    folder = Path(env["MESH_LLM_MODELS_DIR"])
    data = fake.files[("mesh-test/Mesh-Draft-GGUF", "mesh-draft.gguf")]
    (folder / ".downloads").mkdir(parents=True)
    part = folder / ".downloads" / f"mesh-draft.gguf.{sha(data)[:16]}.part"
    with open(part, "ab") as other:  # another download holds it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write(data[:300])
        other.flush()
        assert "already being downloaded" in error_line(cli(env, "download", "Mesh-Draft-0.5B-Q4_K_M"))
        assert not (folder / "mesh-draft.gguf").exists() and part.read_bytes() == data[:300]
    done = cli(env, "download", "Mesh-Draft-0.5B-Q4_K_M")  # resumes what the other one wrote
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "mesh-draft.gguf").read_bytes() == data and not part.exists()


def test_bad_bytes_missing_files_and_tokens_are_one_line(hub: tuple[FakeHub, dict[str, str]]) -> None:
    fake, env = hub
    folder = Path(env["MESH_LLM_MODELS_DIR"])
    fake.corrupt.add("mesh-draft.gguf")
    assert "sha256" in error_line(cli(env, "download", "Mesh-Draft-0.5B-Q4_K_M"))
    assert not (folder / "mesh-draft.gguf").exists()
    assert "(404)" in error_line(cli(env, "download", "Mesh-Gone-1B-Q4_K_M"))
    fake.corrupt.clear()
    fake.require_token = "hf_secret_token"
    assert "HF_TOKEN" in error_line(cli(env, "download", "Mesh-Draft-0.5B-Q4_K_M"))
    ok = cli({**env, "HF_TOKEN": "hf_secret_token"}, "download", "Mesh-Draft-0.5B-Q4_K_M")
    assert ok.returncode == 0 and "hf_secret_token" not in ok.stderr + ok.stdout
    unreachable = {**env, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    line = error_line(cli(unreachable, "download", "Mesh-Tiny-8B-Q4_K_M"))
    assert "Connection refused" in line and "run it again" in line


def test_a_pinned_sha256_wins_over_the_hubs_word_and_an_etag_never_names_a_path(
        hub: tuple[FakeHub, dict[str, str]]) -> None:
    """Issue 28, item 14: a download was checked against the hub's ETag from the same
    response (a hub, or whoever answers for it, vouched for its own bytes), and the ETag
    named the partial file."""
    fake, env = hub
    folder = Path(env["MESH_LLM_MODELS_DIR"])
    good = fake.files[("mesh-test/Mesh-Pinned-GGUF", "mesh-pinned.gguf")]
    fake.files[("mesh-test/Mesh-Pinned-GGUF", "mesh-pinned.gguf")] = b"GGUF" + os.urandom(996)  # ETag follows it
    assert "the catalog's pinned sha256" in error_line(cli(env, "download", "Mesh-Pinned-1B-Q4_K_M"))
    assert not (folder / "mesh-pinned.gguf").exists()
    fake.files[("mesh-test/Mesh-Pinned-GGUF", "mesh-pinned.gguf")] = good
    fake.etags["mesh-pinned.gguf"] = "../../../../escaped"  # no sha256 at all: only hex digits name a file
    ok = cli(env, "download", "Mesh-Pinned-1B-Q4_K_M")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (folder / "mesh-pinned.gguf").read_bytes() == good
    assert not list(folder.parent.rglob("escaped*")) and not list(folder.rglob("*..*"))


def test_a_catalog_name_is_downloaded_then_served(tmp_path: Path, hub: tuple[FakeHub, dict[str, str]]) -> None:
    fake, env = hub
    node = start_node(tmp_path / "node", [], "--model", "mesh-tiny-8b", env=env, wait=False)
    try:
        node.wait_serving([TINY.name], timeout=120)
        assert "downloading Mesh-Tiny-8B-Q4_K_M" in node.log()
        assert (Path(env["MESH_LLM_MODELS_DIR"]) / "mesh-tiny-F16.gguf").is_file()
    finally:
        node.stop()


def test_a_standby_downloads_a_catalog_model_clients_ask_for_and_serves_it(
        tmp_path: Path, hub: tuple[FakeHub, dict[str, str]], models: dict[str, Path]) -> None:
    """Nobody has the file; the standby that could fetch it (can_fetch) downloads it
    from the hub when clients keep asking (their 404s are demand), then serves it."""
    _, env = hub
    x = start_node(tmp_path / "x", [models[TINY.name]])
    y = start_node(tmp_path / "y", [], "--join", x.node_status().token, env=env)
    try:
        wait_until(lambda: any("mesh-wanted-q8_0" in p.can_fetch for p in x.node_status().peers), 30)
        body = {"model": "mesh-wanted-q8_0", "prompt": "hi", "max_tokens": 2}
        assert httpx.post(f"{x.api}/v1/completions", json=body, timeout=30).status_code == 404
        wait_until(lambda: httpx.post(f"{x.api}/v1/completions", json=body, timeout=30).status_code == 200, 90)
        assert (Path(env["MESH_LLM_MODELS_DIR"]) / "mesh-wanted-q8_0.gguf").is_file()
        [event] = [r for r in y.node_status().rebalances if r.model_id == "mesh-wanted-q8_0"]
        assert event.action == "promoted" and event.reason.startswith("downloading it: nobody serves it")
        assert "downloading Mesh-Wanted-3B-Q8_0" in y.log()
    finally:
        y.stop()
        x.stop()
