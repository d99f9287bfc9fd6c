"""A write and its replay check are one transaction, on SQLite and on a real
PostgreSQL: a write the database did not keep leaves its signature unused, so the
same signed request can be sent again (a replica killed between the two used to
burn the signature and lose the listing); a write that was kept cannot be replayed."""

from __future__ import annotations

import json

import pytest

from mesh_directory.store import Replayed, Signed, open_store

BODY = {"mesh_id": "ab" * 16, "name": "kept", "region": "", "models_served": ["m"], "models_wanted": []}
LID = "cd" * 16


async def test_a_write_that_fails_leaves_its_signature_unused(directory_db: str) -> None:
    store = open_store(directory_db)
    await store.start()
    try:
        signed = Signed("key", 1_000, "sig-1")
        with pytest.raises(KeyError):  # the write fails after the replay check ran
            await store.put(signed, LID, {"name": "no mesh id"}, "{}", "d0", 600)
        assert (await store.live())[1] == []
        assert await store.put(signed, LID, BODY, json.dumps(BODY), "d1", 600) is True
        assert [r.name for r in (await store.live())[1]] == ["kept"]
        with pytest.raises(Replayed):
            await store.put(signed, LID, BODY, json.dumps(BODY), "d1", 600)
        with pytest.raises(Replayed):  # older than the newest signature from this key
            await store.delete(Signed("key", 999, "sig-0"), LID)
        assert await store.refresh(Signed("key", 1_000, "sig-2"), LID, "d1", 600) is True
        assert await store.refresh(Signed("key", 1_001, "sig-3"), LID, "other digest", 600) is False
        assert await store.delete(Signed("key", 1_002, "sig-4"), LID) is True
        assert (await store.live())[1] == []
        assert await store.delete(Signed("key", 1_003, "sig-5"), LID) is False
    finally:
        await store.close()
