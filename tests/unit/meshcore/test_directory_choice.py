import random

from meshcore.admission import key_id
from meshcore.directory_client import best_mesh, score, token_ok
from meshcore.identity import MeshSecret
from meshcore.ids import NodeId
from meshcore.token import InviteToken


def mesh(mid: str, **kw: object) -> dict:
    """A listing as its owner publishes it: the owner's own token to the mesh it created."""
    key = mid.encode() * 32
    owned = MeshSecret.new(key, public=True)
    token = InviteToken.of(owned, ("127.0.0.1:4000",), NodeId(key_id(key))).encode()
    return {"mesh_id": owned.mesh_id, "token": token, "name": mid, "models_served": [], "models_wanted": [],
            "node_count": 1, "total_vram_gb": 8, "client_count": 0, "max_clients": 0, "region": "", **kw}


def test_full_meshes_are_never_chosen() -> None:
    full = mesh("a", max_clients=2, client_count=2, node_count=50)
    assert score(full, [], None).score == float("-inf")
    assert best_mesh([full], [], None) is None


def test_matching_models_beat_size_and_region_counts() -> None:
    big = mesh("a", node_count=10, total_vram_gb=500)
    match = mesh("b", models_served=["M"])
    assert best_mesh([big, match], ["M"], None).mesh["name"] == "b"
    near = mesh("c", region="eu")
    choice = best_mesh([mesh("d"), near], [], "eu")
    assert choice.mesh["name"] == "c" and "region eu" in choice.why


def test_a_listing_whose_token_is_for_another_mesh_is_never_joined() -> None:
    lying = mesh("a", models_served=["M"], token=mesh("b")["token"])
    broken = mesh("c", models_served=["M"], token="not-a-token")
    assert not token_ok(lying) and not token_ok(broken)
    assert best_mesh([lying, broken], ["M"], None) is None
    assert best_mesh([lying, mesh("d")], ["M"], None).mesh["name"] == "d"


def test_only_an_owners_own_listing_is_joined() -> None:
    """Issue 28: a listing whose token does not prove its mesh's owner, or that another
    node issued, is never joined, whatever the directory says (a stale or lying one)."""
    real = mesh("a", models_served=["M"])
    token = InviteToken.decode(real["token"])
    unproven = dict(real, token=InviteToken(token.mesh_id, token.secret, token.addrs, token.node_id,
                                            token.owner).encode())
    relayed = dict(real, token=InviteToken(token.mesh_id, token.secret, token.addrs, NodeId("f" * 32),
                                           token.owner, 0, token.owner_key, token.salt).encode())
    assert token_ok(real) and not token_ok(unproven) and not token_ok(relayed)
    assert best_mesh([unproven, relayed], ["M"], None) is None


def test_inflated_claims_do_not_win_and_ties_are_not_won_by_the_lowest_id() -> None:
    honest = mesh("h", models_served=["M", "N"], node_count=4)
    inflated = mesh("i", models_served=["M", "N", "O", "P"], models_wanted=["Q"], node_count=10 ** 6,
                    total_vram_gb=10 ** 9)
    assert score(inflated, ["M", "N", "O"], None).score == score(honest, ["M", "N", "O"], None).score
    rng = random.Random(3)
    wins = sum(best_mesh([honest, inflated], ["M"], None, rng).mesh["name"] == "h" for _ in range(400))
    assert 120 <= wins <= 280, wins  # a tie, broken at random
