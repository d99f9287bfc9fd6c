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
