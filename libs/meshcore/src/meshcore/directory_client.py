"""Talking to a directory (services/directory) from a node or the CLI: list,
publish (signed with the node's Ed25519 key), withdraw, and how to score a mesh
for `--auto`. Plain urllib, called from a thread: no extra dependency."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.errors import MeshError

DEFAULT_DIRECTORY = "https://directory.mesh-llm.org"
TIMEOUT_S = 10.0


class DirectoryError(MeshError):
    """The directory could not be reached or refused the request."""


def directory_url(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("MESH_LLM_DIRECTORY") or DEFAULT_DIRECTORY).rstrip("/")


def _request(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise DirectoryError(f"the directory answered {err.code}: {message}") from err
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DirectoryError(f"the directory at {url.split('/v1')[0]} is not reachable ({exc})") from exc


def list_meshes(base: str, model: str | None = None, region: str | None = None,
                name: str | None = None) -> list[dict]:
    query = urllib.parse.urlencode({k: v for k, v in (("model", model), ("region", region), ("name", name)) if v})
    return _request("GET", f"{base}/v1/meshes" + (f"?{query}" if query else ""))["meshes"]


def signing_bytes(listing: dict | None, signed_at: int, action: str) -> bytes:
    """What a publisher signs and the directory verifies (canonical JSON)."""
    return json.dumps({"action": action, "listing": listing, "signed_at": signed_at},
                      sort_keys=True, separators=(",", ":")).encode()


def sign(key: Ed25519PrivateKey, listing: dict | None, action: str, now: float | None = None) -> dict:
    """What a publisher sends besides the listing: its public key, the time, the signature."""
    signed_at = int(time.time() if now is None else now)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"public_key": public.hex(), "signed_at": signed_at,
            "signature": key.sign(signing_bytes(listing, signed_at, action)).hex()}


def publish(base: str, key: Ed25519PrivateKey, listing: dict) -> dict:
    """{"id", "expires_in"} and, from directories that take refreshes by digest, "digest"."""
    return _request("POST", f"{base}/v1/meshes", {"listing": listing, **sign(key, listing, "publish")})


def refresh(base: str, key: Ed25519PrivateKey, listing_id: str, digest: str) -> dict:
    """Keep a listing whose content is unchanged since the publish that answered
    `digest`: the digest, signed, instead of the listing. {"id", "expires_in", "digest"};
    DirectoryError if the directory has no such content (or is older than this call):
    publish in full then."""
    return _request("POST", f"{base}/v1/meshes/{listing_id}/refresh",
                    {"digest": digest, **sign(key, None, f"refresh:{listing_id}:{digest}")})


def withdraw(base: str, key: Ed25519PrivateKey, listing_id: str) -> None:
    _request("DELETE", f"{base}/v1/meshes/{listing_id}", sign(key, None, f"delete:{listing_id}"))


@dataclass(frozen=True)
class Choice:
    mesh: dict
    score: float
    why: str


def token_ok(mesh: dict) -> bool:
    """Whether a listing's token decodes, is for the mesh it is listed as, proves that
    mesh's owner (its id is the hash of the owner's key: meshcore.token.owned_mesh_id) and
    was issued by that owner, the only one who may list it. The directory checks the same;
    a joiner checks again (a stale or older directory, or one that lies)."""
    from meshcore.errors import TokenError
    from meshcore.token import InviteToken
    try:
        token = InviteToken.decode(str(mesh.get("token", "")))
    except TokenError:
        return False
    return token.mesh_id == mesh.get("mesh_id") and token.proven and token.node_id == token.owner


def has_room(mesh: dict) -> bool:
    return not mesh.get("max_clients") or mesh.get("client_count", 0) < mesh["max_clients"]


def score(mesh: dict, models: list[str], region: str | None) -> Choice:
    """Prefer a mesh serving or wanting what we bring, with room, in our region, with a
    few nodes. What a listing claims about itself counts little and is capped (issue 28:
    inflated node counts and memory won --auto): one bonus for any model in common,
    at most 4 points for nodes, none for memory. Never a full one (score -inf)."""
    if not has_room(mesh):
        return Choice(mesh, float("-inf"), "full (max clients reached)")
    offered = set(mesh.get("models_served", [])) | set(mesh.get("models_wanted", []))
    matches = sorted(offered & set(models))
    nodes = mesh.get("node_count", 0)
    points = (50.0 if matches else 0.0) + min(nodes if isinstance(nodes, int) else 0, 4)
    reasons = [f"serves or wants {', '.join(matches)}"] if matches else []
    if region and mesh.get("region") == region:
        points += 5
        reasons.append(f"in region {region}")
    reasons.append(f"{nodes} nodes")
    return Choice(mesh, points, "; ".join(reasons))


def best_mesh(meshes: list[dict], models: list[str], region: str | None,
              rng: random.Random | None = None) -> Choice | None:
    """The best listing whose token is its owner's (token_ok); ties at random (a mesh id is
    its owner's to grind: it never wins a tie)."""
    rng = rng or random.SystemRandom()
    choices = [score(m, models, region) for m in meshes if token_ok(m)]
    choices = [c for c in choices if c.score != float("-inf")]
    return max(choices, key=lambda c: (c.score, rng.random())) if choices else None
