"""A real PostgreSQL server for the directory's tests and benchmark: Debian's
server binaries (scripts/postgres-deps.sh installs them when missing), run as an
unprivileged user (`postgres` when we are root: initdb refuses root) in a temporary
folder, on a free port on 127.0.0.1 with password authentication; one fresh
database per test. Fixtures: `postgres_server` (one per session) and
`postgres_url` (a new database)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from meshnode import free_port

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "mesh", "s3cret-directory-pw"


class PostgresUnavailable(Exception):
    pass


def bin_dir() -> Path:
    """Where initdb and pg_ctl are, installing Debian's postgresql if they are missing."""
    def find() -> Path | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
        if found:
            return Path(found[-1]).parent
        on_path = shutil.which("pg_ctl")
        return Path(on_path).resolve().parent if on_path else None
    where = find()
    if where is None:
        setup = subprocess.run([str(ROOT / "scripts" / "postgres-deps.sh")], capture_output=True, text=True)
        where = find()
        if where is None:
            raise PostgresUnavailable("the directory's PostgreSQL tests need PostgreSQL's server binaries, and "
                                      f"they could not be installed: {setup.stderr.strip() or 'no pg_ctl found'}")
    return where


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        self.bin = bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="mesh-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", account.pw_name, "--"]
        (self.dir / "pw").write_text(PASSWORD)
        if self.as_user:
            os.chown(self.dir / "pw", pwd.getpwnam(self.as_user[2]).pw_uid, -1)
        self.run("initdb", "-D", str(self.dir / "data"), "-U", USER, "--pwfile", str(self.dir / "pw"),
                 "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        if not durable:  # a test's data need not survive a power cut
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-o", options, "-w", "start")
        self.count = itertools.count(1)

    def run(self, tool: str, *args: str) -> None:
        out = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise PostgresUnavailable(f"{tool} failed: {out.stderr.strip()} {log[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"directory_{next(self.count)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot start a PostgreSQL server for the directory's tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def directory_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database for a directory: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "dir.sqlite3")
    return request.getfixturevalue("postgres_url")
