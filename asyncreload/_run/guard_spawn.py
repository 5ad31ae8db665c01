"""The command's side of the guard's fork: its own group, the terminal if asked, default signals,
exec; a failure reported on a pipe. Standard library only: part of the guard program (see
guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterable

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from . import guard_protocol as protocol
else:  # in the guard, a top-level module: guard_program put its directories on sys.path
    import guard_protocol as protocol  # type: ignore[import-not-found, no-redef]

__all__ = ["exec_child"]


def exec_child(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    err_w: int,
    mask: set[int],
    *,
    reset: Iterable[int],
    foreground: bool,
) -> None:
    """In the forked child: own group, the terminal if asked, default signals, exec; no return."""
    code, step = 0, protocol.AT_EXEC
    try:
        signal.set_wakeup_fd(-1)
        os.setpgid(0, 0)
        if foreground:
            # SIGTTOU is still ignored here (inherited from the guard): a background group may
            # then take the terminal. Done before exec so the command never reads from a terminal
            # it doesn't own (which would stop it with SIGTTIN).
            with contextlib.suppress(OSError):  # the terminal hung up: run the command anyway
                os.tcsetpgrp(0, os.getpid())
        for sig in reset:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if cwd is not None:
            step = protocol.AT_CWD
            os.chdir(cwd)
            step = protocol.AT_EXEC
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        code = e.errno or errno.EINVAL
    except BaseException:
        code = errno.EINVAL
    try:
        os.write(err_w, f"{code} {step}".encode())
    finally:
        os._exit(127)
