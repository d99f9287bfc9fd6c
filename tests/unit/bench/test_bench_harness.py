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
