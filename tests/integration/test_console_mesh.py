"""The console of a 3-node mesh in a real browser: the topology shows every member with
its role and the split (host, worker, layers), memory meters match /api/status, a killed
node turns dead on the page without a reload; page weight and event-to-page latency are
measured; screenshots at 375 px and 1400 px go to tests/artifacts/console/ for review."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from conftest import GQA_Q4KM
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home
from meshnode import MeshNode, http_json, start_node

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
MODEL = GQA_Q4KM.name


def report_demand(node: MeshNode, model: str, total: int) -> None:
    with grpc.insecure_channel(Home(node.home).grpc_target) as channel:
        node_pb2_grpc.NodeAgentStub(channel).ReportDemand(pb.DemandReport(requests={model: total}), timeout=5)


def test_topology_meters_and_live_updates_of_a_three_node_mesh(tmp_path: Path, real_models: dict[str, Path],
                                                              browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    model = real_models[MODEL]
    cap = f"{1.1 * model.stat().st_size * 0.6 / (1 << 30):.5f}"
    a = start_node(tmp_path / "a", [model], "--max-vram", cap, wait=False)
    nodes = [a]
    try:
        token = a.wait_token()
        b = start_node(tmp_path / "b", [model], "--max-vram", f"{float(cap) * 0.99:.5f}", "--join", token, wait=False)
        c = start_node(tmp_path / "c", [], "--join", token, "--max-vram", "0.05", wait=False)
        nodes += [b, c]
        for n in (a, b):
            n.wait_serving([MODEL], timeout=120)
        ids = {n.node_status().node_id: n for n in nodes}
        c_id = c.node_status().node_id
        wait = WebDriverWait(browser, 30)
        browser.set_window_size(1400, 1000)
        browser.get(a.console + "/")

        def roles() -> dict[str, str]:  # read in one script: the page redraws while the test looks
            return browser.execute_script("""return Object.fromEntries([...document.querySelectorAll(
                '#topology g[data-node-id]')].map((g) => [g.dataset.nodeId, g.dataset.role]));""")

        def texts(selector: str) -> list[str]:
            return browser.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", selector)
        wait.until(lambda d: set(roles()) == set(ids) and sorted(roles().values()) == ["host", "standby", "worker"])
        host_id = next(i for i, r in roles().items() if r == "host")
        worker_id = next(i for i, r in roles().items() if r == "worker")
        assert browser.execute_script("return document.querySelectorAll(arguments[0]).length",
                                      f"#topology line.rpc[data-host='{host_id}'][data-worker='{worker_id}']") == 1
        labels = texts("#topology text.rpc")
        assert any(MODEL in t and "layers" in t for t in labels), labels
        if host_id == a.node_status().node_id:  # the host's console shows the RPC link's live rate
            wait.until(lambda d: any("/s" in t for t in texts("#topology text.rpc")))

        # One memory meter per serving member, each matching /api/status, on one scale.
        status = http_json(f"{a.console}/api/status")[1]
        offered = {status["node_id"]: status["my_vram_gb"], **{p["id"]: p["vram_gb"] for p in status["peers"]}}
        meters = browser.execute_script("""return Object.fromEntries([...document.querySelectorAll('[role=meter]')]
            .map((m) => [m.dataset.nodeId, [m.getAttribute('aria-valuemax'), m.getAttribute('aria-label')]]));""")
        assert set(meters) == set(ids)
        for node_id, (top, label) in meters.items():
            assert float(top) == round(offered[node_id], 2) and "offered" in label
        # The bars are drawn under the page's CSP (no style attributes: widths are set through the DOM).
        widths = browser.execute_script("return [...document.querySelectorAll('[role=meter] .offered')]"
                                        ".map((s) => s.getBoundingClientRect().width)")
        assert len(widths) == len(ids) and max(widths) > 0, widths

        weight = browser.execute_script("""
            const nav = performance.getEntriesByType('navigation')[0];
            return nav.transferSize + performance.getEntriesByType('resource')
              .filter((r) => !r.name.includes('/api/')).reduce((n, r) => n + r.transferSize, 0);""")
        print(f"\nconsole page weight on first load: {weight} bytes")
        assert 0 < weight < 200_000

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "console-1400.png"))
        browser.set_window_size(375, 900)
        time.sleep(0.5)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.save_screenshot(str(ARTIFACTS / "console-375.png"))
        browser.set_window_size(1400, 1000)

        # Event on the node -> the page shows it: demand reported to the node agent.
        latencies = []
        for k in range(1, 8):
            sent = [0.0]

            def later(total: int = k) -> None:
                time.sleep(0.3)
                sent[0] = time.time() * 1000
                report_demand(a, "latency-probe", total)
            thread = threading.Thread(target=later)
            thread.start()
            shown = browser.execute_async_script("""
                const [want, done] = [arguments[0], arguments[arguments.length - 1]];
                const check = () => {
                  const s = window.meshConsole.latest;
                  const d = s && (s.demand || []).find((x) => x.model === 'latency-probe');
                  if (d && d.requests_per_min >= want) done(window.meshConsole.lastRender); else setTimeout(check, 2);
                };
                check();""", k)
            thread.join()
            latencies.append(shown - sent[0])
        p50 = statistics.median(latencies)
        print(f"node event -> page shows it: p50 {p50:.0f} ms (all: {[round(x) for x in latencies]})")
        assert all(x > -5 for x in latencies)

        # A killed member turns dead on the page, without a reload.
        c.kill_hard()
        wait.until(lambda d: roles().get(c_id) == "dead")
        assert roles()[host_id] == "host"
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.stop()
