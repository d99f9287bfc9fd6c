"""A 2-node split over emulated network latency: the mesh vs stock llama.cpp RPC vs the ideal.

Two network namespaces joined only by the user-space delay link (bench/relay/delay_link.py:
every packet held RTT/2 each way, UDP and TCP alike). At each RTT:
- mesh: node A (ns A) and node B (ns B), each capped so the model needs both; decode
  tokens/s streamed straight from the host's llama-server, from inside its namespace;
- stock: `ggml-rpc-server` in ns B and `llama-server --rpc` in ns A with the same layer
  split, over TCP through the same link; the link counts its request/response **turns**
  (direction changes of packets carrying data), so `split_turns_per_token` is measured;
- ideal: 1 / (solo compute per token + turns per token × RTT).

    .venv/bin/python bench/wan.py [--rtts 0,5,10,20,40] [--tokens 24] [--anchor-rtt 10] [--quick]

--anchor-rtt: also the seed's anchor, a 3-node split (host + 2 workers, each link at that
RTT), mesh vs stock RPC vs ideal (`three_node_wan`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from meshnode import start_node  # noqa: E402
from children import in_ns, start_llama_server, start_rpc_server, stop  # noqa: E402
from stream_timing import median_spread  # noqa: E402

from meshcore.llama_bin import llama_bin_dir  # noqa: E402
from mesh_node.model_runner import offload_args  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

# The same llama-server flags for the mesh's nodes (start_node: --ctx-size 4096 --parallel 1)
# and the stock processes, one compute thread each: on a 2-core machine two 2-thread
# processes spin against each other and decode speed flips between two values from one
# stream to the next (bench/split_lan.py).
THREADS = 1
THREAD_ARGS = ("--threads", str(THREADS))
STOCK_ARGS = ["-c", "4096", "-t", str(THREADS)]
MODEL = TinySpec(name="mesh-wan-Q8_0", width=1024, heads=16, kv_heads=4, ff=2816, layers=8, dtype="q8_0")
CLIENT = """
import json, sys, time, urllib.request
port, tokens, path, repeats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def stream(n):
    body = json.dumps({"model": "%s", "prompt": "the mesh", "max_tokens": n, "stream": True, "ignore_eos": True,
                       "cache_prompt": False}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, {"Content-Type": "application/json"})
    started, stamps = time.monotonic(), []
    with urllib.request.urlopen(req, timeout=600) as resp:
        for line in resp:
            if line.startswith(b"data: ") and (b'"content"' in line or b'"text"' in line):
                stamps.append(time.monotonic())
    return started, stamps
stream(4)
runs = []
for _ in range(repeats):
    t0, s = stream(tokens)
    runs.append({"tokps": (len(s) - 1) / (s[-1] - s[0]), "tokens": len(s), "ttft_ms": (s[0] - t0) * 1000})
print(json.dumps(runs))
""" % "mesh-wan-Q8_0"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


REPEATS = 3  # streams per point after the warm-up one (--repeats); medians, with their spread


def stream_stats(ns: str, port: int, tokens: int, path: str = "/completion") -> dict:
    """Streamed decode speed and time to first token, from inside `ns` (retried while the
    server there is still starting): the median of REPEATS streams, and each one's
    spread ({median, min, max}) under `tokps_spread` and `ttft_ms_spread`."""
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run(in_ns(ns, sys.executable, "-c", CLIENT, str(port), str(tokens), path, str(REPEATS)),
                             capture_output=True, text=True, timeout=900)
        if out.returncode == 0:
            runs = json.loads(out.stdout)
            tokps, ttft = [r["tokps"] for r in runs], [r["ttft_ms"] for r in runs]
            return {"tokps": statistics.median(tokps), "ttft_ms": statistics.median(ttft),
                    "tokps_spread": median_spread(tokps), "ttft_ms_spread": median_spread(ttft)}
        if time.monotonic() > deadline:
            raise RuntimeError(out.stderr.strip().splitlines()[-1])
        time.sleep(1)


def set_repeats(n: int) -> None:
    global REPEATS
    REPEATS = n


def decode_tokps(ns: str, port: int, tokens: int) -> dict:
    return stream_stats(ns, port, tokens)


def wait_split(node, timeout: float = 300):  # noqa: ANN001, ANN201 - a MeshNode; its status
    """The host's status once the split serves (asked over its unix socket: its API is in its namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"the node exited with code {node.proc.returncode}: {node.log()[-1500:]}")
        try:
            status = node.node_status()
            if status.models and status.models[0].state == 2 and status.models[0].split:
                return status
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the split did not serve:\n{node.log()[-2000:]}")


