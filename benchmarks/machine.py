"""Where a benchmark's numbers were taken: one description of the machine for every results file.

Every script in benchmarks/ takes its ``machine`` block from :func:`machine_info` (its own extra keys,
such as torch's thread count, passed as keyword arguments) and, where a markdown table names the
machine, writes :func:`describe` of that block. Results files written before this module existed keep
their own keys; they are not rewritten.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that change which kernels run


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's word for it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector-instruction flags among :data:`_CPU_FLAGS` this CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted(
        {f for line in text.splitlines() if line.startswith("flags") for f in line.split() if f in _CPU_FLAGS}
    )


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU, cores, memory, platform, Python, torch, GPU, load and date, plus the benchmark's own ``extra`` keys."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {**info, **extra}


def describe(info: dict[str, Any]) -> str:
    """One line naming the machine of a :func:`machine_info` block, for a results table's caption."""
    parts = [info.get("cpu") or info.get("platform", "?"), f"{info.get('cpu_count')} CPU cores"]
    if "memory_gib" in info:
        parts.append(f"{info['memory_gib']} GiB")
    parts.append(info.get("gpu") or "no GPU")
    parts.append(f"Python {info.get('python')}")
    if "torch" in info:
        parts.append(f"torch {info['torch']}")
    return ", ".join(parts)
