"""A smoke of the relay benchmark's parts (bench/relay): the synthetic upstream streams
stamped chunks at its rate, and the load generator counts them and their delays."""

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from relay import load, upstream  # noqa: E402


def test_upstream_streams_stamped_chunks_that_the_load_generator_counts() -> None:
    async def scenario() -> dict:
        server = await asyncio.start_server(lambda r, w: upstream.serve(r, w, 5, 50.0), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            started = time.monotonic()
            result = await load.run(port, "/v1/chat/completions", streams=3, tokens=5, rate=50.0, ramp=0.01)
            result["seconds"] = time.monotonic() - started
            return result
    result = asyncio.run(scenario())
    assert result["errors"] == 0 and result["chunks"] == 15
    assert result["seconds"] >= 4 / 50.0              # 5 chunks at 50 a second: paced, not at once
    assert 0 <= result["delay_ms_p50"] < 1000 and result["ttft_ms_p50"] > 0


def test_percentile_of_nothing_is_nan() -> None:
    assert load.percentile([], 0.5) != load.percentile([], 0.5)
    assert load.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 3.0
