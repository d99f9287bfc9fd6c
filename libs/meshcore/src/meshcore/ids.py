"""Typed ids: each id is its own type so they cannot be mixed up silently."""

from typing import NewType

NodeId = NewType("NodeId", str)    # 32 hex digits: sha256 of the Ed25519 public key, truncated
MeshId = NewType("MeshId", str)    # 32 hex digits, random, chosen by the mesh's first node
ModelId = NewType("ModelId", str)  # a GGUF file's stem, e.g. "Qwen2.5-3B-Instruct-Q4_K_M"
