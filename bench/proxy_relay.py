"""The proxy measured alone: a synthetic SSE upstream (bench/relay/upstream.py: N chunks at
a set rate, each stamped with the time it was written) behind the real proxy, the same
load straight to the upstream, and through nginx (Debian's; proxy_buffering off, one
worker) as the ceiling. At each concurrency level the load generator (its own process)
runs `streams` streams of `--tokens` chunks at `--rate` chunks/s and reports each chunk's
delay since the upstream wrote it and each stream's time to first chunk.

Figures: `proxy_relay_max_streams` — the most streams with p99 added chunk delay ≤ 5 ms and
p99 added TTFT ≤ 10 ms vs direct, and no errors; CPU per relayed chunk of the proxy
(`proxy_relay_cpu_us_per_chunk`) and of nginx (`nginx_relay_cpu_us_per_chunk`) at the
highest level both held; the proxy's memory per stream. Then the same CPU split in two
(`proxy_relay_cost_split`, `nginx_relay_cost_split`): at the level nearest 200 streams, the
run above and one of a tenth of the chunks per stream give the cost of one more chunk
(`us_per_extra_chunk`: what holding a stream costs) and of one request (`us_per_request`:
accepting, routing, connecting, the response head and the end), each as user and system
time. The headline per-chunk figure mixes both at `--tokens` chunks per stream.

    .venv/bin/python bench/proxy_relay.py [--levels 50,100,...] [--tokens 100] [--rate 20] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "tests" / "integration"))
from meshnode import free_port  # noqa: E402

from meshcore.home import Home  # noqa: E402

NGINX_CONF = """
worker_processes 1;
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_cache off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


def pythonpath() -> str:
    """bench/ for the relay package, after any PYTHONPATH given (to measure another checkout's proxy:
    PYTHONPATH=OTHER/libs/meshcore/src:OTHER/services/proxy/src)."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(HERE)) if p)


def spawn(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=HERE,
                            env={**os.environ, "PYTHONPATH": pythonpath(), **(env or {})})


def wait_port(port: int, timeout: float = 30) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds of `proc` and its children."""
    times = [p.cpu_times() for p in (proc, *proc.children(recursive=True)) if p.is_running()]
    return sum(t.user for t in times), sum(t.system for t in times)


def load(port: int, streams: int, tokens: int, rate: float, watch: psutil.Process | None) -> dict:
    before = cpu_s(watch) if watch else (0.0, 0.0)
    out = subprocess.run([sys.executable, "-m", "relay.load", "--port", str(port), "--streams", str(streams),
                          "--tokens", str(tokens), "--rate", str(rate), "--ramp", "2"], capture_output=True,
                         text=True, cwd=HERE, env={**os.environ, "PYTHONPATH": pythonpath()}, check=True)
    result = json.loads(out.stdout)
    if watch:
        user, system = (b - a for a, b in zip(before, cpu_s(watch)))
        chunks = max(result["chunks"], 1)
        result["cpu_us_per_chunk"] = (user + system) * 1e6 / chunks
        result["user_us_per_chunk"], result["system_us_per_chunk"] = user * 1e6 / chunks, system * 1e6 / chunks
        result["rss_mb"] = sum(p.memory_info().rss for p in [watch, *watch.children(recursive=True)]) / 1e6
    return result


def cost_split(long: dict, short: dict, streams: int) -> dict:
    """Per extra chunk and per request (µs; cpu, user, system) from a run of many chunks per
    stream and one of few: total = streams × per_request + chunks × per_extra_chunk."""
    out = {}
    for kind in ("cpu", "user", "system"):
        total_long = long[f"{kind}_us_per_chunk"] * long["chunks"]
        total_short = short[f"{kind}_us_per_chunk"] * short["chunks"]
        extra = (total_long - total_short) / max(long["chunks"] - short["chunks"], 1)
        out[f"{kind}_us_per_extra_chunk"] = extra
        out[f"{kind}_us_per_request"] = (total_short - extra * short["chunks"]) / streams
    return out


def held(ref: dict, got: dict) -> bool:
    return (got["errors"] == 0 and got["delay_ms_p99"] - ref["delay_ms_p99"] <= 5.0
            and got["ttft_ms_p99"] - ref["ttft_ms_p99"] <= 10.0)


@dataclass(frozen=True)
class Stack:
    """The synthetic upstream, the stand-in node agent, the real proxy, and nginx (None
    where it is not installed), each on its own port, started and warmed up."""

    up_port: int
    proxy_port: int
    proxy: subprocess.Popen
    nginx_port: int
    nginx: subprocess.Popen | None


