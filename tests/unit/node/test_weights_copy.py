"""The weights cache copies tensor byte ranges; where the kernel cannot copy
between the two files it falls back to reading and writing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mesh_node import weights_cache


def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(bytes(range(256)) * 4096)
    return path


def test_copy_range_copies_exactly_the_range(tmp_path: Path) -> None:
    src = source(tmp_path)
    weights_cache.copy_range(src, 1000, 300_000, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()[1000:301_000]


def test_copy_range_falls_back_when_the_kernel_cannot_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(*_: object) -> int:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    monkeypatch.setattr(os, "copy_file_range", cross_device)
    src = source(tmp_path)
    weights_cache.copy_range(src, 77, 1_000_000, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()[77:1_000_077]


def test_other_copy_errors_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "copy_file_range", disk_full)
    with pytest.raises(OSError, match="No space"):
        weights_cache.copy_range(source(tmp_path), 0, 10, tmp_path / "out")
