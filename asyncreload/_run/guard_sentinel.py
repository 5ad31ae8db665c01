"""The sentinel: a forked copy of the guard in the command's process group, so it gets the
terminal's SIGINT, SIGQUIT and SIGHUP, and tells the guard. Standard library only: part of the
guard program (see guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from .. import _subreaper
else:  # in the guard, a top-level module: guard_program put its directories on sys.path
    import _subreaper  # type: ignore[import-not-found, no-redef]

__all__ = ["REPORTED", "SENTINEL_TIMEOUT", "Sentinel", "sentinel_main"]

SENTINEL_TIMEOUT = 1.0
"""Seconds to wait for the sentinel's last word once the command has exited."""

REPORTED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
"""What it passes on: Ctrl-C, Ctrl-\\, and a hang-up of the terminal."""


class Sentinel:
    """The guard's side of the sentinel of the command that holds the terminal (one at a time)."""

    def __init__(self, guard: int, selector: selectors.BaseSelector) -> None:
        self.guard = guard
        self.selector = selector
        """The guard's: the pipe from the sentinel is registered there as ``"sentinel"``."""
        self.pid: int | None = None
        self.fd: int | None = None

    def start(self, pgid: int) -> None:
        """Fork the sentinel into the command's process group ``pgid``."""
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pid = os.fork()
        if pid == 0:
            sentinel_main(pgid, self.guard, write_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        with contextlib.suppress(OSError):  # the command's group is gone: the sentinel will exit
            os.setpgid(pid, pgid)
        self.pid, self.fd = pid, read_fd
        self.selector.register(read_fd, selectors.EVENT_READ, "sentinel")

    def read(self) -> int | None:
        """Its pipe is readable: the signal it reported, or None (it exited without one)."""
        assert self.fd is not None
        data = os.read(self.fd, 16)
        self.selector.unregister(self.fd)
        os.close(self.fd)
        self.fd = None
        return data[0] if data else None

    def hear_out(self) -> int | None:
        """End the sentinel; the Ctrl-C it has or had pending, if any.

        The terminal signals a whole process group at once, so a Ctrl-C that ended the command
        is already pending in the sentinel. SIGTERM is pending after it, and ``sigwait`` picks
        the lowest-numbered pending signal first (SIGINT, then SIGQUIT), so the sentinel
        reports the Ctrl-C and exits.
        """
        if self.pid is None or self.fd is None:
            self.kill()
            return None
        _subreaper.send_signal(self.pid, signal.SIGTERM)
        ready, _, _ = select.select([self.fd], [], [], SENTINEL_TIMEOUT)
        sig = self.read() if ready else None
        self.kill()
        return sig

    def kill(self) -> None:
        if self.pid is not None:
            _subreaper.send_signal(self.pid, signal.SIGKILL)
            self.pid = None


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
