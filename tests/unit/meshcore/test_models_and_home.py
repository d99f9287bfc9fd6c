import os
import stat
from pathlib import Path

import pytest

from meshcore.errors import ModelNotFound
from meshcore.home import Home
from meshcore.identity import load_or_create_identity, load_or_create_mesh_secret
from meshcore.models import model_id_of, resolve_model


def gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * 16)
    return path


def test_model_id_is_the_file_stem() -> None:
    assert model_id_of(Path("/x/Foo-Q4_K_M.gguf")) == "Foo-Q4_K_M"


def test_resolve_by_path_and_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Home(tmp_path / "home")
    direct = gguf(tmp_path / "a" / "Direct.gguf")
    assert resolve_model(str(direct), home) == direct.resolve()
    in_home = gguf(home.models_dir / "Named.gguf")
    monkeypatch.delenv("MESH_LLM_MODELS_DIR", raising=False)
    assert resolve_model("Named", home) == in_home.resolve()
    env_dir = tmp_path / "env"
    gguf(env_dir / "Named.gguf")
    monkeypatch.setenv("MESH_LLM_MODELS_DIR", str(env_dir))
    assert resolve_model("Named", home) == (env_dir / "Named.gguf").resolve()


def test_missing_and_non_gguf_files_say_why(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "nope.gguf"), home)
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_model("NoSuchModel", home)
    bad = tmp_path / "bad.gguf"
    bad.write_text("hello")
    with pytest.raises(ModelNotFound, match="not a GGUF"):
        resolve_model(str(bad), home)


def test_identity_and_secret_are_created_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    again = load_or_create_identity(tmp_path)
    assert first.node_id == again.node_id and len(first.node_id) == 32
    mesh = load_or_create_mesh_secret(tmp_path, "o" * 32)
    assert mesh.owner == "o" * 32 and mesh.epoch == 0
    assert load_or_create_mesh_secret(tmp_path, "p" * 32) == mesh
    for name in ("identity.key", "mesh.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_long_home_moves_the_socket_to_a_short_path(tmp_path: Path) -> None:
    deep = Home(tmp_path / ("x" * 120))
    assert len(str(deep.node_socket)) <= 100
    assert Home(Path("/h")).node_socket == Path("/h/run/node.sock")
