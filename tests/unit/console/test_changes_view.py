from mesh_console.changes_view import describe_changes


def view(peers=(), routes=(), models=()) -> dict:  # noqa: ANN001
    return {"peers": list(peers), "routes": list(routes), "models": list(models)}


def test_joins_leaves_routes_and_models_are_described() -> None:
    a = {"id": "a" * 32, "role": "node", "state": "alive"}
    old = view(models=[{"name": "m", "state": "loading"}])
    new = view(peers=[a], routes=[{"model": "x", "node_id": "a" * 32}], models=[{"name": "m", "state": "serving"}])
    assert describe_changes(old, new) == ["node aaaaaaaaaaaa joined", "route added: x on aaaaaaaaaaaa",
                                          "model m is serving"]
    gone = view(peers=[{**a, "state": "dead"}], models=[{"name": "m", "state": "serving"}])
    assert describe_changes(new, gone) == ["node aaaaaaaaaaaa is dead", "route removed: x on aaaaaaaaaaaa"]


def test_nothing_changed_and_lost_agent() -> None:
    v = view()
    assert describe_changes(v, v) == []
    assert describe_changes(v, None) == ["lost the node agent"]
    assert describe_changes(None, v)[0] == "connected to the node agent"  # then what the node is now
