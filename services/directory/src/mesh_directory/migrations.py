"""Schema migrations kept in the repository: numbered .sql files under
migrations/<dialect>/ (0001_listings.sql, 0002_....sql), applied in order at start
and recorded in a `schema_migrations` table, each in its own transaction (SQLite:
BEGIN IMMEDIATE; PostgreSQL: under an advisory lock, so replicas starting together
apply each one once). Which ones to apply is a pure function (`pending`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at text NOT NULL
)"""
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available(dialect: str) -> list[Migration]:
    """The migrations shipped for `dialect` ("sqlite" or "postgresql"), in order."""
    found = []
    for entry in resources.files("mesh_directory").joinpath("migrations", dialect).iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"the {dialect} migrations are not numbered 1, 2, 3, ...: {versions}")
    return found


def pending(applied: set[int], shipped: list[Migration]) -> list[Migration]:
    """The shipped migrations not applied yet, in order. A database with a version
    this build does not ship was migrated by a newer directory: refuse it."""
    newer = applied - {m.version for m in shipped}
    if newer:
        raise RuntimeError(f"the database has schema version {max(newer)}, newer than this directory knows "
                           f"({len(shipped)}): run a newer mesh-llm directory")
    return [m for m in shipped if m.version not in applied]
