"""Zero transfer, zero copy: split workers load every weight tensor from their own GGUF
(llama.cpp/patches/0002, mesh_node.weights_cache) on files shaped like real ones — Q8_0
with Qwen2.5-3B's shapes (attention tensors under ggml-rpc's stock 10 MiB threshold) and
a Q4_K_M GQA model whose tensors are all under it. Tokens equal solo, the bytes sent to
workers at load are the protocol's own, the worker's disk holds an index, not copies;
a tampered file is sent the real bytes; a stock build falls back to copies, saying so."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import GQA_Q4KM, Q3B_Q8
from meshcore.llama_bin import llama_bin_dir
from mesh_node import weights_cache
from meshnode import SAME_KERNELS, MeshNode, greedy, start_node

TOKENS = 12


def cap(model: Path, ways: int, i: int = 0) -> str:
    """--max-vram (GiB) for node `i` so that the model needs all `ways` nodes; a little
    less for each later node, so the first one (most memory) is the host."""
    return f"{1.1 * model.stat().st_size * 1.2 / ways * (1 - 0.01 * i) / (1 << 30):.5f}"


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory, real_models: dict[str, Path]) -> dict[str, list[str]]:
    node = start_node(tmp_path_factory.mktemp("solo"), [real_models[Q3B_Q8.name], real_models[GQA_Q4KM.name]],
                      env=SAME_KERNELS)
    try:
        return {name: greedy(node.api, name, TOKENS) for name in (Q3B_Q8.name, GQA_Q4KM.name)}
    finally:
        node.stop()


def split(tmp: Path, model: Path, ways: int, *extra: str, files: list[Path] | None = None) -> list[MeshNode]:
    files = files or [model] * ways
    first = start_node(tmp / "n0", [files[0]], "--max-vram", cap(model, ways), *extra, wait=False, env=SAME_KERNELS)
    nodes = [first]
    try:
        for i, path in enumerate(files[1:], start=1):
            nodes.append(start_node(tmp / f"n{i}", [path], "--max-vram", cap(model, ways, i), "--join",
                                    first.wait_token(), *extra, wait=False, env=SAME_KERNELS))
        for node in nodes:
            node.wait_serving([model.stem], timeout=180)
        return nodes
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def host_and_workers(nodes: list[MeshNode]) -> tuple[MeshNode, list[MeshNode]]:
    host = next(n for n in nodes if n.node_status().models[0].split)
    return host, [n for n in nodes if n is not host]


def legacy_copies(node: MeshNode) -> list[Path]:
    cache = node.home / "rpc-cache" / "rpc"
    return [p for p in cache.iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name)] if cache.is_dir() else []


@pytest.mark.parametrize("spec,ways", [(Q3B_Q8, 2), (GQA_Q4KM, 3)], ids=["q8_0-3b-shapes-2way", "q4_k_m-gqa-3way"])
def test_split_workers_load_every_tensor_from_their_own_file(
        tmp_path: Path, real_models: dict[str, Path], solo: dict[str, list[str]], spec, ways: int) -> None:  # noqa: ANN001
    model = real_models[spec.name]
    size = model.stat().st_size
    nodes = split(tmp_path, model, ways)
    try:
        host, workers = host_and_workers(nodes)
        assert len(host.node_status().models[0].split) == ways
        links = host.node_status().rpc_links
        assert len(links) == ways - 1
        for link in links:
            share = link.bytes_to_worker / size
            print(f"\n{spec.name} {ways}-way: {link.bytes_to_worker} bytes to worker {link.peer[:12]} at load "
                  f"= {share:.4%} of the model")
            assert share <= 0.01, f"{link.bytes_to_worker} bytes sent to a worker at load"
        for worker in workers:
            assert legacy_copies(worker) == []  # no second copy of any weight
            used = weights_cache.disk_used(worker.home / "rpc-cache")
            assert 0 < used <= 0.01 * size, f"the worker keeps {used} bytes for a {size}-byte model"
            assert "indexed" in worker.log()
        for node in nodes:
            assert greedy(node.api, spec.name, TOKENS) == solo[spec.name]
    finally:
        for node in nodes:
            node.stop()


def test_a_tampered_tensor_is_sent_not_loaded(tmp_path: Path, real_models: dict[str, Path],
                                              solo: dict[str, list[str]]) -> None:
    """One byte changed in a small attention tensor of the last layer (workers hold the
    last layers): its hash no longer matches the host's, so the real bytes cross."""
    model = real_models[Q3B_Q8.name]
    tampered = tmp_path / "tampered" / model.name
    tampered.parent.mkdir()
    shutil.copy(model, tampered)
    name, offset, size = next(t for t in weights_cache.tensors_of(model) if t[0] == "blk.1.attn_q.weight")
    assert size < weights_cache.HASH_THRESHOLD  # stock ggml-rpc would never have offered it by hash
    with open(tampered, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    nodes = split(tmp_path, model, 2, files=[model, tampered])
    try:
        host, [worker] = host_and_workers(nodes)
        assert host is nodes[0] and worker is nodes[1]  # the tampered file is the worker's
        assert greedy(nodes[0].api, Q3B_Q8.name, TOKENS) == solo[Q3B_Q8.name]
        [link] = host.node_status().rpc_links
        assert size <= link.bytes_to_worker < size + 0.01 * model.stat().st_size, link
    finally:
        for node in nodes:
            node.stop()


def stock_like_bin_dir(tmp: Path) -> Path:
    """This build with the patch's marker scrubbed from libggml-rpc: what a user's stock
    llama.cpp (--llama-bin-dir) looks like to the node."""
    src = llama_bin_dir()
    dst = tmp / "stock-bin"
    dst.mkdir()
    for f in src.iterdir():
        if f.name == "libggml-rpc.so":
            (dst / f.name).write_bytes(f.read_bytes().replace(weights_cache.INDEX_MAGIC.encode(),
                                                              b"x" * len(weights_cache.INDEX_MAGIC)))
        else:
            (dst / f.name).symlink_to(f)
    assert not weights_cache.reads_local_gguf(dst) and weights_cache.reads_local_gguf(src)
    return dst


def test_a_stock_build_falls_back_to_cache_copies_with_a_notice(tmp_path: Path, real_models: dict[str, Path],
                                                                solo: dict[str, list[str]]) -> None:
    model = real_models[Q3B_Q8.name]
    nodes = split(tmp_path, model, 2, "--llama-bin-dir", str(stock_like_bin_dir(tmp_path)))
    try:
        assert greedy(nodes[0].api, Q3B_Q8.name, TOKENS) == solo[Q3B_Q8.name]
        _, [worker] = host_and_workers(nodes)
        notices = [line for line in worker.log().splitlines() if "cannot load weights from local GGUF" in line]
        assert len(notices) == 1
        assert legacy_copies(worker), "the fallback keeps copies of the big tensors"
    finally:
        for node in nodes:
            node.stop()
