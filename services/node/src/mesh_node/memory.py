"""How much memory this node offers for model weights.

NVIDIA GPUs (nvidia-smi; all GPUs, or the one --device names), Apple unified
memory (sysctl hw.memsize), otherwise system RAM for the CPU backend.
`--max-vram GB` caps what is advertised (tests force splits with it).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess

from meshcore.membership import MAX_VRAM_BYTES

log = logging.getLogger(__name__)
GIB = 1 << 30


def nvidia_memory_bytes(device: str | None = None) -> int | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("nvidia-smi is present but failed (%s); using system memory", exc)
        return None
    totals = {}
    for line in out.strip().splitlines():
        index, mib = (part.strip() for part in line.split(","))
        totals[index] = int(float(mib)) * (1 << 20)
    if not totals:
        return None
    wanted = device_index(device)
    if wanted is not None and wanted in totals:
        return totals[wanted]
    return sum(totals.values())


def device_index(device: str | None) -> str | None:
    """"CUDA1" -> "1"; anything else -> None (all devices)."""
    if device and device.upper().startswith("CUDA") and device[4:].isdigit():
        return device[4:]
    return None


def apple_memory_bytes() -> int | None:
    if platform.system() != "Darwin":
        return None
    out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, check=False)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else None


def system_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def detect_memory(device: str | None = None) -> tuple[int, str]:
    """(bytes, source) of the memory available for weights, before any cap."""
    for source, probe in (("nvidia", lambda: nvidia_memory_bytes(device)), ("apple", apple_memory_bytes)):
        found = probe()
        if found:
            return found, source
    return system_memory_bytes(), "system"


def offered_memory_bytes(max_vram_gb: float | None, device: str | None = None) -> tuple[int, str]:
    found, source = detect_memory(device)
    if found > MAX_VRAM_BYTES:  # peers refuse a record that claims more (meshcore.membership)
        found, source = MAX_VRAM_BYTES, source + " (offered up to the mesh's 4 TiB a node)"
    if max_vram_gb is not None:
        return min(found, int(max_vram_gb * GIB)), source + " (capped by --max-vram)"
    return found, source
