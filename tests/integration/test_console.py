"""The console: /api/status, /api/events (SSE), the page in a real browser, the chat relay."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from meshnode import MeshNode, free_port, http_json, start_node, wait_until

TINY = "mesh-tiny-F16"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[MeshNode]:
    n = start_node(tmp_path_factory.mktemp("console"), [models[TINY]])
    yield n
    n.stop()


def test_status_has_every_field(node: MeshNode) -> None:
    status, body, _ = http_json(f"{node.console}/api/status")
    assert status == 200
    for key in ("node_id", "token", "mesh_id", "node_state", "models", "my_vram_gb", "api_port", "peers", "version"):
        assert key in body, key
    assert body["node_state"] == "serving" and body["api_port"] == node.api_port
    assert [(m["name"], m["state"]) for m in body["models"]] == [(TINY, "serving")]
    assert body["peers"] == [] and body["my_vram_gb"] > 0
    assert body["node_id"] == node.node_status().node_id


def test_events_start_with_a_snapshot(node: MeshNode) -> None:
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", f"{node.console}/api/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "event: status"
            data = next(lines)
            assert data.startswith("data: ")
            assert json.loads(data[6:])["models"][0]["name"] == TINY


def test_chat_relay_streams_from_the_api(node: MeshNode) -> None:
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{node.console}/api/chat",
                         json={"model": TINY, "stream": True, "max_tokens": 8,
                               "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status_code == 200
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3


def test_the_chat_answers_its_own_page_only_and_every_answer_forbids_scripts_from_elsewhere(node: MeshNode) -> None:
    """Another site's page can POST a form (text/plain) to 127.0.0.1 without asking: the
    console's chat refuses it (the proxy behind it would have been sent JSON), and a
    request a browser marks cross-site; every answer carries the page's CSP and nosniff."""
    chat = {"model": TINY, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=30) as http:
        form = http.post(f"{node.console}/api/chat", content=json.dumps(chat) + "=",
                         headers={"Content-Type": "text/plain"})
        assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
        cross = http.post(f"{node.console}/api/chat", json=chat, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_site"
        assert http.post(f"{node.console}/api/chat", json=chat, headers={"Sec-Fetch-Site": "same-origin"}
                         ).status_code == 200
        # Issue 28, item 16: the body is checked as it arrives, never read whole first.
        declared = http.post(f"{node.console}/api/chat", content=b"{" + b" " * (2 << 20) + b"}",
                             headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"

        def endless():  # chunked, no length: it never says how much is coming
            for _ in range(64):
                yield b" " * 65536
        chunked = http.post(f"{node.console}/api/chat", content=endless(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        for path in ("/", "/api/status", "/static/app.js"):
            headers = http.get(node.console + path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"] and "'unsafe" not in \
                headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"


def test_a_hostile_servers_page_never_comes_back_as_the_consoles(tmp_path: Path) -> None:
    """What a member's llama-server answers reaches the console's chat through the proxy;
    one answering text/html with a script gets it relayed as JSON, never as a page of the
    console's origin (where its script could read the invite token)."""
    class Hostile(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"<script>fetch('/api/status')</script>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass
    hostile = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    port = free_port()
    config = json.dumps({"home": str(tmp_path / "home"), "port": port, "api_port": hostile.server_address[1]})
    console = subprocess.Popen([sys.executable, "-m", "mesh_console", "--config", config],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open(port), 30)
        answer = httpx.post(f"http://127.0.0.1:{port}/api/chat", json={"model": "m", "messages": []}, timeout=10)
        assert answer.status_code == 200 and b"<script>" in answer.content
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-content-type-options"] == "nosniff"
    finally:
        console.terminate()
        console.wait(10)
        hostile.shutdown()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_page_shows_live_status_and_chats_in_a_browser(node: MeshNode, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(node.console + "/")
    node_id = node.node_status().node_id
    wait.until(ec.text_to_be_present_in_element((By.ID, "node-id"), node_id))
    assert browser.find_element(By.ID, "node-state").text == "serving"
    assert browser.find_element(By.ID, "token").get_attribute("value") == node.node_status().token
    rows = browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [TINY]
    assert "serving" in rows[0].text
    assert browser.find_element(By.ID, "conn").text == "live"
    assert browser.find_elements(By.CSS_SELECTOR, f"#topology g[data-node-id='{node_id}']")
    # The changes the node saw before the page loaded are there at once.
    assert browser.find_elements(By.CSS_SELECTOR, "#changes li")

    wait.until(lambda d: d.find_element(By.ID, "chat-model").get_attribute("value") == TINY)
    box = browser.find_element(By.ID, "chat-input")
    box.send_keys("hello <b>mesh</b>")
    box.send_keys(Keys.SHIFT, Keys.ENTER)   # a new line, not a send
    box.send_keys("second line")
    assert box.get_attribute("value") == "hello <b>mesh</b>\nsecond line"
    box.send_keys(Keys.ENTER)               # Enter sends
    wait.until(lambda d: d.find_element(By.ID, "chat-send").is_enabled()
               and d.find_elements(By.CSS_SELECTOR, "#chat-log .msg .stats"))
    user, reply = browser.find_elements(By.CSS_SELECTOR, "#chat-log .msg")
    assert user.find_element(By.CSS_SELECTOR, ".body").text == "hello <b>mesh</b>\nsecond line"  # text, never HTML
    assert user.find_elements(By.TAG_NAME, "b") == []
    assert "assistant" in reply.get_attribute("class")
    assert "tokens" in reply.find_element(By.CSS_SELECTOR, ".stats").text
    assert "first token after" in reply.find_element(By.CSS_SELECTOR, ".stats").text
    # The conversation survives a reload.
    browser.refresh()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-log .msg")) == 2)
    # Model output is rendered by markdown.js, which never makes HTML from text.
    rendered = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/static/markdown.js').then((m) => {
          window.pwned = 0;
          const node = m.render('**bold** <script>window.pwned = 1</script> <img src=x onerror="window.pwned=2">');
          document.body.append(node);
          done([node.querySelectorAll('script, img').length, node.querySelector('strong').textContent,
                node.textContent, window.pwned]);
        });""")
    assert rendered[0] == 0 and rendered[1] == "bold" and "<script>window.pwned = 1</script>" in rendered[2]
    assert rendered[3] == 0
    assert httpx.get(f"{node.console}/favicon.ico").status_code == 200


def test_a_client_console_has_no_token_field(node: MeshNode, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = start_node(tmp_path / "client", [], "--client", "--join", node.node_status().token, wait=False)
    try:
        def answers() -> bool:
            try:
                return http_json(f"{client.console}/api/status")[0] == 200
            except OSError:  # not listening yet
                return False
        wait_until(answers, 60, step=0.2)
        browser.get(client.console + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "node-state").text == "client")
        assert not browser.find_element(By.ID, "token-box").is_displayed()
        note = browser.find_element(By.ID, "role-note")
        assert note.is_displayed() and "API-only client" in note.text
        wait.until(lambda d: browser.execute_script(
            "return document.querySelectorAll('#topology g[data-role=client]').length") == 1)
    finally:
        client.stop()
