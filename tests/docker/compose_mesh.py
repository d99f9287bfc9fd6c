"""The running compose test mesh, as the tests in tests/docker see it."""

from __future__ import annotations

import json
import time
from typing import Any

import docker


class ComposeMesh:
    """The running test mesh: its containers by service, the client's URLs."""

    def __init__(self, client: docker.DockerClient, project: str, api: str, console: str, started: float) -> None:
        self.client, self.project, self.api, self.console, self.started = client, project, api, console, started

    def container(self, service: str) -> Any:
        found = self.client.containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        assert found, f"no container for service {service}"
        return found[0]

    @property
    def network(self) -> Any:
        return self.client.networks.get(f"{self.project}_default")

    def exec_json(self, service: str, url: str) -> dict:
        """GET `url` from inside a container (the nodes' APIs listen on their own 127.0.0.1)."""
        code = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"
        exit_code, output = self.container(service).exec_run(["python3", "-c", code])
        assert exit_code == 0, f"{service}: {output.decode()[-1000:]}"
        return json.loads(output)

    def node_status(self, service: str) -> dict:
        return self.exec_json(service, "http://127.0.0.1:3131/api/status")

    def logs(self, service: str) -> str:
        return self.container(service).logs(tail=60).decode(errors="replace")


def poll(check: Any, timeout: float, pause: float) -> tuple[bool, Any]:
    """Call `check` until it returns something true (True, that value) or `timeout`
    passes (False, its last value or exception: containers may still be starting)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - still starting; reported on timeout
            last = exc
        else:
            if last:
                return True, last
        time.sleep(pause)
    return False, last


def wait_for(what: str, check: Any, timeout: float, mesh: ComposeMesh | None = None, pause: float = 0.5) -> Any:
    done, last = poll(check, timeout, pause)
    if done:
        return last
    logs = "" if mesh is None else "\n".join(f"--- {s}\n{mesh.logs(s)}" for s in ("node1", "node2", "node3", "client"))
    raise AssertionError(f"{what}: not after {timeout:.0f} s (last: {last!r})\n{logs}")
