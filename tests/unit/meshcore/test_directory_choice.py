from meshcore.directory_client import best_mesh, score


def mesh(mid: str, **kw: object) -> dict:
    return {"mesh_id": mid, "models_served": [], "models_wanted": [], "node_count": 1, "total_vram_gb": 8,
            "client_count": 0, "max_clients": 0, "region": "", **kw}


def test_full_meshes_are_never_chosen() -> None:
    full = mesh("a", max_clients=2, client_count=2, node_count=50)
    assert score(full, [], None).score == float("-inf")
    assert best_mesh([full], [], None) is None


def test_matching_models_beat_size_and_region_counts() -> None:
    big = mesh("a", node_count=10, total_vram_gb=500)
    match = mesh("b", models_served=["M"])
    assert best_mesh([big, match], ["M"], None).mesh["mesh_id"] == "b"
    near = mesh("c", region="eu")
    choice = best_mesh([mesh("d"), near], [], "eu")
    assert choice.mesh["mesh_id"] == "c" and "region eu" in choice.why
