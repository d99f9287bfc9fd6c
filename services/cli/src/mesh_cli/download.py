"""`mesh-llm download`: the catalog (meshcore.catalog) and fetching its models.

Files come from the Hugging Face hub through `huggingface_hub` (its URLs and
`HF_ENDPOINT`, `HF_TOKEN`, redirects, HTTP client, retries and progress bar). Each
file is streamed into a staging folder (`<models>/.downloads/<file>.<etag>.part`),
its sha256 (hashed as it is written) checked against the hub's own (the ETag of an LFS file is its sha256),
and only then moved to `<models>/<file>`: a partial or corrupt file is never where a
model is expected, and an interrupted download (network loss, Ctrl-C) resumes from
the part file on the next run. A split GGUF is every part, served from its first.

The models folder: `$MESH_LLM_MODELS_DIR`, else `~/.cache/mesh-llm/models` (where
`--model NAME` also looks).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

from meshcore import catalog
from meshcore.catalog import CatalogEntry, on_disk
from meshcore.models import models_dir
from meshcore.errors import MeshError

HASH_CHUNK = 8 << 20


class DownloadError(MeshError):
    """A download that could not finish; what was fetched is kept for the next try."""


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def list_catalog(out=sys.stdout) -> None:  # noqa: ANN001 - a text stream
    rows = [("NAME", "SIZE", "DRAFT", "ON DISK")]
    for e in catalog.entries():
        rows.append((e.name, gib(e.size), e.draft or "-", "yes" if on_disk(e) else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
    print(f"\nmodels folder: {models_dir()}  (mesh-llm download NAME [--draft])", file=out)


class HashingWriter:
    """The part file as huggingface_hub's http_get writes it, hashed as it is written
    (no second pass over a 40 GB file). The bytes already there (a resumed download)
    are hashed first; if http_get rewinds (a server that ignored the Range request),
    the hash is taken from the file at the end instead."""

    def __init__(self, raw, path: Path, have: int) -> None:  # noqa: ANN001 - a binary file
        self.raw, self.path, self.rewound = raw, path, False
        self.digest = hash_file(hashlib.sha256(), path) if have else hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, *args: int) -> int:
        self.rewound = True
        return self.raw.seek(*args)

    def truncate(self, *args: int) -> int:
        self.rewound = True
        return self.raw.truncate(*args)

    def hexdigest(self) -> str:
        """After the file is closed."""
        return (hash_file(hashlib.sha256(), self.path) if self.rewound else self.digest).hexdigest()


def hash_file(digest, path: Path):  # noqa: ANN001, ANN201 - a hashlib object in and out
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest


LOCKS_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _fetch_file(entry: CatalogEntry, filename: str, folder: Path) -> Path:
    """One file: huggingface_hub finds it (HF_ENDPOINT, HF_TOKEN, redirects) and streams
    it (its progress bar and retries) into `.downloads/<file>.<etag>.part`, which a
    later run resumes from (huggingface_hub 2.x drops its own partial files on failure)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers
    target = folder / filename
    if target.is_file():
        return target
    meta = get_hf_file_metadata(hf_hub_url(entry.repo, filename, revision=entry.revision))
    # What the file must hash to: the catalog's pin when it has one (the hub's word is then
    # only a hint), else the hub's ETag (an LFS file's sha256). The ETag is the hub's (or a
    # man in the middle's) text: only hex digits of it ever name a file.
    pinned = entry.pinned(filename)
    etag = re.sub(r"[^0-9a-f]", "", (meta.etag or "").lower())
    expected = pinned or (etag if len(etag) == 64 else "")
    staging = folder / ".downloads"
    staging.mkdir(exist_ok=True)
    part = staging / f"{filename}.{(expected or etag)[:16] or 'noetag'}.part"
    with open(part, "ab") as raw:
        try:  # one writer per part file: two appending at once would interleave their bytes
            fcntl.flock(raw, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"{filename} is already being downloaded by another mesh-llm on this machine "
                                f"(into {part}); wait for it to finish") from None
        except OSError as exc:  # a filesystem without locks (NFS without lockd, some SMB mounts)
            if exc.errno not in LOCKS_UNSUPPORTED:
                raise
            print(f"note: {folder} cannot lock files ({exc.strerror}): do not download {filename} twice at once",
                  file=sys.stderr)
        if target.is_file():  # another download finished it while this one waited to start
            part.unlink(missing_ok=True)
            return target
        have = os.fstat(raw.fileno()).st_size
        if meta.size is not None and have > meta.size:
            raw.truncate(0)
            have = 0
        if meta.size:
            free = shutil.disk_usage(folder).free
            if free < meta.size - have:
                raise DownloadError(f"not enough disk space for {filename}: it needs {gib(meta.size - have)} more, "
                                    f"{folder} has {gib(free)} free")
        if have:
            print(f"resuming {filename} at {gib(have)}", file=sys.stderr)
        out = HashingWriter(raw, part, have)
        http_get(meta.location, out, resume_size=have, headers=build_hf_headers(), expected_size=meta.size,  # type: ignore[arg-type]
                 displayed_filename=filename)
        raw.flush()
        size = os.fstat(raw.fileno()).st_size
        if meta.size is not None and size != meta.size:
            raise DownloadError(f"{filename} is {size} bytes where the hub says {meta.size}; what was fetched is "
                                f"kept: run the download again")
        if expected:
            actual = out.hexdigest()
            if actual != expected:
                part.unlink()
                whose = "the catalog's pinned" if pinned else "the hub's"
                raise DownloadError(f"{filename} does not match {whose} sha256 ({actual[:12]}… ≠ {expected[:12]}…); "
                                    f"it was deleted: run the download again")
        os.fsync(raw.fileno())
        os.replace(part, target)  # while the lock is held: no other writer has this file open for writing
    return target


