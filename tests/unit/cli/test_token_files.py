"""--token-file / --join-file: the invite token passed through a file."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from meshcore.errors import ConfigError
from meshcore.token import InviteToken
from mesh_cli.token_files import read_join_file, write_token_file

TOKEN = InviteToken("ab" * 16, b"s" * 32, ("10.0.0.1:7000",), "cd" * 16).encode()


def test_written_token_is_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "token"
    write_token_file(path, TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_join_file(path, wait_s=0) == TOKEN


def test_join_file_waits_for_the_token_to_appear(tmp_path: Path) -> None:
    path = tmp_path / "token"
    threading.Timer(0.7, write_token_file, (path, TOKEN)).start()
    started = time.monotonic()
    assert read_join_file(path, wait_s=10) == TOKEN
    assert time.monotonic() - started >= 0.5


def test_join_file_that_never_appears_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no invite token appeared in .* within 1 s"):
        read_join_file(tmp_path / "token", wait_s=1)


def test_join_file_with_garbage_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("not a token\n")
    with pytest.raises(Exception, match="token"):
        read_join_file(path, wait_s=0)


def test_a_planted_link_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "token"
    path.symlink_to(victim)
    for planted in (tmp_path / "token.tmp", tmp_path / ".token.tmp"):
        planted.symlink_to(victim)
    write_token_file(path, TOKEN)
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and read_join_file(path, wait_s=0) == TOKEN
