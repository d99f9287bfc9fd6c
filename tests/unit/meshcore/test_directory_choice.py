from meshcore.directory_client import best_mesh, score, token_ok
from meshcore.token import InviteToken


def mesh(mid: str, **kw: object) -> dict:
    mesh_id = mid * 32
    token = InviteToken(mesh_id, b"s" * 32, ("127.0.0.1:4000",), "e" * 32).encode()
    return {"mesh_id": mesh_id, "token": token, "models_served": [], "models_wanted": [], "node_count": 1,
            "total_vram_gb": 8, "client_count": 0, "max_clients": 0, "region": "", **kw}


def test_full_meshes_are_never_chosen() -> None:
    full = mesh("a", max_clients=2, client_count=2, node_count=50)
    assert score(full, [], None).score == float("-inf")
    assert best_mesh([full], [], None) is None


def test_matching_models_beat_size_and_region_counts() -> None:
    big = mesh("a", node_count=10, total_vram_gb=500)
    match = mesh("b", models_served=["M"])
    assert best_mesh([big, match], ["M"], None).mesh["mesh_id"] == "b" * 32
    near = mesh("c", region="eu")
    choice = best_mesh([mesh("d"), near], [], "eu")
    assert choice.mesh["mesh_id"] == "c" * 32 and "region eu" in choice.why


def test_a_listing_whose_token_is_for_another_mesh_is_never_joined() -> None:
    lying = mesh("a", models_served=["M"], token=mesh("b")["token"])
    broken = mesh("c", models_served=["M"], token="not-a-token")
    assert not token_ok(lying) and not token_ok(broken)
    assert best_mesh([lying, broken], ["M"], None) is None
    assert best_mesh([lying, mesh("d")], ["M"], None).mesh["mesh_id"] == "d" * 32
