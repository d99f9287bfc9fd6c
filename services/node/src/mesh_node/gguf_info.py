"""What the node needs to know about a GGUF file before serving it."""

from __future__ import annotations

from pathlib import Path


def is_embedding_model(path: Path) -> bool:
    """True for models meant for embeddings (they declare a pooling type, as BERT-
    style embedding models do); those are served with `llama-server --embeddings`."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    arch_field = reader.get_field("general.architecture")
    if arch_field is None:
        return False
    arch = arch_field.contents()
    return reader.get_field(f"{arch}.pooling_type") is not None


def block_count(path: Path) -> int:
    """The model's number of layers (`<arch>.block_count`)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    arch = reader.get_field("general.architecture").contents()
    return int(reader.get_field(f"{arch}.block_count").contents())
