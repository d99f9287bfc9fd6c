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


def test_sequential_streams_do_not_overlap_and_their_rate_is_measured() -> None:
    async def scenario() -> tuple[dict, float]:
        server = await asyncio.start_server(lambda r, w: upstream.serve(r, w, 5, 100.0), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            started = time.monotonic()
            result = await load.run(port, "/v1/chat/completions", streams=3, tokens=5, rate=100.0, ramp=0.0,
                                    sequential=True)
            return result, time.monotonic() - started
    result, seconds = asyncio.run(scenario())
    assert result["errors"] == 0 and result["chunks"] == 15
    assert seconds >= 3 * 4 / 100.0, "three streams of 5 chunks at 100/s, one after another"
    assert 50 < result["chunks_per_s_p50"] < 150


def test_the_upstream_answers_a_get_as_healthy() -> None:
    async def scenario() -> bytes:
        server = await asyncio.start_server(lambda r, w: upstream.serve(r, w, 5, 50.0), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            return answer
    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b'{"status":"ok"}')


def test_the_stand_in_llama_server_takes_llama_servers_arguments(tmp_path: Path) -> None:
    import socket
    import subprocess
    import urllib.request

    from relay.standin_llama import bin_dir

    from meshcore.llama_bin import LLAMA_SERVER, RPC_SERVER

    folder = bin_dir(tmp_path)
    assert (folder / RPC_SERVER).resolve().is_file(), "the other binaries are the real ones"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(folder / LLAMA_SERVER), "--model", "m.gguf", "--host", "127.0.0.1", "--port",
                             str(port), "--ctx-size", "4096", "--parallel", "2", "-ngl", "99"])
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the stand-in never answered /health")
    finally:
        proc.terminate()
        proc.wait(10)
