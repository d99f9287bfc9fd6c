"""The directory's unit tests run against SQLite and a real PostgreSQL too: the
server fixtures live with the integration tests' helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
from directory_postgres import directory_db, postgres_server, postgres_url  # noqa: E402, F401
