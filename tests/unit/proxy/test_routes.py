import pytest

from meshcore.api import node_pb2 as pb
from mesh_proxy.errors import ModelNotFound, ModelUnavailable
from mesh_proxy.routes import Endpoint, Router, endpoints_from_proto


def ep(model: str, node: str, serving: bool = True, local: bool = False) -> Endpoint:
    return Endpoint(model, node, local, "127.0.0.1:1", "serving" if serving else "loading")


def router(*endpoints: Endpoint) -> Router:
    r = Router()
    r.node_connected = True
    r.update(list(endpoints))
    return r


def test_unknown_model_is_404_and_lists_what_is_served() -> None:
    with pytest.raises(ModelNotFound, match="served: a, b"):
        router(ep("a", "n1"), ep("b", "n1")).choose("zzz")


def test_loading_model_is_503_with_retry_after() -> None:
    with pytest.raises(ModelUnavailable) as info:
        router(ep("a", "n1", serving=False)).choose("a")
    assert info.value.status == 503 and info.value.headers["Retry-After"].isdigit()


def test_not_connected_to_the_node_is_503_not_404() -> None:
    r = Router()
    with pytest.raises(ModelUnavailable):
        r.choose("a")


def test_least_in_flight_wins_and_local_breaks_ties() -> None:
    local, remote = ep("a", "n2", local=True), ep("a", "n1")
    r = router(remote, local)
    assert r.choose("a") == local
    r.begin(local)
    assert r.choose("a") == remote
    r.begin(remote)
    r.begin(remote)
    assert r.choose("a") == local
    r.end(remote)
    r.end(remote)
    r.end(local)
    assert r.in_flight == {}
    assert r.requests["a"] == 3


def test_loading_endpoints_are_skipped_when_another_serves() -> None:
    r = router(ep("a", "n1", serving=False, local=True), ep("a", "n2"))
    assert r.choose("a").node_id == "n2"


def test_endpoints_from_proto() -> None:
    table = pb.RouteTable(routes=[pb.Route(model_id="m", node_id="n", local=True, endpoint="127.0.0.1:5",
                                           state=pb.MODEL_STATE_SERVING),
                                  pb.Route(model_id="m2", node_id="n", state=pb.MODEL_STATE_LOADING)])
    assert endpoints_from_proto(table) == [Endpoint("m", "n", True, "127.0.0.1:5", "serving"),
                                          Endpoint("m2", "n", False, "", "loading")]


def test_a_failed_model_is_503_and_says_failed() -> None:
    with pytest.raises(ModelUnavailable, match="failed"):
        router(Endpoint("a", "n", True, "", "failed")).choose("a")


def test_no_model_means_the_only_model_else_400_naming_them() -> None:
    from mesh_proxy.errors import BadRequest
    assert router(ep("a", "n1"), ep("a", "n2")).choose(None).model_id == "a"
    with pytest.raises(BadRequest, match="serves 2: a, b; name one"):
        router(ep("a", "n1"), ep("b", "n1")).choose(None)
    with pytest.raises(BadRequest, match="serves none"):
        router().choose(None)


def test_equally_busy_remote_nodes_share_requests_at_random() -> None:
    """Issue 28: with requests in flight tied, the lowest node id used to win every time,
    so a member that ground a low id got every idle request."""
    import random
    low, high = ep("a", "0" * 32), ep("a", "f" * 32)
    r = router(high, low)
    r.rng = random.Random(1)
    wins = sum(r.choose("a") == low for _ in range(1000))
    assert 400 <= wins <= 600, wins
    r.begin(low)
    assert all(r.choose("a") == high for _ in range(20))  # the less busy still wins outright
