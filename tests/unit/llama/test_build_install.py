"""llama.cpp/build.py installs a build all at once: a build cut short while its programs
and libraries are copied leaves no bin/ that the next `make setup` takes for a finished
("using cached build") one whose llama-server then cannot load its libraries."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("llama_build_install", ROOT / "llama.cpp" / "build.py")
assert spec is not None and spec.loader is not None
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A source tree and a compile that only writes the outputs (the real one takes 15 min)."""
    src = tmp_path / "src"
    (src / "ggml").mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("")
    monkeypatch.setenv("MESH_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MESH_LLM_LLAMA_SRC", str(src))
    monkeypatch.setattr(build, "patches", lambda: [])
    monkeypatch.setattr(build, "build_tools", lambda bin_dir: None)

    def compile_targets(src: Path, out: Path, flags: list[str]) -> None:
        (out / "bin").mkdir(parents=True, exist_ok=True)
        for name in [*build.PIN["targets"], "libllama.so", "libggml.so"]:
            (out / "bin" / name).write_text(name)
    monkeypatch.setattr(build, "compile_targets", compile_targets)
    return src


def test_a_build_cut_short_while_installing_is_not_taken_for_a_finished_one(fake_source: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real_copy = shutil.copy2

    def copy_then_die(source, dest, **kwargs):  # noqa: ANN001, ANN202 - shutil.copy2's signature
        if str(source).endswith(".so"):
            raise KeyboardInterrupt  # killed after the programs, before the libraries
        return real_copy(source, dest, **kwargs)
    monkeypatch.setattr(build.shutil, "copy2", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        build.build()
    key = build.build_key(build.cmake_flags())
    out = build.cache_root() / "llama.cpp" / key
    assert not (out / "bin").exists() and not (build.cache_root() / "llama.cpp" / "current").exists()

    monkeypatch.setattr(build.shutil, "copy2", real_copy)
    bin_dir = build.build()
    assert bin_dir == out / "bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted([*build.PIN["targets"], "libllama.so", "libggml.so"])
    assert (build.cache_root() / "llama.cpp" / "current").read_text().strip() == str(bin_dir)
    assert not (out / "bin.tmp").exists()
