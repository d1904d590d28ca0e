"""Memory readings shared by the benchmarks (run them as `python -m benchmarks.<name>`)."""

from __future__ import annotations

import resource
from pathlib import Path


def memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, else ru_maxrss.

    ru_maxrss alone misleads here: Linux carries a forked parent's resident size into the
    child's ru_maxrss across exec, so the child would report the generator's memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
