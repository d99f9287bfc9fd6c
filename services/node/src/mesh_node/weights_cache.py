"""Zero-transfer weights: a split's worker loads every weight tensor from its own GGUF.

ggml-rpc offers a weight tensor by hash (SET_TENSOR_HASH: the 64-bit FNV-1a of its
bytes) before sending it, and sends the bytes only when rpc-server says it has none.
Our llama.cpp patch (llama.cpp/patches/0002-rpc-weights-from-local-gguf.patch) makes
that work for every tensor with no second copy on disk:

- the host's llama-server hashes every weight tensor over HOST_HASH_THRESHOLD bytes
  (GGML_RPC_HASH_THRESHOLD; stock llama.cpp only those over 10 MiB). 512 bytes: below
  it, the hash request (~330 bytes with its tensor description) costs as much as the
  data, and such tensors are a few kB of a model;
- the worker writes an **index** per GGUF file, `<cache>/index/<model>.<size>-<mtime>-<inode>.idx`
  (text: hash, offset, size per tensor; format in the patch), and the patched
  rpc-server answers a hash by reading those bytes from the file itself (straight into
  the tensor's memory on a CPU worker), hashing them again first: a file changed or
  corrupted since it was indexed is a miss, and the host sends the real bytes. Nothing
  wrong is loaded silently.
The index is built once per file (hashing every tensor in the small C helper
`mesh-fnv1a`, in a worker thread) and reused while the file's size, mtime and inode
are the same. It takes ~40 bytes a tensor: ~15 kB for a 7B model.

**Unpatched binaries** (`--llama-bin-dir` with a stock build): detected by the patch's
marker string in libggml-rpc; the worker falls back to the old way, a cache file (a
copy) per tensor over 10 MiB, named by its hash, which stock rpc-server -c reads; the
node says so once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from meshcore.models import model_parts

log = logging.getLogger(__name__)
HASH_THRESHOLD = 10 * 1024 * 1024   # stock ggml-rpc's: tensors strictly above it are offered by hash
HOST_HASH_THRESHOLD = 512           # ours (GGML_RPC_HASH_THRESHOLD on a split host)
HASHER = "mesh-fnv1a"
INDEX_MAGIC = "mesh-llm-rpc-index 1"
RPC_LIBRARIES = ("libggml-rpc.so", "libggml-rpc.dylib", "ggml-rpc-server")  # where the patch's code lives
STALE_TMP_S = 3600.0  # a temporary copy untouched this long was left by a killed node
_LEGACY = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class PrepareStats:
    tensors: int          # tensors indexed (or, unpatched, big tensors found)
    written: int          # index files (or cache copies) written now; 0 when reused
    bytes_written: int    # bytes written to disk now
    bytes_hashed: int     # tensor bytes hashed now
    seconds: float
    local_index: bool     # the index (patched rpc-server), not copies


def reads_local_gguf(bin_dir: Path) -> bool:
    """Does this llama.cpp's rpc-server read weights from local GGUF files (our patch)?"""
    for name in RPC_LIBRARIES:
        path = bin_dir / name
        try:
            if INDEX_MAGIC.encode() in path.read_bytes():
                return True
        except OSError:
            continue
    return False


