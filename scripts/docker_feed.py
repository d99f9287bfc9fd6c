"""Fill docker/feed/ for `make images`: what the image builds install from when
they cannot (or need not) reach a package index.

    .venv/bin/python scripts/docker_feed.py --base IMAGE --uv UV

1. docker/requirements/<role>.txt: each image's third-party packages, exported
   with hashes from uv.lock (rewritten only when the lock changed; committed, so a
   plain `docker compose up` on a fresh checkout installs the same versions).
2. docker/feed/wheels/: those packages as wheels for the base image's own Python,
   C library and CPU (asked of the image itself), plus the build backend our own
   packages need, downloaded here, where the package index is reachable.
3. docker/feed/llama-bin/: this machine's llama.cpp build (`make setup` made it),
   when this machine is Linux on the image's CPU; the node image checks that the
   binaries run there and otherwise builds llama.cpp from source itself.

Files are rewritten only when their bytes change, so Docker reuses its layers.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEED = ROOT / "docker" / "feed"
REQUIREMENTS = ROOT / "docker" / "requirements"
# The workspace packages whose third-party dependencies each image needs.
ROLE_PACKAGES = {
    "node": ["mesh-llm"],
    "proxy": ["mesh-llm-proxy", "mesh-llm-console"],
    "directory": ["mesh-llm-directory"],
}
BUILD_BACKEND = ["hatchling"]
LLAMA_BINARIES = ["llama-server", "ggml-rpc-server", "llama-quantize", "mesh-fnv1a"]


def say(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def exported_requirements(uv: str, role: str) -> str:
    cmd = [uv, "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-header", "--quiet"]
    for package in ROLE_PACKAGES[role]:
        cmd += ["--package", package]
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def image_platform(base: str) -> dict:
    probe = ("import json, platform, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
             "'machine': platform.machine(), 'libc': platform.libc_ver()[1]}))")
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python3", base, "-c", probe],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def platform_tags(target: dict) -> list[str]:
    """Every wheel platform tag the image's C library runs: pip does not expand
    manylinux_2_36 to the older manylinux tags by itself."""
    machine, glibc_minor = target["machine"], int(target["libc"].split(".")[1])
    tags = [f"manylinux_2_{v}_{machine}" for v in range(glibc_minor, 4, -1)]
    tags += [f"manylinux{alias}_{machine}" for alias, v in (("2014", 17), ("2010", 12), ("1", 5)) if v <= glibc_minor]
    return tags + ["any"]


def download_wheels(target: dict, requirement_files: list[Path]) -> None:
    major, minor = target["python"].split(".")
    where = ["--only-binary=:all:", "--python-version", target["python"], "--implementation", "cp",
             "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none",
             *[arg for plat in platform_tags(target) for arg in ("--platform", plat)],
             "--dest", str(FEED / "wheels"), "--quiet", "--disable-pip-version-check"]
    pip = [sys.executable, "-m", "pip", "download", *where]
    for requirements in requirement_files:
        subprocess.run([*pip, "--require-hashes", "-r", str(requirements)], check=True)
    subprocess.run([*pip, *BUILD_BACKEND], check=True)
    count = len(list((FEED / "wheels").glob("*.whl")))
    say(f"{count} wheels for Python {target['python']} on {target['machine']} (glibc {target['libc']}) "
        f"in {FEED / 'wheels'}")


def feed_llama_binaries(target: dict) -> None:
    dest = FEED / "llama-bin"
    dest.mkdir(parents=True, exist_ok=True)
    if platform.system() != "Linux" or platform.machine() != target["machine"]:
        say("this machine cannot build llama.cpp for the image's platform: the node image builds it from source")
        for old in dest.iterdir():
            if old.name != ".keep":
                old.unlink()
        return
    bin_dir = Path(subprocess.run([sys.executable, str(ROOT / "llama.cpp" / "build.py")], check=True,
                                  capture_output=True, text=True).stdout.strip())
    wanted = {p.name for p in bin_dir.iterdir() if p.name in LLAMA_BINARIES or ".so" in p.name}
    missing = set(LLAMA_BINARIES) - wanted
    if missing:
        raise SystemExit(f"docker_feed: {', '.join(sorted(missing))} missing from {bin_dir}")
    for old in dest.iterdir():  # libraries of an older build
        if old.name != ".keep" and old.name not in wanted:
            old.unlink()
    for name in sorted(wanted):
        source, copy = bin_dir / name, dest / name
        if source.is_symlink():
            if not copy.is_symlink() or copy.readlink() != source.readlink():
                copy.unlink(missing_ok=True)
                copy.symlink_to(source.readlink())
        elif copy.is_symlink() or not copy.exists() or not filecmp.cmp(source, copy, shallow=False):
            copy.unlink(missing_ok=True)
            shutil.copy(source, copy)
    say(f"llama.cpp binaries and libraries from {bin_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the base image the Dockerfiles build FROM")
    parser.add_argument("--uv", default="uv", help="the uv binary (to export requirements from uv.lock)")
    args = parser.parse_args()
    files = []
    for role in ROLE_PACKAGES:
        path = REQUIREMENTS / f"{role}.txt"
        if write_if_changed(path, exported_requirements(args.uv, role)):
            say(f"updated {path.relative_to(ROOT)} from uv.lock")
        files.append(path)
    target = image_platform(args.base)
    download_wheels(target, files)
    feed_llama_binaries(target)


if __name__ == "__main__":
    main()
