"""Download throughput: `mesh-llm download` (huggingface_hub's client, a part file, the
sha256 check) vs `curl` of the same file from the same local hub (tests/integration/
fake_hub.py), same run, alternating.

    .venv/bin/python bench/download.py [--mib 512] [--runs 3]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from fake_hub import FakeHub  # noqa: E402

CATALOG = '[[model]]\nname = "Bench-1B"\nrepo = "bench/Bench-GGUF"\nfiles = ["bench.gguf"]\nsize = {size}\n'


def measure(mib: int, runs: int) -> dict:
    data = os.urandom(mib << 20)
    hub = FakeHub()
    hub.add("bench/Bench-GGUF", "bench.gguf", data)
    url = hub.start()
    ours, curls = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
            catalog = Path(tmp) / "catalog.toml"
            catalog.write_text(CATALOG.format(size=len(data)))
            for i in range(runs):
                folder = Path(tmp) / f"m{i}"
                env = {**os.environ, "HF_ENDPOINT": url, "MESH_LLM_CATALOG": str(catalog),
                       "MESH_LLM_MODELS_DIR": str(folder), "HF_HOME": str(Path(tmp) / "hf"),
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "mesh_cli", "download", "Bench-1B"], env=env, check=True,
                               capture_output=True)
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                subprocess.run(["curl", "-sSf", "-o", str(Path(tmp) / f"c{i}"),
                                f"{url}/bench/Bench-GGUF/resolve/main/bench.gguf"], check=True)
                curls.append(time.perf_counter() - started)
                (folder / "bench.gguf").unlink()
                (Path(tmp) / f"c{i}").unlink()
    finally:
        hub.stop()
    mb = len(data) / 1e6
    return {"download_mb_per_s": mb / statistics.median(ours), "curl_mb_per_s": mb / statistics.median(curls),
            "download_vs_curl_ratio": statistics.median(curls) / statistics.median(ours), "mib": mib, "runs": runs,
            "note": "mesh-llm download includes starting Python and the sha256 (hashed as it is written)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.mib, args.runs), indent=2))


if __name__ == "__main__":
    main()
