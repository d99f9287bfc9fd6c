import os
import stat
import tempfile
from pathlib import Path

import pytest

from meshcore.errors import ModelNotFound
from meshcore.home import Home
from meshcore.errors import ConfigError
from meshcore.identity import (MeshSecret, PendingRotation, clear_pending_rotation, load_or_create_identity,
                               load_or_create_mesh_secret, load_pending_rotation, save_mesh_secret,
                               save_pending_rotation)
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
    mesh = load_or_create_mesh_secret(tmp_path, first.public_bytes)
    assert mesh.owner == first.node_id and mesh.epoch == 0 and mesh.proven and not mesh.public
    assert load_or_create_mesh_secret(tmp_path, b"p" * 32) == mesh
    for name in ("identity.key", "mesh.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


@pytest.mark.parametrize("name, content", [("identity.key", b""), ("identity.key", b"-----BEGIN PRIVATE KEY-----\nxx"),
                                           ("mesh.json", b""), ("mesh.json", b"{\"mesh_id\": 1}"),
                                           ("mesh.json", b"[1]"), ("rotation.json", b"{}")])
def test_an_unreadable_identity_or_key_file_is_a_one_line_error_naming_it(tmp_path: Path, name: str,
                                                                          content: bytes) -> None:
    """What a power cut mid-write used to leave (now each file is flushed to disk before it
    replaces the old one): a ConfigError naming the file, not a traceback."""
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=name):
        {"identity.key": lambda: load_or_create_identity(tmp_path),
         "mesh.json": lambda: load_or_create_mesh_secret(tmp_path, b"o" * 32),
         "rotation.json": lambda: load_pending_rotation(tmp_path)}[name]()
    assert (tmp_path / name).read_bytes() == content  # never replaced by a new one


def test_a_pending_rotation_is_kept_privately_until_cleared(tmp_path: Path) -> None:
    pending = PendingRotation(MeshSecret.new(b"o" * 32).rotated(), frozenset({"b" * 32}), telling=True)
    assert load_pending_rotation(tmp_path) is None
    (tmp_path / "rotation.json.0a1b2c3d.tmp").write_text("left by a node killed mid-write")
    save_pending_rotation(tmp_path, pending)
    assert load_pending_rotation(tmp_path) == pending
    assert (tmp_path / "rotation.json").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["rotation.json"]  # no temporary file left behind
    clear_pending_rotation(tmp_path)
    assert load_pending_rotation(tmp_path) is None
    save_mesh_secret(tmp_path, pending.new)
    assert load_or_create_mesh_secret(tmp_path, "p" * 32) == pending.new


def test_long_home_moves_the_socket_to_a_short_path(tmp_path: Path) -> None:
    deep = Home(tmp_path / ("x" * 120))
    assert len(str(deep.node_socket)) <= 100
    assert Home(Path("/h")).node_socket == Path("/h/run/node.sock")


def test_the_sockets_folders_are_this_users_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's socket hands out the invite token: its folder is made 0700, an existing
    one is tightened, and the short folder used for a long home is this user's own."""
    home = Home(tmp_path / "home")
    (tmp_path / "home" / "run").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "home" / "run", 0o755)
    home.ensure()
    assert stat.S_IMODE(os.stat(home.run_dir).st_mode) == 0o700
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "t").mkdir()
    deep = Home(tmp_path / ("x" * 120)).ensure()
    assert deep.node_socket.parent == tmp_path / "t" / f"mesh-llm-{os.getuid()}"
    assert stat.S_IMODE(os.stat(deep.node_socket.parent).st_mode) == 0o700
    # Someone who got there first with a link to a folder of their choosing is refused.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t2"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "t2").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "t2" / f"mesh-llm-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="not a folder"):
        Home(tmp_path / ("y" * 120)).ensure()
