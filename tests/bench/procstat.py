"""What the bench scripts read of a running process from /proc."""

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time over all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str = "VmHWM:") -> float:
    """A memory line of /proc/PID/status in MiB: peak RSS (VmHWM) by default, VmRSS for the current one."""
    for entry in Path(f"/proc/{pid}/status").read_text().splitlines():
        if entry.startswith(field):
            return int(entry.split()[1]) / 1024
    return 0.0
