"""Zero-transfer weights: prepare rpc-server's cache from this node's own GGUF.

ggml-rpc sends SET_TENSOR_HASH (the 64-bit FNV-1a of the bytes) for weight
tensors over 10 MiB; `rpc-server -c` answers from `$LLAMA_CACHE/rpc/<hash>` when
that file exists, and only on a miss are the bytes sent. So a worker that writes,
for each big tensor of its local copy of the model, a cache file named by the
hash of those bytes, receives no weight over the network. The check is by
content: a different or corrupt local file yields other names, the host's hashes
miss, and the right bytes are sent instead: nothing wrong is loaded silently.

Chosen over patching rpc-server (index the GGUF in place) because it needs no C++
change to llama.cpp; the cost is disk (a second copy of the big tensors, written
once per model and reused) and the time to hash and copy them, measured in
docs/benchmarks.md. Hashing runs in the small C helper `mesh-fnv1a`.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)
HASH_THRESHOLD = 10 * 1024 * 1024  # ggml-rpc's: tensors strictly above it are hashed
HASHER = "mesh-fnv1a"


@dataclass(frozen=True)
class PrepareStats:
    tensors: int        # big tensors found
    written: int        # cache files written now (others were already there)
    bytes_written: int
    seconds: float


def big_tensors(path: Path) -> list[tuple[str, int, int]]:
    """(name, absolute offset, size) of the tensors ggml-rpc would hash."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return [(t.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors if int(t.n_bytes) > HASH_THRESHOLD]


def tensor_hashes(path: Path, hasher: Path, tensors: list[tuple[str, int, int]]) -> list[str]:
    lines = "".join(f"{offset} {size}\n" for _, offset, size in tensors)
    out = subprocess.run([str(hasher), str(path)], input=lines, capture_output=True, text=True, check=True).stdout
    hashes = out.split()
    if len(hashes) != len(tensors) or any(len(h) != 16 for h in hashes):
        raise RuntimeError(f"{HASHER} gave unexpected output for {path}")
    return hashes


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


def prepare(path: Path, cache_dir: Path, hasher: Path) -> PrepareStats:
    started = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tensors = big_tensors(path)
    hashes = tensor_hashes(path, hasher, tensors)
    written = bytes_written = 0
    for (_, offset, size), digest in zip(tensors, hashes):
        dst = cache_dir / digest
        if dst.exists() and dst.stat().st_size == size:
            continue
        copy_range(path, offset, size, dst)
        written += 1
        bytes_written += size
    return PrepareStats(len(tensors), written, bytes_written, time.monotonic() - started)
