"""Admission time: QUIC handshake + mesh admission (secret proofs, and since issue 12
the key/channel-binding signatures), one dial after another on loopback, in one
process (both endpoints on one event loop).

    .venv/bin/python bench/admission.py [--dials 200]

Prints p50/p90 of a whole dial (connect, TLS, admission) in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.transport import MeshEndpoint


async def measure(dials: int) -> dict:
    mesh = MeshSecret.new()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            (Path(tmp) / name).mkdir()
        a = MeshEndpoint(load_or_create_identity(Path(tmp) / "a"), lambda: mesh)
        b = MeshEndpoint(load_or_create_identity(Path(tmp) / "b"), lambda: mesh)
        port = await b.listen("127.0.0.1", 0)
        times = []
        try:
            for _ in range(dials + 10):
                started = time.perf_counter()
                conn = await a.dial(f"127.0.0.1:{port}")
                times.append((time.perf_counter() - started) * 1000)
                conn.close()
        finally:
            a.close()
            b.close()
    times = sorted(times[10:])  # the first dials warm caches
    return {"admission_ms_p50": statistics.median(times), "admission_ms_p90": times[int(len(times) * 0.9)],
            "dials": dials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dials", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.dials)), indent=2))


if __name__ == "__main__":
    main()
