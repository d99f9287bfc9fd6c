"""Which draft each model gets (mesh_cli.launcher.choose_drafts): --draft for every model,
else the catalog's pairing when the draft is on disk, none with --no-draft."""

from argparse import Namespace
from pathlib import Path

import pytest

from meshcore.errors import ConfigError
from meshcore.home import Home
from mesh_cli.launcher import choose_drafts

CATALOG = """
[[model]]
name = "Big-7B-Q4_K_M"
repo = "t/Big"
files = ["big-7b-q4_k_m.gguf"]
size = 1
draft = "Small-0.5B-Q4_K_M"

[[model]]
name = "Small-0.5B-Q4_K_M"
repo = "t/Small"
files = ["small-0.5b-q4_k_m.gguf"]
size = 1
"""


def args(**kw: object) -> Namespace:
    return Namespace(**{"draft": None, "no_draft": False, "client": False, **kw})


def test_drafts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "catalog.toml").write_text(CATALOG)
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("MESH_LLM_CATALOG", str(tmp_path / "catalog.toml"))
    monkeypatch.setenv("MESH_LLM_MODELS_DIR", str(models))
    home = Home(tmp_path / "home")
    big = models / "big-7b-q4_k_m.gguf"
    big.write_bytes(b"GGUF")
    assert choose_drafts(args(), (str(big),), home) == ()  # the draft is not on disk: none
    small = models / "small-0.5b-q4_k_m.gguf"
    small.write_bytes(b"GGUF")
    assert choose_drafts(args(), (str(big),), home) == ((str(big), str(small)),)
    assert choose_drafts(args(no_draft=True), (str(big),), home) == ()
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    assert choose_drafts(args(draft=str(other)), (str(big),), home) == ((str(big), str(other.resolve())),)
    with pytest.raises(ConfigError, match="contradict"):
        choose_drafts(args(draft=str(other), no_draft=True), (str(big),), home)
