import base64

import msgpack
import pytest

from meshcore.errors import TokenError
from meshcore.token import InviteToken

GOOD = InviteToken("a" * 32, b"s" * 32, ("10.0.0.2:4000", "127.0.0.1:4000"), "b" * 32)


def pack(data: dict) -> str:
    return base64.urlsafe_b64encode(msgpack.packb(data)).rstrip(b"=").decode()


def test_round_trip() -> None:
    text = GOOD.encode()
    assert "=" not in text and "+" not in text and "/" not in text
    assert InviteToken.decode(text) == GOOD
    assert InviteToken.decode(f"  {text}\n") == GOOD


@pytest.mark.parametrize("text", ["", "x" * 5000, "not base64 !!", "AAAA", pack([1, 2])])
def test_garbage_is_rejected_with_words(text: str) -> None:
    with pytest.raises(TokenError) as info:
        InviteToken.decode(text)
    assert "token" in str(info.value)


@pytest.mark.parametrize("field,value,words", [
    ("v", 2, "version"),
    ("mesh_id", "short", "mesh id"),
    ("node_id", "Z" * 32, "node id"),
    ("secret", b"short", "secret"),
    ("secret", "s" * 32, "secret"),
    ("addrs", [], "address"),
    ("addrs", ["no-port"], "address"),
    ("addrs", ["1.2.3.4:70000"], "address"),
    ("addrs", ["1.2.3.4:1"] * 17, "address"),
])
def test_each_bad_field_is_named(field: str, value: object, words: str) -> None:
    data = {"v": 1, "mesh_id": GOOD.mesh_id, "secret": GOOD.secret, "addrs": list(GOOD.addrs),
            "node_id": GOOD.node_id, field: value}
    with pytest.raises(TokenError, match=words):
        InviteToken.decode(pack(data))


def test_tampered_byte_changes_or_breaks_the_token() -> None:
    text = GOOD.encode()
    flipped = text[:10] + ("A" if text[10] != "A" else "B") + text[11:]
    try:
        decoded = InviteToken.decode(flipped)
    except TokenError:
        return
    assert decoded != GOOD


def test_owner_and_epoch_round_trip_and_old_tokens_still_decode() -> None:
    from dataclasses import replace

    from meshcore.identity import MeshSecret
    key = b"k" * 32
    mesh = replace(MeshSecret.new(key), epoch=3)
    owned = InviteToken.of(mesh, ("10.0.0.2:4000",), "b" * 32)
    assert InviteToken.decode(owned.encode()) == owned and owned.proven
    assert owned.mesh == replace(mesh, public=False)  # its owner proven by the id: key, salt and all
    old = pack({"v": 1, "mesh_id": "a" * 32, "secret": b"s" * 32, "addrs": ["10.0.0.2:4000"], "node_id": "b" * 32})
    assert InviteToken.decode(old).owner == "" and InviteToken.decode(old).epoch == 0


def test_an_owner_the_mesh_id_does_not_prove_is_no_owner() -> None:
    """Issue 28: a member handed out the real secret naming itself owner, and joiners took
    its rekeys. A token's owner now counts only if the mesh id is the hash of its key."""
    from meshcore.identity import MeshSecret
    real = MeshSecret.new(b"k" * 32)
    claimed = InviteToken(real.mesh_id, real.secret, ("10.0.0.2:4000",), "b" * 32, "c" * 32)  # no proof
    assert InviteToken.decode(claimed.encode()).mesh.owner == ""
    forged = InviteToken(real.mesh_id, real.secret, ("10.0.0.2:4000",), "b" * 32, "c" * 32, 0, b"m" * 32, real.salt)
    with pytest.raises(TokenError, match="owner does not match"):
        InviteToken.decode(forged.encode())
    stolen = InviteToken.of(real, ("10.0.0.2:4000",), "b" * 32)
    with pytest.raises(TokenError):  # the owner's proof with another owner id
        InviteToken.decode(InviteToken(stolen.mesh_id, stolen.secret, stolen.addrs, stolen.node_id, "c" * 32, 0,
                                       stolen.owner_key, stolen.salt).encode())


@pytest.mark.parametrize("bad", [{"owner": "x"}, {"owner": 5}, {"epoch": -1}, {"epoch": True}, {"epoch": "1"}])
def test_a_bad_owner_or_epoch_is_refused(bad: dict) -> None:
    data = {"v": 1, "mesh_id": "a" * 32, "secret": b"s" * 32, "addrs": ["10.0.0.2:4000"], "node_id": "b" * 32, **bad}
    with pytest.raises(TokenError):
        InviteToken.decode(pack(data))
