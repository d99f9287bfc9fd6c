"""A local HTTP server that answers like the Hugging Face hub for file downloads (what
`huggingface_hub.hf_hub_download` and `get_hf_file_metadata` ask): HEAD and GET on
`/{repo}/resolve/{revision}/{file}` with `X-Repo-Commit`, the LFS `X-Linked-Etag` (the
file's sha256) and `X-Linked-Size`, and byte ranges (resume). Tests point `HF_ENDPOINT`
at it; no test downloads from the internet.

Knobs: `require_token` (401 without `Authorization: Bearer <token>`), `cut_after` (close
the connection after that many body bytes, and then every connection at once until
`down` is set back to False: the network goes away mid-download),
`corrupt` (serve other bytes than the sha256 says), `etags` (send this ETag for a file
instead of its sha256: a hub, or a man in the middle, that lies), `requests` (what was asked).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)   # (repo, filename) -> bytes
    require_token: str = ""
    cut_after: int | None = None
    down: bool = False
    corrupt: set[str] = field(default_factory=set)
    etags: dict[str, str] = field(default_factory=dict)  # filename -> the ETag sent for it
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, range)

    def add(self, repo: str, filename: str, data: bytes) -> None:
        self.files[(repo, filename)] = data

    def add_file(self, repo: str, path: Path) -> None:
        self.add(repo, path.name, path.read_bytes())

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                rng = self.headers.get("Range", "")
                hub.requests.append((self.command, self.path, rng))
                if hub.down:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                match = re.match(r"^/(.+?/.+?)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
                if hub.require_token and self.headers.get("Authorization") != f"Bearer {hub.require_token}":
                    return self.fail(401, "Invalid credentials in Authorization header")
                if not match or (match.group(1), match.group(3)) not in hub.files:
                    if match and not any(repo == match.group(1) for repo, _ in hub.files):
                        return self.fail(404, "Repository not found", "RepoNotFound")
                    return self.fail(404, "Entry not found", "EntryNotFound")
                name = match.group(3)
                data = hub.files[(match.group(1), name)]
                sha = hashlib.sha256(data).hexdigest()
                if name in hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                if rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                etag = hub.etags.get(name, sha)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                payload = data[start:]
                if hub.cut_after is not None and len(payload) > hub.cut_after:
                    self.wfile.write(payload[:hub.cut_after])
                    hub.cut_after, hub.down = None, True
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(payload)

            def fail(self, status: int, message: str, code: str = "") -> None:
                body = f'{{"error": "{message}"}}'.encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
