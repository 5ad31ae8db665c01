"""Test commands that report what they do: a child script that appends JSON lines to a journal,
and ways to follow processes by PID without being fooled by PID reuse."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asyncreload._subreaper import stat_fields

from .helpers import DEADLINE, eventually

CHILD = r"""
import json, os, signal, subprocess, sys, time

log, *flags = sys.argv[1:]

def record(**fields):
    fields["pid"] = os.getpid()
    with open(log, "a") as f:  # one short O_APPEND write: atomic
        f.write(json.dumps(fields) + "\n")

def on_term(*_):
    record(event="term")
    if "stubborn" in flags:
        return
    if "slow-stop" in flags:
        time.sleep(1.0)
    sys.exit(0)

signal.signal(signal.SIGTERM, signal.SIG_IGN if "ignore-term" in flags else on_term)
if "slow-start" in flags:
    record(event="boot", restart=int(os.environ.get("ASYNCRELOAD_RESTART", "-1")))
    time.sleep(0.5)
spawned = []
if "grandchildren" in flags:
    # one in our group, one that left it with setsid(), one double-forked (parent gone)
    spawned.append(subprocess.Popen(["sleep", "1000"]).pid)
    spawned.append(subprocess.Popen(["sleep", "1001"], start_new_session=True).pid)
    out = subprocess.run(["sh", "-c", "sleep 1002 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    spawned.append(int(out))
changes = os.environ.get("ASYNCRELOAD_CHANGES")
record(
    event="start",
    restart=int(os.environ.get("ASYNCRELOAD_RESTART", "-1")),
    changes=None if changes is None else json.loads(changes),
    truncated=os.environ.get("ASYNCRELOAD_CHANGES_TRUNCATED"),
    spawned=spawned,
    pgid=os.getpgrp(),
    cwd=os.getcwd(),
    marker=os.environ.get("MARKER"),
    t=time.monotonic(),
)
for flag in flags:
    if flag.startswith("exit"):
        sys.exit(int(flag[4:]))
while True:
    time.sleep(1)
"""


class Journal:
    """The JSON lines the children append to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        lines = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
        return [e for e in lines if event is None or e["event"] == event]

    def starts(self) -> list[dict[str, Any]]:
        return self.entries("start")

    async def wait(
        self, predicate: Callable[[Journal], object], what: str, timeout: float = DEADLINE
    ) -> None:
        await eventually(
            lambda: predicate(self),
            what=what,
            timeout=timeout,
            detail=lambda: f"journal: {self.entries()}",
        )

    async def wait_starts(self, n: int, timeout: float = DEADLINE) -> dict[str, Any]:
        await self.wait(lambda j: len(j.starts()) >= n, f"{n} start(s)", timeout)
        return self.starts()[n - 1]


def child_command(journal: Journal, *flags: str) -> list[str]:
    script = journal.path.with_name("child.py")
    script.write_text(CHILD)
    return [sys.executable, str(script), str(journal.path), *flags]


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from the state on (``[0]`` state, ``[1]`` ppid, ``[2]``
    pgid, ``[11]``/``[12]`` user/system ticks, ``[19]`` start time); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return stat_fields(f.read())
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid``, to tell it from a reused PID; None if gone."""
    fields = proc_stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def parent(pid: int) -> int:
    """The parent of a running ``pid``."""
    fields = proc_stat(pid)
    assert fields is not None, f"process {pid} is gone"
    return int(fields[1])


def is_zombie(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie or reaped)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] == "Z"


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return {
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (fields := proc_stat(int(entry))) and int(fields[1]) == pid
    }


class Tracked:
    """PIDs noted while they ran; alive() is True while any of them (not a reuse) still runs."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = {pid: start_time(pid) for pid in pids}
        assert all(t is not None for t in self.pids.values()), self.pids

    def alive(self) -> list[int]:
        return [pid for pid, t in self.pids.items() if start_time(pid) == t]
