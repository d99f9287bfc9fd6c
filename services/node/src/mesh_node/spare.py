"""The models on this machine's disk a standby can offer: every GGUF in the models
folders ($MESH_LLM_MODELS_DIR, <home>/models, the cache's models folder), by model id
(a multi-part GGUF once, by its first part, with the size of all its parts). Files
the node already runs or uses as drafts, unreadable files, files that are not GGUF
and unfinished downloads are left out. Scanning reads four bytes a file."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from meshcore.errors import ModelNotFound
from meshcore.ids import ModelId
from meshcore.models import check_gguf, is_later_part, model_id_of, model_parts

MAX_SPARE = 64  # models one node offers (a record carries at most 256 map entries)


def scan(folders: Iterable[Path], excluded: set[str]) -> dict[ModelId, tuple[Path, int]]:
    """model id -> (path of the file llama.cpp opens, bytes of all its parts)."""
    found: dict[ModelId, tuple[Path, int]] = {}
    for folder in folders:
        try:
            files = sorted(folder.glob("*.gguf"))
        except OSError:
            continue
        for path in files:
            if is_later_part(path):
                continue
            model = model_id_of(path)
            if model in found or str(path.resolve()) in excluded or len(found) >= MAX_SPARE:
                continue
            try:
                check_gguf(path)
                size = sum(p.stat().st_size for p in model_parts(path))
            except (ModelNotFound, OSError):
                continue
            found[model] = (path, size)
    return found
