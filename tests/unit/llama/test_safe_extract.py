"""llama.cpp/build.py unpacks the pinned source safely on every Python 3.11: with
tarfile's "data" filter where it exists (3.11.4+), and by its own check on older
ones (Debian bookworm's python3 is 3.11.2, the base of the Docker images)."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("llama_build", ROOT / "llama.cpp" / "build.py")
assert spec is not None and spec.loader is not None
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def archive(*members: tuple[str, bytes | str]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):  # a symlink to `content`
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


@pytest.fixture(params=["with data_filter", "old python"])
def python_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "old python":
        monkeypatch.delattr(tarfile, "data_filter")
    return request.param


def test_a_normal_tree_is_extracted(tmp_path: Path, python_kind: str) -> None:
    with archive(("src/a.c", b"int x;"), ("src/link.c", "a.c")) as tar:
        build.safe_extract(tar, tmp_path, tar.getmembers())
    assert (tmp_path / "src" / "a.c").read_bytes() == b"int x;"


@pytest.mark.parametrize("members", [[("../evil", b"x")], [("src/up", "../../etc/passwd")]])
def test_members_pointing_outside_are_refused(tmp_path: Path, python_kind: str, members: list) -> None:
    with archive(*members) as tar, pytest.raises((SystemExit, tarfile.FilterError)):
        build.safe_extract(tar, tmp_path / "out", tar.getmembers())
    assert not (tmp_path / "evil").exists()
