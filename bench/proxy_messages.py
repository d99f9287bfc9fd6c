"""Anthropic's /v1/messages, streamed, through the proxy vs straight to llama-server:
same node, same model, same run, same harness as bench/proxy_local.py (which measures
OpenAI's /v1/completions).

    .venv/bin/python bench/proxy_messages.py [--runs 7] [--tokens 64] [--quick]

Prints and returns: proxy_messages_tokps_ratio (proxy / direct decode tokens/s) and
proxy_messages_ttft_added_ms_p50 (median over runs of proxy TTFT - direct TTFT).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_local  # noqa: E402
from stream_timing import bench_main, stream_messages  # noqa: E402


def measure(runs: int, tokens: int) -> dict:
    return proxy_local.measure(runs, tokens, stream_messages, "proxy_messages")


def main() -> None:
    bench_main(__doc__, measure, runs=7, tokens=64)


if __name__ == "__main__":
    main()