@contextlib.contextmanager
def relay_stack(prefix: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_text:
        tmp = Path(tmp_text)
        up_port, proxy_port, nginx_port = free_port(), free_port(), free_port()
        home = tmp / "home"
        procs = [spawn([sys.executable, "-m", "relay.upstream", "--port", str(up_port)], tmp / "upstream.log"),
                 spawn([sys.executable, "-m", "relay.agent", "--home", str(home), "--upstream-port", str(up_port)],
                       tmp / "agent.log")]
        try:
            wait_port(up_port)
            while not Home(home).node_socket.exists():
                time.sleep(0.05)
            proxy = spawn([sys.executable, "-m", "mesh_proxy", "--config",
                           json.dumps({"home": str(home), "port": proxy_port})], tmp / "proxy.log")
            procs.append(proxy)
            nginx = None
            nginx_bin = nginx_binary()
            if nginx_bin:
                (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, upstream=up_port))
                nginx = subprocess.Popen([nginx_bin, "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"],
                                         stdout=open(tmp / "nginx.log", "wb"), stderr=subprocess.STDOUT)
                procs.append(nginx)
                wait_port(nginx_port)
            wait_port(proxy_port)
            time.sleep(1.0)
            for port in (up_port, proxy_port) + ((nginx_port,) if nginx is not None else ()):
                load(port, 5, 5, 50.0, None)  # warm up (first-request imports, connection pools)
            yield Stack(up_port, proxy_port, proxy, nginx_port, nginx)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()


def measure(levels: list[int], tokens: int, rate: float) -> dict:
    with relay_stack("mesh-relay-") as stack:
        up_port, proxy_port, nginx_port, nginx = stack.up_port, stack.proxy_port, stack.nginx_port, stack.nginx
        proxy_ps = psutil.Process(stack.proxy.pid)
        idle_rss = proxy_ps.memory_info().rss / 1e6
        rows = []
        for n in levels:
            row = {"streams": n, "direct": load(up_port, n, tokens, rate, None),
                   "proxy": load(proxy_port, n, tokens, rate, proxy_ps)}
            if nginx is not None:
                row["nginx"] = load(nginx_port, n, tokens, rate, psutil.Process(nginx.pid))
            rows.append(row)
            print(json.dumps({k: (v if not isinstance(v, dict) else {x: (round(y, 2) if isinstance(y, float) else y)
                              for x, y in v.items() if x != "first_errors"}) for k, v in row.items()}),
                  file=sys.stderr)
        split_row = min(rows, key=lambda r: abs(r["streams"] - 200))
        n, few = split_row["streams"], max(1, tokens // 10)
        splits = {"proxy": cost_split(split_row["proxy"], load(proxy_port, n, few, rate, proxy_ps), n)}
        if nginx is not None:
            splits["nginx"] = cost_split(split_row["nginx"], load(nginx_port, n, few, rate,
                                                                  psutil.Process(nginx.pid)), n)
        print(json.dumps({"cost_split_streams": n, **{k: {x: round(y, 1) for x, y in v.items()}
                                                      for k, v in splits.items()}}), file=sys.stderr)
    ok = [r for r in rows if held(r["direct"], r["proxy"])]
    top = max(ok, key=lambda r: r["streams"]) if ok else rows[0]
    return {
        "proxy_relay_max_streams": top["streams"] if ok else 0,
        "proxy_relay_cpu_us_per_chunk": top["proxy"]["cpu_us_per_chunk"],
        "nginx_relay_cpu_us_per_chunk": top["nginx"]["cpu_us_per_chunk"] if "nginx" in top else None,
        "proxy_relay_mb_per_stream": (top["proxy"]["rss_mb"] - idle_rss) / top["streams"],
        "proxy_relay_levels": [{"streams": r["streams"],
                                "added_delay_ms_p99": r["proxy"]["delay_ms_p99"] - r["direct"]["delay_ms_p99"],
                                "added_ttft_ms_p99": r["proxy"]["ttft_ms_p99"] - r["direct"]["ttft_ms_p99"],
                                "proxy_cpu_us_per_chunk": r["proxy"]["cpu_us_per_chunk"],
                                "proxy_user_us_per_chunk": r["proxy"]["user_us_per_chunk"],
                                "proxy_system_us_per_chunk": r["proxy"]["system_us_per_chunk"],
                                "nginx_added_delay_ms_p99": (r["nginx"]["delay_ms_p99"] - r["direct"]["delay_ms_p99"])
                                if "nginx" in r else None,
                                "nginx_cpu_us_per_chunk": r["nginx"]["cpu_us_per_chunk"] if "nginx" in r else None,
                                "nginx_user_us_per_chunk": r["nginx"]["user_us_per_chunk"] if "nginx" in r else None,
                                "nginx_system_us_per_chunk": r["nginx"]["system_us_per_chunk"] if "nginx" in r else None,
                                "errors": r["proxy"]["errors"]} for r in rows],
        "proxy_relay_cpu_us_per_extra_chunk": splits["proxy"]["cpu_us_per_extra_chunk"],
        "nginx_relay_cpu_us_per_extra_chunk": splits["nginx"]["cpu_us_per_extra_chunk"] if "nginx" in splits else None,
        "proxy_relay_cpu_us_per_request": splits["proxy"]["cpu_us_per_request"],
        "nginx_relay_cpu_us_per_request": splits["nginx"]["cpu_us_per_request"] if "nginx" in splits else None,
        "proxy_relay_cost_split": splits["proxy"],
        "nginx_relay_cost_split": splits.get("nginx"),
        "cost_split_streams": n,
        "tokens": tokens, "rate": rate,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="50,100,200,400,700,1000")
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--quick", action="store_true", help="levels 50,200 and 40 tokens")
    a = p.parse_args()
    levels = [50, 200] if a.quick else [int(x) for x in a.levels.split(",")]
    print(json.dumps(measure(levels, 40 if a.quick else a.tokens, a.rate), indent=2))


if __name__ == "__main__":
    main()