def tensors_of(path: Path, above: int = 0) -> list[tuple[str, int, int]]:
    """(name, absolute offset, size) of the tensors of one GGUF file larger than `above` bytes."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return [(t.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors if int(t.n_bytes) > above]


def big_tensors(path: Path) -> list[tuple[str, int, int]]:
    """The tensors stock ggml-rpc would offer by hash."""
    return tensors_of(path, HASH_THRESHOLD)


def tensor_hashes(path: Path, hasher: Path, tensors: list[tuple[str, int, int]]) -> list[str]:
    lines = "".join(f"{offset} {size}\n" for _, offset, size in tensors)
    out = subprocess.run([str(hasher), str(path)], input=lines, capture_output=True, text=True, check=True).stdout
    hashes = out.split()
    if len(hashes) != len(tensors) or any(len(h) != 16 for h in hashes):
        raise RuntimeError(f"{HASHER} gave unexpected output for {path}")
    return hashes


def index_name(path: Path) -> str:
    st = path.stat()
    return f"{path.name}.{st.st_size}-{st.st_mtime_ns}-{st.st_ino}.idx"


def write_index(path: Path, index_dir: Path, hasher: Path) -> tuple[int, int, int]:
    """The index of one GGUF file, reused while the file is unchanged. Returns (tensors,
    bytes written, bytes hashed); (tensors, 0, 0) when it was already there."""
    index_dir.mkdir(parents=True, exist_ok=True)
    target = index_dir / index_name(path)
    tensors = tensors_of(path)
    if target.is_file() and whole_index(target, len(tensors)):
        return len(tensors), 0, 0
    hashes = tensor_hashes(path, hasher, tensors)
    text = f"{INDEX_MAGIC}\n{path.resolve()}\n" + "".join(
        f"{digest} {offset} {size}\n" for (_, offset, size), digest in zip(tensors, hashes))
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    for old in index_dir.glob(f"{path.name}.*.idx"):  # an earlier version of the same file
        if old != target:
            old.unlink(missing_ok=True)
    return len(tensors), len(text), sum(size for _, _, size in tensors)


def whole_index(index: Path, tensors: int) -> bool:
    """An index written in full (a power cut can leave one short or empty: it is rebuilt)."""
    try:
        text = index.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return text.startswith(INDEX_MAGIC + "\n") and text.endswith("\n") and text.count("\n") == tensors + 2


def drop_stale_copies(folder: Path, older_than_s: float = STALE_TMP_S) -> None:
    """Temporary files a copy killed mid-way left (a cache copy can be gigabytes); one still
    being written is newer than `older_than_s`."""
    cutoff = time.time() - older_than_s
    for tmp in folder.glob("*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


KERNEL_COPY_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def copy_range(src: Path, offset: int, size: int, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        done = 0
        while done < size:
            try:
                sent = os.copy_file_range(fin.fileno(), fout.fileno(), size - done, offset + done)
            except OSError as exc:
                if exc.errno not in KERNEL_COPY_UNSUPPORTED:
                    raise
                sent = copy_by_reading(fin, fout, offset + done, size - done)
            if sent <= 0:
                raise OSError(f"short copy from {src}")
            done += sent
    tmp.replace(dst)


def copy_by_reading(fin: BinaryIO, fout: BinaryIO, offset: int, size: int) -> int:
    """The plain copy, where the kernel cannot copy between these two files (e.g.
    across filesystems on older kernels, or overlay filesystems in containers)."""
    fin.seek(offset)
    done = 0
    while done < size:
        chunk = fin.read(min(size - done, 8 << 20))
        if not chunk:
            break
        fout.write(chunk)
        done += len(chunk)
    return done


def prepare_copies(path: Path, cache_dir: Path, hasher: Path) -> tuple[int, int, int, int]:
    """Unpatched rpc-server: a cache file per big tensor, named by its hash."""
    drop_stale_copies(cache_dir)
    tensors = written = bytes_written = hashed = 0
    for part in model_parts(path):
        big = big_tensors(part)
        tensors += len(big)
        hashed += sum(size for _, _, size in big)
        for (_, offset, size), digest in zip(big, tensor_hashes(part, hasher, big)):
            dst = cache_dir / digest
            if dst.exists() and dst.stat().st_size == size:
                continue
            copy_range(part, offset, size, dst)
            written += 1
            bytes_written += size
    return tensors, written, bytes_written, hashed


def prepare(path: Path, cache_dir: Path, hasher: Path, local_index: bool = True) -> PrepareStats:
    """Make this node's copy of the model loadable by its rpc-server without transfer.
    Blocking (hashes the file): run it in a thread."""
    started = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not local_index:
        tensors, written, bytes_written, hashed = prepare_copies(path, cache_dir, hasher)
        return PrepareStats(tensors, written, bytes_written, hashed, time.monotonic() - started, False)
    for legacy in cache_dir.iterdir():  # copies an unpatched build left: the index replaces them
        if _LEGACY.match(legacy.name) and legacy.is_file():
            legacy.unlink(missing_ok=True)
    drop_stale_copies(cache_dir / "index")
    tensors = written = bytes_written = hashed = 0
    for part in model_parts(path):
        count, size, part_hashed = write_index(part, cache_dir / "index", hasher)
        tensors += count
        written += 1 if size else 0
        bytes_written += size
        hashed += part_hashed
    return PrepareStats(tensors, written, bytes_written, hashed, time.monotonic() - started, True)


def disk_used(cache_dir: Path) -> int:
    """Bytes the worker keeps for zero-transfer loading (index files, or copies)."""
    if not cache_dir.is_dir():
        return 0
    return sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
