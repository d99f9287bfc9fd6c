"""Generate the Python gRPC stubs for proto/mesh/v1/*.proto into meshcore.

The stubs are checked in (so the proxy installs on a client machine without
grpcio-tools); tests/unit/test_proto_stubs.py regenerates them into a temporary
folder and fails if the checked-in copies differ.

    python proto/generate.py            # write into libs/meshcore/src/meshcore/api
    python proto/generate.py --out DIR  # write elsewhere (used by the test)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "libs" / "meshcore" / "src" / "meshcore" / "api"
IMPORT_FROM = re.compile(r"^from mesh\.v1 import (\w+)", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency only

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("mesh/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted(Path(tmp, "mesh", "v1").glob("*.py*")):
            text = IMPORT_FROM.sub(r"from meshcore.api import \1", src.read_text())
            dst = out / src.name
            dst.write_text(text)
            written.append(dst)
    init = out / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs (proto/generate.py); do not edit by hand."""\n')
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
