import pytest

from mesh_proxy.errors import BadRequest
from mesh_proxy.forward import model_of


def test_model_is_read() -> None:
    assert model_of(b'{"model": "m", "messages": []}') == "m"
    assert model_of(b'{"messages": []}') is None  # no model: the router picks the only one, or says why not


@pytest.mark.parametrize("body,words", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"model": 3}', "'model' must be a string"),
    (b'{"model": ""}', "'model' must be a string"),
])
def test_bad_bodies_are_400_with_words(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        model_of(body)
