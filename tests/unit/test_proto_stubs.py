"""The checked-in gRPC stubs must be exactly what proto/generate.py produces."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_stubs_match_the_protos(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.generate(tmp_path)
    assert written, "no stubs generated"
    for fresh in written:
        checked_in = ROOT / "libs" / "meshcore" / "src" / "meshcore" / "api" / fresh.name
        assert checked_in.read_text() == fresh.read_text(), \
            f"{checked_in} is stale: run `make proto` and commit the result"
