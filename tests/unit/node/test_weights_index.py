"""Which files make a model (meshcore.models.model_parts), and mesh_node.weights_cache's pure
parts: which build reads weights from local GGUF files, what makes an index reusable."""

import os
import sys
import time
from pathlib import Path

from meshcore.models import is_later_part, model_parts
from mesh_node import weights_cache
from mesh_node.tiny_model import TinySpec, generate


def test_a_multi_part_model_is_all_its_parts() -> None:
    first = Path("/m/qwen-q4_k_m-00001-of-00003.gguf")
    assert [p.name for p in model_parts(first)] == [
        "qwen-q4_k_m-00001-of-00003.gguf", "qwen-q4_k_m-00002-of-00003.gguf", "qwen-q4_k_m-00003-of-00003.gguf"]
    assert model_parts(Path("/m/one.gguf")) == [Path("/m/one.gguf")]
    assert not is_later_part(first) and not is_later_part(Path("/m/one.gguf"))
    assert is_later_part(Path("/m/qwen-q4_k_m-00002-of-00003.gguf"))


def test_a_patched_build_is_told_from_a_stock_one_by_the_marker(tmp_path: Path) -> None:
    patched, stock = tmp_path / "patched", tmp_path / "stock"
    patched.mkdir()
    stock.mkdir()
    (patched / "libggml-rpc.so").write_bytes(b"\x7fELF..." + weights_cache.INDEX_MAGIC.encode() + b"\0...")
    (stock / "libggml-rpc.so").write_bytes(b"\x7fELF... no marker")
    assert weights_cache.reads_local_gguf(patched)
    assert not weights_cache.reads_local_gguf(stock)
    assert not weights_cache.reads_local_gguf(tmp_path / "missing")


def test_the_index_name_changes_when_the_file_does(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    before = weights_cache.index_name(model)
    assert before == weights_cache.index_name(model)  # unchanged file: the same index is reused
    os.utime(model, ns=(1, 1))
    assert weights_cache.index_name(model) != before  # touched: indexed again
    assert weights_cache.index_name(model).startswith("m.gguf.") and before.endswith(".idx")


def counting_hasher(tmp_path: Path) -> Path:
    """Stands in for mesh-fnv1a (one 16-hex hash per `offset size` line) and counts its runs."""
    hasher = tmp_path / "hasher"
    hasher.write_text(f"#!{sys.executable}\nimport sys\nopen({str(tmp_path / 'runs')!r}, 'a').write('x')\n"
                      "for line in sys.stdin: print(format(int(line.split()[0]), '016x'))\n")
    hasher.chmod(0o755)
    return hasher


def test_a_short_index_left_by_a_power_cut_is_rebuilt_and_stale_copies_go(tmp_path: Path) -> None:
    model = generate(TinySpec(), tmp_path / "models")
    hasher, index_dir = counting_hasher(tmp_path), tmp_path / "cache" / "index"
    tensors, written, _ = weights_cache.write_index(model, index_dir, hasher)
    assert tensors > 0 and written > 0
    assert weights_cache.write_index(model, index_dir, hasher) == (tensors, 0, 0)  # reused, not hashed again
    assert (tmp_path / "runs").read_text() == "x"
    index = index_dir / weights_cache.index_name(model)
    whole = index.read_text()
    index.write_text(whole[: len(whole) // 2])  # what a power cut can leave
    assert weights_cache.write_index(model, index_dir, hasher)[1] > 0 and index.read_text() == whole
    stale, fresh = index_dir / "x.idx.tmp", index_dir / "y.idx.tmp"
    stale.write_text("left by a killed node")
    fresh.write_text("being written now")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    weights_cache.drop_stale_copies(index_dir)
    assert not stale.exists() and fresh.exists()
