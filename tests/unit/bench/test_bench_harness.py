"""A smoke of the benchmark harness (`make bench`): the runner starts a benchmark,
collects its JSON, prints the table and writes latest.json plus a dated copy."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_runner_writes_results_and_a_table(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "latest.json").read_text())
    rounds = results["gossip_convergence_rounds_30"]
    assert 1 <= rounds["join"] <= 10 and 1 <= rounds["death"] <= 10
    assert results["gossip_bytes_per_node_per_s_30"] > 0
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_every_benchmark_starts_and_answers_help() -> None:
    """Each benchmark `make bench` runs imports what it needs and parses its arguments:
    a helper renamed or moved in a service fails here, not in the next full run."""
    from importlib import util
    spec = util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    run = util.module_from_spec(spec)
    spec.loader.exec_module(run)  # type: ignore[union-attr]
    for name in run.BENCHMARKS:
        out = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--help"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert out.returncode == 0 and "usage" in out.stdout, f"bench/{name}.py --help: {out.stderr[-1500:]}"


def test_a_reference_child_that_exits_early_is_reported_at_once(tmp_path: Path) -> None:
    """A stock rpc-server or llama-server that exits while the benchmark waits for it: one
    error naming its exit code and its last log lines, at once, not after a 300 s wait."""
    import stat
    import time

    import pytest
    sys.path.insert(0, str(ROOT / "bench"))
    from children import ChildFailed, start_llama_server, start_rpc_server
    for name in ("llama-server", "ggml-rpc-server"):
        fake = tmp_path / name
        fake.write_text("#!/bin/sh\necho \"error: could not connect to the RPC server\"\nexit 3\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    started = time.monotonic()
    with pytest.raises(ChildFailed) as llama:
        start_llama_server(tmp_path, tmp_path / "m.gguf", 1, [], tmp_path / "llama.log", timeout=300)
    with pytest.raises(ChildFailed) as rpc:
        start_rpc_server(tmp_path, "127.0.0.1", 1, tmp_path / "rpc.log", timeout=300)
    assert time.monotonic() - started < 10
    for err, what in ((llama, "llama-server"), (rpc, "the stock rpc-server")):
        text = str(err.value)
        assert text.startswith(f"{what} exited with code 3") and "could not connect to the RPC server" in text, text
        assert "\n" not in text
