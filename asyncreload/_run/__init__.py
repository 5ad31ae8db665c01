"""``run``: a command restarted on changes, with no orphans.

``runner`` is the restart loop over a change stream (its rules in ``restarts``, its waits in
``waiting``, what is asked of it in ``requests``, the command's start in ``command``, its log
lines in ``report``); ``process`` starts each command under a guard, ``guard_program``: a
separate, stdlib-only program (run as its own process, its parts in ``guard_*``) that kills the
command's whole process tree when asyncreload goes, however it goes.
"""

from .live import LiveServer
from .process import (
    DEFAULT_GRACE,
    ManagedProcess,
    StopResult,
    open_managed_process,
    returncode_to_status,
    terminal_hung_up,
)
from .runner import OnExit, ProcessRunner, parse_signal, run_process

# What the CLI and the package may use.
__all__ = [
    "DEFAULT_GRACE",
    "LiveServer",
    "ManagedProcess",
    "OnExit",
    "ProcessRunner",
    "StopResult",
    "open_managed_process",
    "parse_signal",
    "returncode_to_status",
    "run_process",
    "terminal_hung_up",
]
