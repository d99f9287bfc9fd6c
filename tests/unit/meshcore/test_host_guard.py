import asyncio

import pytest

from meshcore.host_guard import HostGuard, host_allowed, is_loopback

NAMES = frozenset({"localhost", "mybox", "mybox.local"})


@pytest.mark.parametrize("host", ["127.0.0.1:9337", "127.0.0.1", "localhost:3131", "[::1]:9337", "::1",
                                  "192.168.1.20:3131", "mybox:3131", "MyBox.local", "localhost."])
def test_this_machine_is_allowed(host: str) -> None:
    assert host_allowed(host, NAMES)


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:9337", "127.0.0.1.nip.io:9337", "",
                                  "[::1", "localhost.attacker.example", "mybox.attacker.example",
                                  "mybox" + "." * 400, "a" * 100_000])
def test_other_names_are_refused(host: str) -> None:
    assert not host_allowed(host, NAMES)


def test_the_guard_answers_403_without_calling_the_app() -> None:
    called, sent = [], []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        called.append(scope)

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    guard = HostGuard(app, NAMES)
    asyncio.run(guard({"type": "http", "headers": [(b"host", b"evil.example")]}, receive, send))
    assert called == [] and sent[0]["status"] == 403 and b"host_not_allowed" in sent[1]["body"]
    asyncio.run(guard({"type": "http", "headers": [(b"host", b"127.0.0.1:1")]}, receive, send))
    assert len(called) == 1


def test_is_loopback() -> None:
    assert is_loopback(("127.0.0.1", 5)) and is_loopback(("::1", 5))
    assert not is_loopback(("10.1.2.3", 5)) and not is_loopback(None) and not is_loopback(("x", 1))
