import pytest

from mesh_node import memory


def test_cap_applies_and_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "detect_memory", lambda device=None: (64 << 30, "system"))
    assert memory.offered_memory_bytes(None) == (64 << 30, "system")
    assert memory.offered_memory_bytes(2.5) == (int(2.5 * (1 << 30)), "system (capped by --max-vram)")
    assert memory.offered_memory_bytes(128)[0] == 64 << 30


def test_device_index() -> None:
    assert memory.device_index("CUDA1") == "1"
    assert memory.device_index("Metal") is None
    assert memory.device_index(None) is None


def test_system_memory_is_positive() -> None:
    assert memory.system_memory_bytes() > 1 << 20
