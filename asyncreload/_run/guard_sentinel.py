"""The sentinel: a forked copy of the guard in the command's process group, so it gets the
terminal's SIGINT, SIGQUIT and SIGHUP, and tells the guard. Standard library only: part of the
guard program (see guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import os
import signal

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from .. import _subreaper
else:  # in the guard, a top-level module: guard_program put its directories on sys.path
    import _subreaper  # type: ignore[import-not-found, no-redef]

__all__ = ["REPORTED", "SENTINEL_TIMEOUT", "sentinel_main"]

SENTINEL_TIMEOUT = 1.0
"""Seconds to wait for the sentinel's last word once the command has exited."""

REPORTED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def sentinel_main(pgid: int, guard: int, write_fd: int) -> None:
    """In the forked sentinel: join the command's group, report Ctrl-C. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        # Keep nothing of the guard's open but the pipe back to it.
        os.dup2(write_fd, 3)
        os.closerange(4, 1 << 16)
        # The guard is single-threaded: its death is this thread's parent's.
        _subreaper.prctl(_subreaper.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guard:
            os._exit(0)
        os.setpgid(0, pgid)
        # Every signal is still blocked (from the fork), so these are picked up here, and
        # a Ctrl-Z doesn't stop the sentinel.
        got = signal.sigwait({*REPORTED, signal.SIGTERM})
        if got in REPORTED:
            os.write(3, bytes([got]))
    finally:
        os._exit(0)
