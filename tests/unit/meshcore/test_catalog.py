"""The model catalog (meshcore.catalog): the shipped data file is well formed, and names
resolve by whole name, prefix or size, case-insensitively, or say why not."""

from pathlib import Path


import pytest

from meshcore import catalog
from meshcore.errors import ModelNotFound
from meshcore.models import model_id_of


def test_the_shipped_catalog_has_the_seeds_models_and_their_drafts() -> None:
    names = {e.name for e in catalog.entries()}
    for want in ("Qwen2.5-3B", "Qwen2.5-7B", "Qwen2.5-14B", "Qwen2.5-32B", "Qwen2.5-72B", "Qwen3-32B",
                 "Llama-3.3-70B", "Gemma-3-27B", "GLM-4.7-Flash", "Qwen2.5-0.5B", "Qwen3-0.6B", "Llama-3.2-1B",
                 "Gemma-3-1B"):
        assert any(n.startswith(want) for n in names), want
    for e in catalog.entries():
        assert e.files and all(f.endswith(".gguf") for f in e.files) and e.size > 0 and "/" in e.repo
        if len(e.files) > 1:
            assert all(f"-{i:05d}-of-{len(e.files):05d}.gguf" in f for i, f in enumerate(e.files, 1))
    assert catalog.entry("Qwen2.5-72B-Instruct-Q4_K_M").draft == "Qwen2.5-0.5B-Instruct-Q4_K_M"
    assert catalog.entry("qwen3-32b").draft == "Qwen3-0.6B-Q4_K_M"


def test_names_resolve_or_say_why() -> None:
    assert catalog.entry("QWEN2.5-32B").name == "Qwen2.5-32B-Instruct-Q4_K_M"
    assert catalog.entry("70b").name == "Llama-3.3-70B-Instruct-Q4_K_M"
    assert catalog.entry("qwen2.5-7b-instruct-q4_k_m").name == "Qwen2.5-7B-Instruct-Q4_K_M"  # its model id
    with pytest.raises(ModelNotFound, match="say which"):
        catalog.entry("32b")
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        catalog.entry("Mistral-7B")
    assert catalog.find("Mistral-7B") is None


def test_a_split_gguf_is_served_under_its_name_without_the_part() -> None:
    assert model_id_of(Path("/m/qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf")) == "qwen2.5-7b-instruct-q4_k_m"
    assert model_id_of(Path("/m/mesh-tiny-F16.gguf")) == "mesh-tiny-F16"
    assert catalog.entry("Qwen2.5-7B").model_id == "qwen2.5-7b-instruct-q4_k_m"


def test_what_a_node_could_fetch_is_what_fits_and_is_not_on_disk(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_LLM_MODELS_DIR", str(tmp_path))
    small = catalog.fetchable(3 << 30, 1.1)  # 3 GiB: the 3B model and the drafts
    assert "qwen2.5-3b-instruct-q4_k_m" in small and "Qwen3-0.6B-Q4_K_M" in small
    assert not any("32b" in m.lower() or "70b" in m.lower() for m in small)
    (tmp_path / "qwen2.5-3b-instruct-q4_k_m.gguf").write_bytes(b"GGUF")
    assert "qwen2.5-3b-instruct-q4_k_m" not in catalog.fetchable(3 << 30, 1.1)  # on disk already
    assert len(catalog.fetchable(1 << 40, 1.1)) == len(catalog.entries()) - 1


def test_every_catalog_file_is_pinned_by_sha256() -> None:
    """Issue 28, item 14: a download was checked only against the hub's ETag from the same
    response. Every file the catalog names now has its sha256 pinned."""
    from meshcore import catalog
    for entry in catalog.entries():
        assert len(entry.sha256) == len(entry.files), entry.name
        assert all(entry.pinned(f) == h for f, h in zip(entry.files, entry.sha256))