PATHS = {1: "direct", 2: "quic"}  # meshcore.api node_pb2.RpcPath


def link_stats(before, after, tokens: int) -> dict:  # noqa: ANN001 - pb.RpcLink
    """The host's link to its worker over a measurement: its path, and reads and bytes a token."""
    return {"path": PATHS.get(after.path, "none"), "path_note": after.path_note,
            "worker_reads_per_token": round((after.reads_from_worker - before.reads_from_worker) / tokens, 2),
            "bytes_per_token": [round((after.bytes_to_worker - before.bytes_to_worker) / tokens),
                                round((after.bytes_from_worker - before.bytes_from_worker) / tokens)]}


class Link:
    def __init__(self, ns_a: str, ns_b: str, net: str, rtt_ms: float, tag: str | None = None) -> None:
        self.tag = tag or str(os.getpid() % 10000) + net.rsplit(".", 1)[-1]
        self.proc = subprocess.Popen([sys.executable, "-m", "relay.delay_link", "--ns-a", ns_a, "--ns-b", ns_b,
                                      "--delay-ms", str(rtt_ms / 2), "--net", net, "--tag", self.tag], cwd=HERE,
                                     env={**os.environ, "PYTHONPATH": str(HERE)}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def turns(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def one_rtt(tmp: Path, model: Path, bin_dir: Path, rtt: float, tokens: int, n: int) -> dict:
    ns_a, ns_b, net = f"wana{n}", f"wanb{n}", f"10.204.{n}"
    sh("ip", "netns", "add", ns_a)
    sh("ip", "netns", "add", ns_b)
    link = None
    try:
        link = Link(ns_a, ns_b, net, rtt)
        cap = f"{1.1 * model.stat().st_size * 0.6 / (1 << 30):.5f}"
        a = start_node(tmp / f"a{n}", [model], "--max-vram", cap, "--parallel", "1", *THREAD_ARGS, wait=False,
                       prefix=tuple(in_ns(ns_a)))
        b = None
        try:
            b = start_node(tmp / f"b{n}", [model], "--max-vram", f"{float(cap) * 0.99:.5f}", "--parallel", "1",
                           *THREAD_ARGS,
                           "--join", a.wait_token(), wait=False, prefix=tuple(in_ns(ns_b)))
            status = wait_split(a)
            layers = tuple(p.layers for p in status.models[0].split)
            before, turns_before = a.node_status().rpc_links[0], link.turns()
            mesh = decode_tokps(ns_a, status.models[0].port, tokens)
            mesh.update(link_stats(before, a.node_status().rpc_links[0], REPEATS * tokens + 4))
            mesh["turns_per_token"] = round((link.turns() - turns_before) / 2 / (REPEATS * tokens + 4), 2)
        finally:
            if b is not None:
                b.stop()
            a.stop()
        rpc = ref = None
        try:
            rpc = start_rpc_server(bin_dir, f"{net}.2", 50052, tmp / f"rpc{n}.log", ns_b, threads=THREADS)
            ref = start_llama_server(bin_dir, model, 28080, [*STOCK_ARGS, "--rpc", f"{net}.2:50052",
                                                             *offload_args(layers, gpu=False)], tmp / f"ref{n}.log", ns_a)
            before = link.turns()
            stock = decode_tokps(ns_a, 28080, tokens)
            turns = (link.turns() - before) / 2 / (REPEATS * tokens + 4)  # every stream's tokens (warm-up 4)
        finally:
            stop(ref, rpc)
        remote = remote_stats(tmp, model, n, ns_a, ns_b, tokens)
        return {"mesh": mesh, "stock": stock, "turns_per_token": turns, "layers": list(layers), **remote}
    finally:
        if link is not None:
            link.close()
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def three_nodes(tmp: Path, model: Path, bin_dir: Path, rtt: float, tokens: int) -> dict:
    """The seed's anchor: a 3-node split, the host linked to each worker at `rtt` (a star:
    llama.cpp's host talks to every worker itself; the workers reach each other through
    the host's namespace, 2 × rtt, for gossip only). Mesh vs stock RPC, same layers."""
    ns_h, ns_b, ns_c, net_b, net_c = "wan3h", "wan3b", "wan3c", "10.205.1", "10.205.2"
    for ns in (ns_h, ns_b, ns_c):
        sh("ip", "netns", "add", ns)
    links: list[Link] = []
    try:
        links = [Link(ns_h, ns_b, net_b, rtt), Link(ns_h, ns_c, net_c, rtt)]
        sh("ip", "netns", "exec", ns_h, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", ns_b, "route", "add", f"{net_c}.0/24", "dev", f"dlb{links[0].tag}")
        sh("ip", "-n", ns_c, "route", "add", f"{net_b}.0/24", "dev", f"dlb{links[1].tag}")
        cap = f"{1.1 * model.stat().st_size * 0.4 / (1 << 30):.5f}"  # three nodes needed
        a = start_node(tmp / "a3", [model], "--max-vram", cap, "--parallel", "1", *THREAD_ARGS, wait=False,
                       prefix=tuple(in_ns(ns_h)))
        others = []
        try:
            token = a.wait_token()
            for ns, name in ((ns_b, "b3"), (ns_c, "c3")):
                others.append(start_node(tmp / name, [model], "--max-vram", f"{float(cap) * 0.99:.5f}",
                                         "--parallel", "1", *THREAD_ARGS, "--join", token, wait=False,
                                         prefix=tuple(in_ns(ns))))
            status = wait_split(a, timeout=600)
            layers = tuple(p.layers for p in status.models[0].split)
            mesh = decode_tokps(ns_h, status.models[0].port, tokens)
        finally:
            for node in others:
                node.stop()
            a.stop()
        if len(layers) != 3:
            raise RuntimeError(f"expected a 3-node split, got layers {layers}")
        rpcs: list = []
        ref = None
        try:
            for ns, net in ((ns_b, net_b), (ns_c, net_c)):
                rpcs.append(start_rpc_server(bin_dir, f"{net}.2", 50052, tmp / f"rpc3{ns}.log", ns, threads=THREADS))
            ref = start_llama_server(bin_dir, model, 28082, [*STOCK_ARGS, "--rpc", f"{net_b}.2:50052,{net_c}.2:50052",
                                                             *offload_args(layers, gpu=False)], tmp / "ref3.log", ns_h)
            before = sum(link.turns() for link in links)
            stock = decode_tokps(ns_h, 28082, tokens)
            turns = (sum(link.turns() for link in links) - before) / 2 / (REPEATS * tokens + 4)
        finally:
            stop(ref, *rpcs)
        return {"mesh": mesh, "stock": stock, "turns_per_token": turns, "layers": list(layers)}
    finally:
        for link in links:
            link.close()
        for ns in (ns_h, ns_b, ns_c):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def remote_stats(tmp: Path, model: Path, n: int, ns_a: str, ns_b: str, tokens: int) -> dict:
    """Node B serves the model alone; node A (no model) answers for it through its API: the
    remote hop over the link (TTFT pays the RTT, decoding should not)."""
    b = start_node(tmp / f"rb{n}", [model], "--parallel", "1", *THREAD_ARGS, wait=False, prefix=tuple(in_ns(ns_b)))
    a = None
    try:
        deadline = time.monotonic() + 300
        b.wait_token()
        while not (b.node_status().models and b.node_status().models[0].state == 2):
            if time.monotonic() > deadline or b.proc.poll() is not None:
                raise TimeoutError(b.log()[-2000:])
            time.sleep(0.3)
        a = start_node(tmp / f"ra{n}", [], "--join", b.wait_token(), wait=False, prefix=tuple(in_ns(ns_a)))
        a.wait_token()
        while not any(r.model_id == MODEL.name and r.state == 2 for r in a.node_status().routes.routes):
            if time.monotonic() > deadline or a.proc.poll() is not None:
                raise TimeoutError(a.log()[-2000:])
            time.sleep(0.3)
        remote = stream_stats(ns_a, a.api_port, tokens, "/v1/completions")
        direct = stream_stats(ns_b, b.node_status().models[0].port, tokens)
        return {"remote_tokps": remote["tokps"], "remote_ttft_ms": remote["ttft_ms"],
                "direct_tokps": direct["tokps"], "direct_ttft_ms": direct["ttft_ms"]}
    finally:
        if a is not None:
            a.stop()
        b.stop()


def solo_ms_per_token(tmp: Path, model: Path, bin_dir: Path, tokens: int) -> float:
    sh("ip", "netns", "add", "wansolo")
    try:
        sh("ip", "-n", "wansolo", "link", "set", "lo", "up")
        solo = start_llama_server(bin_dir, model, 28081, STOCK_ARGS, tmp / "solo.log", "wansolo")
        try:
            return 1000 / decode_tokps("wansolo", 28081, tokens)["tokps"]
        finally:
            stop(solo)
    finally:
        subprocess.run(["ip", "netns", "del", "wansolo"], capture_output=True)


def measure(rtts: list[float], tokens: int, anchor_rtt: float = 0.0) -> dict:
    bin_dir = llama_bin_dir()
    with tempfile.TemporaryDirectory(prefix="mesh-wan-") as tmp_text:
        tmp = Path(tmp_text)
        model = generate(MODEL, tmp / "models")
        compute_ms = solo_ms_per_token(tmp, model, bin_dir, tokens)
        rows = {}
        for n, rtt in enumerate(rtts, start=1):
            rows[rtt] = one_rtt(tmp, model, bin_dir, rtt, tokens, n)
            print(json.dumps({"rtt_ms": rtt, **rows[rtt]}), file=sys.stderr)
        three = three_nodes(tmp, model, bin_dir, anchor_rtt, tokens) if anchor_rtt > 0 else None
        if three is not None:
            print(json.dumps({"three_nodes_rtt_ms": anchor_rtt, **three}), file=sys.stderr)
    k = sorted(r["turns_per_token"] for r in rows.values())[len(rows) // 2]
    key = lambda r: str(int(r)) if float(r).is_integer() else str(r)  # noqa: E731
    return {
        "split_wan_tokps": {key(r): round(v["mesh"]["tokps"], 2) for r, v in rows.items()},
        "stock_rpc_wan_tokps": {key(r): round(v["stock"]["tokps"], 2) for r, v in rows.items()},
        "split_wan_tokps_spread": {key(r): v["mesh"]["tokps_spread"] for r, v in rows.items()},
        "stock_rpc_wan_tokps_spread": {key(r): v["stock"]["tokps_spread"] for r, v in rows.items()},
        "ideal_wan_tokps": {key(r): round(1000 / (compute_ms + k * r), 2) for r in rows},
        "split_turns_per_token": round(k, 2),
        "remote_wan_tokps": {key(r): round(v["remote_tokps"], 2) for r, v in rows.items()},
        "remote_wan_ttft_ms": {key(r): round(v["remote_ttft_ms"], 1) for r, v in rows.items()},
        "direct_tokps": {key(r): round(v["direct_tokps"], 2) for r, v in rows.items()},
        "direct_ttft_ms": {key(r): round(v["direct_ttft_ms"], 1) for r, v in rows.items()},
        "solo_ms_per_token": round(compute_ms, 2),
        "tokens": tokens, "repeats": REPEATS, "model": MODEL.name, "layers": next(iter(rows.values()))["layers"],
        **({"three_node_wan": {"rtt_ms_per_hop": anchor_rtt, "solo_tokps": round(1000 / compute_ms, 2),
                               "mesh_tokps": round(three["mesh"]["tokps"], 2),
                               "stock_rpc_tokps": round(three["stock"]["tokps"], 2),
                               "mesh_tokps_spread": three["mesh"]["tokps_spread"],
                               "stock_rpc_tokps_spread": three["stock"]["tokps_spread"],
                               "turns_per_token": round(three["turns_per_token"], 2),
                               "ideal_tokps": round(1000 / (compute_ms + three["turns_per_token"] * anchor_rtt), 2),
                               "layers": three["layers"]}} if three is not None else {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtts", default="0,5,10,20,40")
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--anchor-rtt", type=float, default=10.0,
                   help="also a 3-node split at this RTT per hop (the seed's anchor); 0: skip")
    p.add_argument("--repeats", type=int, default=REPEATS, help="streams per point (median and spread)")
    p.add_argument("--quick", action="store_true", help="RTT 0 and 20 ms, 12 tokens, one stream, no 3-node run")
    a = p.parse_args()
    set_repeats(1 if a.quick else a.repeats)
    rtts = [0.0, 20.0] if a.quick else [float(x) for x in a.rtts.split(",")]
    print(json.dumps(measure(rtts, 12 if a.quick else a.tokens, 0.0 if a.quick else a.anchor_rtt), indent=2))


if __name__ == "__main__":
    main()
