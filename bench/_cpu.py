"""CPU time of another process, to the nanosecond where the kernel allows.

``/proc/PID/stat`` counts in clock ticks (10 ms): over a 2 s window that is 0.5 % of a core per
tick, too coarse for a watcher that idles at 0.1 %. ``/proc/PID/task/TID/schedstat`` gives each
thread's run time in ns, but a thread that exits takes its time with it; when one did, the
tick count (which keeps dead threads' time) is used instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil

__all__ = ["CpuSample", "cpu_seconds_between", "sample"]


@dataclass(frozen=True)
class CpuSample:
    threads: dict[int, int] = field(default_factory=dict)
    """Run time in ns per thread."""
    ticks_seconds: float = 0.0
    """The process total from clock ticks, dead threads included."""


def _thread_times(pid: int) -> dict[int, int]:
    times = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                times[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread just exited
    return times


def sample(pid: int | None) -> CpuSample:
    """The CPU time used so far by ``pid`` (nothing if there is no such process)."""
    if pid is None:
        return CpuSample()
    try:
        t = psutil.Process(pid).cpu_times()
        ticks = float(t.user + t.system)
    except psutil.Error:
        return CpuSample()
    return CpuSample(_thread_times(pid), ticks)


def cpu_seconds_between(before: CpuSample, after: CpuSample) -> float:
    """CPU seconds used between two samples of the same process."""
    precise = sum(ns - before.threads.get(tid, 0) for tid, ns in after.threads.items()) / 1e9
    coarse = after.ticks_seconds - before.ticks_seconds
    if before.threads.keys() - after.threads.keys():
        # A thread exited in between: its last stretch of work is only in the tick count.
        return max(precise, coarse)
    return precise
