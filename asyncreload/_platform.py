"""What this operating system gives asyncreload, in one place.

Linux has it all. Elsewhere ``import asyncreload`` and ``watch`` must still work, so nothing here
or in the modules that use it may touch a POSIX- or Linux-only name at import time; what can't
be done is said in one line when it is asked for (see :func:`process_trees_missing`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["DIR_FD", "DIR_FLAGS", "LINUX", "MACOS", "WINDOWS", "process_trees_missing"]

LINUX = sys.platform.startswith("linux")
MACOS = sys.platform == "darwin"
WINDOWS = sys.platform == "win32"

DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
"""How to open a directory for reading its entries and stat'ing them through it (``dir_fd``)."""

DIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
"""Can a directory be read through a descriptor (``scandir(fd)``, ``stat(name, dir_fd=fd)``)?
Linux and macOS: yes. Windows: no (``os.open`` can't open a directory there), so the stat poller
reads directories by their paths. It reads this at each directory it opens, so a test can set
it False and sweep the portable way on Linux."""


def process_trees_missing(what: str) -> str | None:
    """Why ``what`` (``run``, ``serve``) can't keep its promise of no orphans here, or None.

    It makes its guard (or worker) a child subreaper, and walks ``/proc`` to find what the
    command started: Linux's, both.
    """
    if LINUX:
        return None
    return (
        f"asyncreload {what} needs Linux: it stops everything a command started by making "
        "itself their subreaper (prctl) and reading /proc, which this system does not have"
    )