def is_network_error(exc: BaseException) -> bool:
    """An error of huggingface_hub's HTTP client (httpx, or its httpx2 fork today)."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11")


def stopped(filename: str, exc: BaseException) -> DownloadError:
    return DownloadError(f"the download of {filename} stopped ({type(exc).__name__}: "
                         f"{str(exc)[:160] or 'network error'}); what was fetched is kept: run it again to resume")


def download(entry: CatalogEntry, folder: Path | None = None) -> Path:
    """Every part of `entry` in the models folder; returns the first part's path.
    Raises DownloadError in one line (not found, no access, network, disk full)."""
    from huggingface_hub import errors as hf
    folder = folder or models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    where = f"{entry.repo} on {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}"
    for i, filename in enumerate(entry.files, 1):
        part = f" (part {i} of {len(entry.files)})" if len(entry.files) > 1 else ""
        print(f"downloading {entry.name}{part}: {filename} from {where}", file=sys.stderr)
        try:
            _fetch_file(entry, filename, folder)
        except hf.GatedRepoError as exc:
            raise DownloadError(f"{entry.repo} needs you to accept its license on the hub and a token "
                                f"(set HF_TOKEN)") from exc
        except hf.LocalEntryNotFoundError as exc:  # the hub could not be reached, nothing cached
            raise DownloadError(f"could not reach {where} ({str(exc.__cause__ or exc)[:160]}); what was fetched "
                                f"is kept: run it again to resume") from exc
        except hf.HfHubHTTPError as exc:  # not found (the hub may say so with 401 for a private repo) or refused
            status = getattr(getattr(exc, "response", None), "status_code", "?")
            if status in (401, 403):
                raise DownloadError(f"{where} refused access ({status}): set HF_TOKEN to a token that may "
                                    f"read it") from exc
            if isinstance(exc, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError)):
                raise DownloadError(f"{filename} was not found in {where} (404)") from exc
            raise DownloadError(f"the hub answered {status} for {filename}; what was fetched is kept: "
                                f"run the download again") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DownloadError(f"the disk holding {folder} is full; what was fetched is kept") from exc
            raise stopped(filename, exc) from exc
        except Exception as exc:
            if not is_network_error(exc):
                raise
            raise stopped(filename, exc) from exc
    path = folder / entry.files[0]
    print(f"{entry.name} is ready: {path}", file=sys.stderr)
    return path


def download_command(names: list[str], with_draft: bool) -> int:
    if not names:
        list_catalog()
        return 0
    if importlib.util.find_spec("huggingface_hub") is None:
        print("mesh-llm: this is a client-only install (no huggingface_hub): download models on a node",
              file=sys.stderr)
        return 2
    try:
        for name in names:
            entry = catalog.entry(name)
            download(entry)
            if with_draft and entry.draft:
                download(catalog.entry(entry.draft))
    except MeshError as exc:
        print(f"mesh-llm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mesh-llm: download interrupted; run it again to resume", file=sys.stderr)
        return 130
    return 0
