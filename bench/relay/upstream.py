"""A synthetic llama-server for relay benchmarks: answers any GET with a health answer and any POST with an SSE stream of
`tokens` chunks at `rate` chunks/s (chunked transfer encoding, as llama-server), each
chunk carrying the wall-clock nanoseconds it was written at, so a client can tell what
every hop in between added. Negligible CPU per chunk: raw asyncio streams, no framework.

    python -m relay.upstream --port P [--tokens N --rate R]   (the request body's
    "max_tokens" and "rate" override them)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

from relay import use_uvloop

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int, rate: float) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET "):  # /health, /metrics: what a node agent asks its llama-server
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
                         b"Connection: close\r\n\r\n{\"status\":\"ok\"}")
            await writer.drain()
            return
        length = _LENGTH.search(head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        ask = json.loads(body or b"{}")
        n, r = int(ask.get("max_tokens", tokens)), float(ask.get("rate", rate))
        writer.write(HEAD)
        gap, start = 1.0 / r, time.monotonic()
        for i in range(n):
            writer.write(chunk(b'data: {"choices":[{"index":0,"delta":{"content":"tok"}}],"t":%d}\n\n'
                               % time.time_ns()))
            await writer.drain()
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main_async(port: int, tokens: int, rate: float) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, tokens, rate), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0)
    a = p.parse_args()
    use_uvloop()
    asyncio.run(main_async(a.port, a.tokens, a.rate))


if __name__ == "__main__":
    main()
