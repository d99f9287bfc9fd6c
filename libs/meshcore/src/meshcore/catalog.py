"""The model catalog (catalog.toml beside this file): names people type, the Hugging
Face files behind them, their size and draft pairing.

A name is looked up case-insensitively: the whole name (`Qwen2.5-32B-Instruct-Q4_K_M`),
a unique prefix (`qwen2.5-32b`), or a size shorthand (`32b`) that only one model has.
`MESH_LLM_CATALOG` may name another catalog file of the same form (tests use it).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from meshcore.errors import ModelNotFound
from meshcore.models import models_dir, split_stem

CATALOG = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    repo: str
    files: tuple[str, ...]   # every part, in order; the first is what llama.cpp opens
    size: int                # bytes, all parts
    draft: str = ""          # the catalog name of its draft model, if any
    revision: str = "main"
    sha256: tuple[str, ...] = ()  # each part's sha256, pinned (then the hub's own is not trusted); () if not

    def pinned(self, filename: str) -> str:
        """The pinned sha256 of one of its files ("" if none is pinned)."""
        return self.sha256[self.files.index(filename)] if self.sha256 and filename in self.files else ""

    @property
    def model_id(self) -> str:
        """The id the mesh serves it under: its first file's stem, without a part suffix."""
        return split_stem(Path(self.files[0]).stem)


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[CatalogEntry, ...]:
    data = tomllib.loads(path.read_text())
    entries = tuple(CatalogEntry(name=m["name"], repo=m["repo"], files=tuple(m["files"]), size=int(m["size"]),
                                 draft=m.get("draft", ""), revision=m.get("revision", "main"),
                                 sha256=tuple(str(h).lower() for h in m.get("sha256", [])))
                    for m in data.get("model", []))
    names = {e.name for e in entries}
    for e in entries:
        if e.draft and e.draft not in names:
            raise ValueError(f"{path}: {e.name}'s draft {e.draft} is not in the catalog")
        if e.sha256 and (len(e.sha256) != len(e.files) or not all(re.fullmatch(r"[0-9a-f]{64}", h) for h in e.sha256)):
            raise ValueError(f"{path}: {e.name}'s sha256 list must give 64 hex digits for each of its files")
    return entries


def entries() -> tuple[CatalogEntry, ...]:
    return _load(Path(os.environ.get("MESH_LLM_CATALOG", CATALOG)))


def entry(name: str) -> CatalogEntry:
    """The entry `name` means, or ModelNotFound saying why (unknown, or ambiguous)."""
    want = name.lower()
    all_ = entries()
    exact = [e for e in all_ if e.name.lower() == want or e.model_id.lower() == want]
    if exact:
        return exact[0]
    found = [e for e in all_ if e.name.lower().startswith(want)]
    if not found and re.fullmatch(r"\d+(\.\d+)?b", want):
        found = [e for e in all_ if re.search(rf"(^|-){re.escape(want)}(-|$)", e.name.lower())]
    if len(found) == 1:
        return found[0]
    if found:
        raise ModelNotFound(f"{name!r} matches {', '.join(e.name for e in found)}: say which")
    raise ModelNotFound(f"{name!r} is not in the catalog (see `mesh-llm download` for the list)")


def on_disk(entry: CatalogEntry, folder: Path | None = None) -> Path | None:
    """The first part's path if every part is in the models folder."""
    folder = folder or models_dir()
    paths = [folder / f for f in entry.files]
    return paths[0] if all(p.is_file() for p in paths) else None


def fetchable(memory_bytes: int, fit_factor: float, folder: Path | None = None) -> tuple[str, ...]:
    """Model ids of the catalog this node could download and hold alone (not on disk yet):
    gossiped, so rebalancing can ask a node to fetch a model the mesh needs."""
    return tuple(sorted(e.model_id for e in entries()
                        if e.size * fit_factor <= memory_bytes and on_disk(e, folder) is None))


def find(name: str) -> CatalogEntry | None:
    try:
        return entry(name)
    except ModelNotFound:
        return None
