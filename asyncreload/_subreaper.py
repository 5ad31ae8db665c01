"""A process that answers for everything it started: the process-tree code the guard and the
workers share. Linux only (``prctl``, ``/proc``). Standard library only: the guard imports it as a
top-level module.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

__all__ = [
    "KILL_TIMEOUT",
    "PR_SET_CHILD_SUBREAPER",
    "PR_SET_PDEATHSIG",
    "descendants",
    "end_descendants",
    "name_of",
    "parse_stat",
    "prctl",
    "reap_children",
    "send_signal",
    "stat_fields",
]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_TIMEOUT = 10.0
"""Seconds to wait for SIGKILLed processes to be reaped before reporting them as stuck (a process
in uninterruptible sleep, e.g. on a dead NFS server, can't die until the kernel lets it)."""


def stat_fields(text: str) -> list[str]:
    """The fields of ``/proc/PID/stat`` from the state on (``[0]`` state, ``[1]`` ppid, ``[2]``
    pgid, ...). The command name before them is in parentheses and may itself hold spaces and
    parentheses, so they are counted from the last ``)``.

    >>> stat_fields("42 (my (odd) name) S 7 42 42 0 -1")[:3]
    ['S', '7', '42']
    """
    return text[text.rindex(")") + 2 :].split()


def parse_stat(text: str) -> tuple[str, int, int]:
    """``(state, ppid, pgid)`` from the text of ``/proc/PID/stat``.

    >>> parse_stat("42 (my (odd) name) S 7 42 42 0 -1")
    ('S', 7, 42)
    """
    fields = stat_fields(text)
    return fields[0], int(fields[1]), int(fields[2])


def descendants(root: int) -> dict[int, int]:
    """Every living descendant of ``root`` (from ``/proc``), as ``{pid: pgid}``.

    Zombies are left out: they are dead already, and only wait to be reaped.
    """
    children: dict[int, list[int]] = {}
    pgids: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                state, ppid, pgid = parse_stat(f.read())
        except (OSError, ValueError):
            continue  # it exited while we looked
        if state == "Z":
            continue
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        pgids[pid] = pgid
    found: dict[int, int] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = pgids[pid]
            todo.extend(children.get(pid, ()))
    return found


def prctl(option: int, arg: int) -> None:
    """Linux's ``prctl(2)`` with one argument; OSError on failure."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def name_of(pid: int) -> str:
    """A process's name (``/proc/PID/comm``: the program's, cut to 15 bytes), or ``?``."""
    try:
        with open(f"/proc/{pid}/comm", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return "?"


def send_signal(pid: int, sig: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
        (os.killpg if group else os.kill)(pid, sig)


def reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def end_descendants(grace: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every descendant of this process, SIGKILL what is left after ``grace``
    seconds, and reap what it can. For a process on its way out that started others, or whose
    code did (blocking). Made a subreaper first, such a process also holds what double-forked
    away."""
    me = os.getpid()
    left = descendants(me)
    for pid in left:
        send_signal(pid, sig)
        send_signal(pid, signal.SIGCONT)  # a stopped process only acts on it once it runs again
    deadline, killed = time.monotonic() + grace, False
    while left:
        reap_children()
        left = descendants(me)
        if left and time.monotonic() >= deadline:
            if killed:
                return  # in uninterruptible sleep: nothing more can be done
            for pid in left:
                send_signal(pid, signal.SIGKILL)
            deadline, killed = time.monotonic() + KILL_TIMEOUT, True
        if left:
            time.sleep(0.02)
