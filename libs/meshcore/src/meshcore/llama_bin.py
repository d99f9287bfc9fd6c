"""llama.cpp's binaries and the devices they can use.

Where the binaries are: $MESH_LLM_LLAMA_BIN_DIR (or --llama-bin-dir), else the
folder the last `llama.cpp/build.py` run recorded in the cache, else PATH.

`--device`: the names are llama.cpp's own (`llama-server --list-devices`: CUDA0,
Vulkan1, Metal, ...; a comma-separated list for several), plus `CPU` (or `none`):
use no accelerator on this node. llama-server itself rejects `--device CPU` (its
CPU is always there and takes whatever is not offloaded), so `CPU` is ours and is
translated (`device_args`). The launcher checks the name against the devices the
built llama.cpp reports, before anything starts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from meshcore.errors import ConfigError
from meshcore.home import cache_dir

LLAMA_SERVER = "llama-server"
RPC_SERVER = "ggml-rpc-server"
NO_ACCELERATOR = ("CPU", "none")          # our --device words for "CPU only"
LIST_DEVICES_TIMEOUT_S = 60.0
_DEVICE_LINE = re.compile(r"^\s+([^\s:()]+): (.*?)(?: \((\d+) MiB, (\d+) MiB free\))?\s*$")


def llama_bin_dir(configured: str | None = None) -> Path:
    explicit = configured or os.environ.get("MESH_LLM_LLAMA_BIN_DIR")
    if explicit:
        path = Path(explicit).expanduser()
        if not (path / LLAMA_SERVER).exists():
            raise ConfigError(f"no {LLAMA_SERVER} in {path} (from MESH_LLM_LLAMA_BIN_DIR)")
        return path
    pointer = cache_dir() / "llama.cpp" / "current"
    if pointer.exists():
        path = Path(pointer.read_text().strip())
        if (path / LLAMA_SERVER).exists():
            return path
    on_path = shutil.which(LLAMA_SERVER)
    if on_path:
        return Path(on_path).parent
    raise ConfigError("llama.cpp is not built: run `make setup` (or set MESH_LLM_LLAMA_BIN_DIR "
                      "to a folder containing llama-server)")


@dataclass(frozen=True)
class Device:
    name: str          # what --device takes, e.g. "CUDA0"
    description: str   # e.g. "NVIDIA H200"
    total_mib: int = 0
    free_mib: int = 0


def parse_device_list(text: str) -> list[Device]:
    """The devices in `llama-server --list-devices` output (accelerators only: it
    never lists the CPU)."""
    devices = []
    for line in text.splitlines():
        m = _DEVICE_LINE.match(line)
        if m and m[1] != "(none)":
            devices.append(Device(m[1], m[2], int(m[3] or 0), int(m[4] or 0)))
    return devices


def list_devices(bin_dir: Path) -> list[Device]:
    try:
        out = subprocess.run([str(bin_dir / LLAMA_SERVER), "--list-devices"], capture_output=True, text=True,
                             timeout=LIST_DEVICES_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"could not ask {bin_dir / LLAMA_SERVER} for its devices: {exc}") from None
    if out.returncode != 0 or "Available devices" not in out.stdout:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{bin_dir / LLAMA_SERVER} --list-devices failed (exit {out.returncode}): {last}")
    return parse_device_list(out.stdout)


def check_device(spec: str, devices: list[Device]) -> str:
    """`spec` as given to --device, checked against `devices`; returns it with each
    name spelled as llama.cpp spells it. A one-line ConfigError names the valid ones."""
    valid = [d.name for d in devices]
    shown = ", ".join([*NO_ACCELERATOR[:1], *valid])
    names = [n.strip() for n in spec.split(",")]
    if len(names) == 1 and names[0].lower() in {w.lower() for w in NO_ACCELERATOR}:
        return "CPU"
    by_lower = {v.lower(): v for v in valid}
    out = []
    for name in names:
        if name.lower() not in by_lower:
            what = "is not a device" if name else "is empty"
            raise ConfigError(f"--device {spec!r}: {name!r} {what} of this llama.cpp; valid: {shown}"
                              + ("" if valid else " (no accelerator was found: this build runs on the CPU)"))
        out.append(by_lower[name.lower()])
    return ",".join(out)


def device_args(device: str | None, rpc_devices: list[str] | None = None) -> list[str]:
    """llama-server's --device flags for our --device value. A split host must also
    name its RPC devices, or an explicit --device would leave them unused."""
    rpc = rpc_devices or []
    if not device:
        return []
    local = [] if device in NO_ACCELERATOR else [device]
    return ["--device", ",".join(local + rpc) or "none"]
