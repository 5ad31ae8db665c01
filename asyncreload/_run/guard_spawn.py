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

__all__ = ["exec_child", "fork_command"]


def fork_command(
    argv: list[str], env: dict[str, str], cwd: str | None, *, reset: Iterable[int], foreground: bool
) -> tuple[int, tuple[int, str] | None]:
    """Start the command in a process group of its own, with the signals in ``reset`` back to
    their defaults; with ``foreground``, give it the terminal. Returns its PID, and the errno and
    step (``protocol.AT_CWD``, ``AT_EXEC``) of why it could not be started (then it is reaped)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    # Block signals across fork: the child must not run the guard's handlers (they'd write to
    # the guard's wakeup pipe) before it has reset them.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    pid = os.fork()
    if pid == 0:
        exec_child(argv, env, cwd, err_w, mask, reset=reset, foreground=foreground)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(err_w)
    # As a shell does, both parent and child set the group: whichever runs first. (This fails
    # if the child exec'd already, but then it did it itself.)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    with os.fdopen(err_r, "rb") as f:
        failure = f.read()  # EOF when exec succeeded (the pipe is close-on-exec)
    if not failure:
        return pid, None
    os.waitpid(pid, 0)
    number, _, step = failure.decode().partition(" ")
    return pid, (int(number), step)


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
