"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from meshcore.identity import IDENTITY_KEY, load_or_create_identity
from meshcore.link_tls import LinkTls


@pytest.fixture
def node_tls(tmp_path: Path) -> Callable[[str], LinkTls]:
    """A node's data-path TLS (meshcore.link_tls), with a key of its own in tmp/name."""
    def make(name: str) -> LinkTls:
        (tmp_path / name).mkdir()
        return LinkTls(load_or_create_identity(tmp_path / name), tmp_path / name / IDENTITY_KEY,
                       tmp_path / name / "cert.pem")
    return make
