"""docker/requirements/*.txt (what the images install, hash-checked) must be what
uv.lock says: a plain `docker build` on a fresh checkout installs from them."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("docker_feed", ROOT / "scripts" / "docker_feed.py")
assert spec is not None and spec.loader is not None
docker_feed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docker_feed)


def uv_binary() -> str:
    cache = Path(os.environ.get("MESH_LLM_CACHE", Path.home() / ".cache" / "mesh-llm"))
    found = shutil.which("uv") or str(cache / "uv-bootstrap" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is not installed: run `make setup`")
    return found


@pytest.mark.parametrize("role", sorted(docker_feed.ROLE_PACKAGES))
def test_image_requirements_match_the_lock(role: str) -> None:
    committed = (ROOT / "docker" / "requirements" / f"{role}.txt").read_text()
    assert committed == docker_feed.exported_requirements(uv_binary(), role), \
        f"docker/requirements/{role}.txt is stale: run `make images` (it rewrites it from uv.lock)"


def test_platform_tags_cover_older_manylinux() -> None:
    tags = docker_feed.platform_tags({"machine": "x86_64", "libc": "2.36", "python": "3.11"})
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and tags[-1] == "any"
