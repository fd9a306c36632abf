"""Resident memory of this process and of its children (the DataLoader workers), from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os


def _status_mb(pid: int | str, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size now, in MiB."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int | str = "self") -> float:
    """The largest resident set size the process has had (VmHWM), in MiB."""
    return _status_mb(pid, "VmHWM:")


def children() -> list[str]:
    """Pids of this process's live children."""
    pids: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as fh:
                pids += fh.read().split()
    return pids


def children_rss_mb() -> tuple[float, int]:
    """Summed RSS of this process's live children (the DataLoader workers) and how many there are."""
    total, count = 0.0, 0
    for pid in children():
        with contextlib.suppress(OSError):
            value = rss_mb(pid)
            if value == value:  # a zombie has no VmRSS
                total, count = total + value, count + 1
    return total, count
