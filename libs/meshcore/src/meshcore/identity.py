"""A node's Ed25519 identity and the mesh secret, kept in the node's home.

Files (created on first start, mode 0600):
  identity.key  PEM, Ed25519 private key; node id = sha256(public key)[:16] in hex
  owner.key     PEM, Ed25519 private key of the person who runs this node: nodes whose
                records carry the same owner key are "the same owner" (meshcore.split_policy).
                Copy it to your other machines (or pass --owner-key) to make them one owner.
  mesh.json     {"mesh_id": hex, "secret": hex, "owner": hex, "epoch": n}; the secret admits peers
                (saved once the mesh has admitted this node, never for a --join that was refused)
  client-mesh.json  the same for a --client proxy, apart from a node's own mesh.json
  rotation.json the owner's key rotation in progress: the new key (as mesh.json) and
                "exclude", written before any member is told of it and removed once the
                new key is in mesh.json, so a rotation cut short (killed, power lost) is
                finished at the next start instead of leaving members on a key the owner
                no longer has (mesh_node.mesh_link.MeshLink.rotate_secret)

Each is written to a new temporary file, flushed to disk and renamed over the old one:
a crash leaves the old file or the new one, never a mix. A file that cannot be read is a
ConfigError naming it (not a traceback), so nobody deletes an identity to get past it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshcore.errors import ConfigError
from meshcore.ids import MeshId, NodeId

T = TypeVar("T")


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def node_id_of(public_key: Ed25519PublicKey) -> NodeId:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return NodeId(hashlib.sha256(raw).hexdigest()[:32])


@dataclass(frozen=True)
class Identity:
    private_key: Ed25519PrivateKey

    @property
    def node_id(self) -> NodeId:
        return node_id_of(self.private_key.public_key())

    @property
    def public_bytes(self) -> bytes:
        return public_bytes(self.private_key)


@dataclass(frozen=True)
class MeshSecret:
    mesh_id: MeshId
    secret: bytes                # 32 random bytes
    owner: NodeId = NodeId("")   # the node that created the mesh: the only one that may rotate its key
    epoch: int = 0               # raised by each rotate-key; a node keeps the newest it has seen
    owner_key: bytes = b""       # the owner's Ed25519 key and a salt: the mesh id is their hash
    salt: bytes = b""            # (meshcore.token.owned_mesh_id), so the owner is proven by the id itself
    public: bool = False         # created by this node to be published in a directory (only such is)

    @staticmethod
    def new(owner_key: bytes = b"", public: bool = False) -> "MeshSecret":
        """A new mesh. With `owner_key` (the creating node's key) its id is bound to that
        key: anyone can check who owns it, and nobody else can list it or rotate its key.
        Without, an id of no owner (tests of what does not care)."""
        if not owner_key:
            return MeshSecret(MeshId(secrets.token_hex(16)), secrets.token_bytes(32))
        from meshcore.admission import key_id
        from meshcore.token import owned_mesh_id
        salt = secrets.token_bytes(16)
        return MeshSecret(owned_mesh_id(owner_key, salt), secrets.token_bytes(32), NodeId(key_id(owner_key)),
                          owner_key=owner_key, salt=salt, public=public)

    @property
    def proven(self) -> bool:
        """Whether its owner is proven by its id (owner_key and salt hash to it)."""
        from meshcore.token import owner_proven
        return owner_proven(self.mesh_id, self.owner, self.owner_key, self.salt)

    def rotated(self) -> "MeshSecret":
        return replace(self, secret=secrets.token_bytes(32), epoch=self.epoch + 1)


def _write_private(path: Path, data: bytes) -> None:
    for stale in path.parent.glob(f"{path.name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


RESTORE = "restore it from a backup (deleting it gives this node a new one)"


def _unreadable(path: Path, exc: Exception, what_to_do: str = RESTORE) -> ConfigError:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return ConfigError(f"cannot read {path} ({type(exc).__name__}{': ' + detail if detail else ''}); {what_to_do}")


def load_or_create_owner(home: Path, path: Path | None = None) -> Identity:
    """The owner key: `path` if given (it must exist: a typo must not make a new owner),
    else owner.key in the home, created on first start."""
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"owner key {path} does not exist")
        return _load_key(path)
    return load_or_create_identity(home, "owner.key")


def _load_key(path: Path) -> Identity:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return Identity(key)


IDENTITY_KEY = "identity.key"


def load_or_create_identity(home: Path, name: str = IDENTITY_KEY) -> Identity:
    path = home / name
    if path.exists():
        return _load_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_private(path, pem)
    return Identity(key)


def _mesh_from(data: object) -> MeshSecret:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return MeshSecret(MeshId(str(data["mesh_id"])), bytes.fromhex(data["secret"]), NodeId(str(data.get("owner", ""))),
                      int(data.get("epoch", 0)), bytes.fromhex(str(data.get("owner_key", ""))),
                      bytes.fromhex(str(data.get("salt", ""))), bool(data.get("public", False)))


def _mesh_json(mesh: MeshSecret) -> dict:
    return {"mesh_id": mesh.mesh_id, "secret": mesh.secret.hex(), "owner": mesh.owner, "epoch": mesh.epoch,
            "owner_key": mesh.owner_key.hex(), "salt": mesh.salt.hex(), "public": mesh.public}


def _load_json(path: Path, parse: Callable[[Any], T], what_to_do: str = RESTORE) -> T | None:
    """`parse` of the JSON file at `path`, None if there is none; a ConfigError naming the
    file if it cannot be read or is not what `parse` expects."""
    if not path.exists():
        return None
    try:
        return parse(json.loads(path.read_bytes()))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise _unreadable(path, exc, what_to_do) from exc


def load_mesh_secret(home: Path, name: str = "mesh.json") -> MeshSecret | None:
    return _load_json(home / name, _mesh_from)


def save_mesh_secret(home: Path, mesh: MeshSecret, name: str = "mesh.json") -> None:
    _write_private(home / name, json.dumps(_mesh_json(mesh)).encode())


def newest_key(home: Path, mesh: MeshSecret, name: str = "mesh.json") -> MeshSecret:
    """`mesh` (from a --join token), or the key saved under `name` for the same mesh if it is
    newer (rotated while this node was a member: the token it was started with is older)."""
    saved = load_mesh_secret(home, name)
    return saved if saved is not None and saved.mesh_id == mesh.mesh_id and saved.epoch > mesh.epoch else mesh


@dataclass(frozen=True)
class PendingRotation:
    """A key rotation the owner began: `telling` once it may have reached a member."""

    new: MeshSecret
    exclude: frozenset[NodeId]
    telling: bool


def save_pending_rotation(home: Path, pending: PendingRotation) -> None:
    """Before any member hears of the new key (telling=False while the owner only connects
    to members; True just before the first is told)."""
    _write_private(home / "rotation.json", json.dumps({**_mesh_json(pending.new), "exclude": sorted(pending.exclude),
                                                       "telling": pending.telling}).encode())


def load_pending_rotation(home: Path) -> PendingRotation | None:
    """A rotation this node began and did not finish."""
    return _load_json(home / "rotation.json", lambda data: PendingRotation(
        _mesh_from(data), frozenset(NodeId(str(n)) for n in data["exclude"]), bool(data.get("telling", True))),
        "delete it to abandon that key rotation (members that took the new key then need a new token)")


def clear_pending_rotation(home: Path) -> None:
    (home / "rotation.json").unlink(missing_ok=True)


def load_or_create_mesh_secret(home: Path, owner_key: bytes, publish: bool = False) -> MeshSecret:
    """The mesh this node was last in (so a member restarted without --join is taken
    back by its peers), or a new one that this node (`owner_key`) owns. A mesh.json from
    before owners existed keeps no owner: nobody may rotate that mesh's key.

    `publish` (--publish, --mesh-name, --auto): only a mesh this node created to be
    published may be; a home that holds another (a private mesh, one it joined) is a
    ConfigError, never its secret listed in a public directory (issue 28)."""
    mesh = load_mesh_secret(home)
    if mesh is None:
        mesh = MeshSecret.new(owner_key, public=publish)
        save_mesh_secret(home, mesh)
    elif publish and not (mesh.public and mesh.proven and mesh.owner_key == owner_key):
        raise ConfigError(f"this home ({home}) holds mesh {mesh.mesh_id[:12]}, which was not created here to be "
                          "published; --publish, --mesh-name and --auto list only such a mesh: use another --home")
    return mesh
