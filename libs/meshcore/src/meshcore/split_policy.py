"""Whom a node shares a split with: the split allow-list, pure.

A split puts a model's layers on other machines and lets the host drive their
rpc-server: the host trusts the workers with its users' prompts (activations cross
to them) and with the right answers; a worker trusts the host with its memory. On a
private mesh, whoever holds the invite token was invited by its owner; on a public
mesh (listed in the directory, joined with --auto) members are strangers.

Each node says in its own signed record whom it splits with (`split_with`):
- `mesh`   any member of the mesh — the default on a private mesh;
- `owner`  nodes whose records carry the same owner key (owner.key, copied to your
           machines or passed with --owner-key) — the default on a public mesh;
- ids      owner ids or node ids, listed with --split-with ID,ID (and `owner`
           may be listed beside them).
Two nodes share a split only if **each** allows the other (`may_pair`). The words
are in the gossiped, signed records, so every node computes the same plans
(mesh_node.planner), and a worker never hands its rpc-server to a host that its own
policy excludes (it plans with the same rule).
"""

from __future__ import annotations

import re

from meshcore.errors import ConfigError
from meshcore.membership import MESH, OWNER, NodeRecord

_ID = re.compile(r"^[0-9a-f]{32}$")


def allows(a: NodeRecord, b: NodeRecord) -> bool:
    """Does `a`'s allow-list admit `b`?"""
    words = a.split_with
    if MESH in words:
        return True
    if OWNER in words and a.owner and a.owner == b.owner:
        return True
    return b.node_id in words or bool(b.owner_id and b.owner_id in words)


def may_pair(host: NodeRecord, worker: NodeRecord) -> bool:
    return allows(host, worker) and allows(worker, host)


def parse_split_with(text: str) -> tuple[str, ...]:
    """--split-with: "mesh", "owner", or a comma-separated list of owner/node ids
    (32 hex digits, as `mesh-llm` prints them) with or without "owner"."""
    words = tuple(w.strip().lower() for w in text.split(",") if w.strip())
    if not words:
        raise ConfigError("--split-with needs mesh, owner, or owner/node ids separated by commas")
    if MESH in words and len(words) > 1:
        raise ConfigError("--split-with mesh already means every member; list nothing beside it")
    bad = [w for w in words if w not in (MESH, OWNER) and not _ID.match(w)]
    if bad:
        raise ConfigError(f"--split-with: {bad[0]!r} is not mesh, owner, or a 32-hex-digit owner or node id")
    return words


def describe(words: tuple[str, ...], owner_id: str) -> str:
    """The policy in words, for the log."""
    if MESH in words:
        return "splits models with any member of this mesh"
    parts = [f"nodes of this owner ({owner_id[:12]})"] if OWNER in words else []
    ids = [w[:12] for w in words if w != OWNER]
    if ids:
        parts.append("the listed ids " + ", ".join(ids))
    return "splits models only with " + " and ".join(parts) + " (--split-with to change)"
