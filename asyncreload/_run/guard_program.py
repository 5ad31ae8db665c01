"""The guard: a small process between asyncreload and the command, so nothing outlives asyncreload.

asyncreload starts one guard per run (``python -I guard_program.py CONFIG``: standard library
only, so it starts fast and imports nothing of asyncreload's but the three standard-library
modules it shares with it and its own parts, found through CONFIG) and talks to it over a socket.
The guard

- makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): whatever the command
  starts and abandons, even a grandchild that called ``setsid()`` or double-forked, is re-parented
  to the guard instead of to init, so "nothing left behind" is simply "the guard has no child";
- starts the command when told, in a process group of its own, and hands it the terminal (makes
  that group the terminal's foreground group) when asyncreload holds the terminal;
- stops it: the stop signal to the group and to every descendant outside it, then the grace
  period, then SIGKILL to every descendant, and reaps them all;
- on EOF of the socket (asyncreload exited or was killed, even with SIGKILL: the kernel closes the
  socket either way) or on SIGTERM/SIGHUP to itself, stops everything the same way and exits.

It does not use a parent-death signal for itself: that fires when the *thread* that forked the
guard exits, and trio starts processes from worker threads that come and go.

The guard itself may be killed too (``kill -9``, the OOM killer): what it held would then be
re-parented to init, and a daemon the command started would live on. So the process asyncreload
starts is a *keeper*: a subreaper as well, it forks the guard and only waits for it. When the guard
dies, everything it held is re-parented to the keeper, which stops it all the same way (stop
signal, grace, SIGKILL), gives the terminal back, and exits; asyncreload, which sees the socket
close, waits for that. When the keeper dies, the guard sees the pipe from it close, and stops
everything and exits as on EOF of the socket. So whichever one of the three processes dies,
nothing the command started outlives asyncreload.

While a command holds the terminal, a *sentinel* (a forked copy of the guard that only waits for
signals) sits in its process group, so it gets the SIGINT or SIGQUIT the terminal sends on Ctrl-C
or Ctrl-\\ and tells the guard, which tells asyncreload: the user pressed Ctrl-C, even if the
command handles SIGINT and exits 0, or ignores it. It passes on a SIGHUP the same way: the kernel
sends one to the foreground group when the terminal's session leader exits after a hang-up, and
asyncreload, in a background group, would not hear of it otherwise (a shell that forwards SIGHUP to
its jobs is interactive; ``sh -c`` under ssh or script(1) is not).

The messages each way are in :mod:`.guard_protocol`. This module is the guard's loop: it reads
requests and signals and hands each to its parts, standard library only as well and imported the
same way: :mod:`.guard_spawn` (the command's fork and exec), :mod:`.guard_stop` (the stop
signal, the grace period, the SIGKILL sweep), :mod:`.guard_sentinel`, :mod:`.guard_terminal` (the
terminal lent to the command and taken back) and :mod:`.guard_keeper`.

A command that holds the terminal and is stopped (Ctrl-Z, or SIGTTIN when it reads the terminal
from the background) is handled as a shell handles a stopped job: the guard keeps the command's
terminal modes, gives the terminal back and says "suspended"; asyncreload then stops its own job,
so the shell gets the prompt back. On ``fg`` asyncreload is continued and sends "resume": the
guard restores the command's terminal modes, gives it the terminal again and continues it.

``returncode`` is as in :mod:`subprocess`: negative for a death by signal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from .. import _subreaper, _wire
    from . import guard_protocol as protocol
    from .guard_keeper import keep
    from .guard_sentinel import Sentinel
    from .guard_spawn import fork_command
    from .guard_stop import Stop, kill_all, signal_all
    from .guard_terminal import Terminal
else:  # run as the guard: asyncreload's directories are in CONFIG (see main)
    sys.path.extend(json.loads(sys.argv[1])["path"])
    import _subreaper  # type: ignore[import-not-found, no-redef]
    import _wire  # type: ignore[import-not-found, no-redef]
    import guard_protocol as protocol  # type: ignore[import-not-found, no-redef]
    from guard_keeper import keep  # type: ignore[import-not-found, no-redef]
    from guard_sentinel import Sentinel  # type: ignore[import-not-found, no-redef]
    from guard_spawn import fork_command  # type: ignore[import-not-found, no-redef]
    from guard_stop import (  # type: ignore[import-not-found, no-redef]
        Stop,
        kill_all,
        signal_all,
    )
    from guard_terminal import Terminal  # type: ignore[import-not-found, no-redef]

__all__ = ["main"]

_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP)
_IGNORED = (signal.SIGINT, signal.SIGQUIT, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP)
_RESET = (*_HANDLED, *_IGNORED, signal.SIGPIPE)
"""Back to their defaults for the command (Python ignores SIGPIPE)."""


class Guard:
    """The guard's state and its event loop; one instance per guard process."""

    def __init__(self, sock: socket.socket, config: dict[str, Any], keeper: int) -> None:
        self.sock = sock
        self.keeper = keeper
        """The read end of a pipe from the keeper: EOF when the keeper is gone."""
        self.pid = os.getpid()
        self.stop_signal = int(config.get("signal", signal.SIGTERM))
        self.grace = float(config.get("grace", 5.0))
        self.terminal = Terminal(config.get("terminal_pgrp"))
        self.suspended = False
        self.child: int | None = None
        self.stopping: Stop | None = None
        self.closing = False
        self.inbox = _wire.Lines()
        self.selector = selectors.DefaultSelector()
        self.sentinel = Sentinel(self.pid, self.selector)
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Become a subreaper (the keeper's group, its ignored signals are inherited); route
        signals into the loop."""
        _subreaper.prctl(_subreaper.PR_SET_CHILD_SUBREAPER, 1)
        for sig in _HANDLED:
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(self.wakeup_w)
        self.terminal.save_modes()
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, "socket")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")
        self.selector.register(self.keeper, selectors.EVENT_READ, "keeper")
        self.send(event=protocol.READY, pid=self.pid)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the socket closes and everything is stopped."""
        while not (self.closing and self.stopping is None):
            timeout = None
            if self.stopping is not None:
                timeout = max(0.0, self.stopping.deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.data == "socket":
                    self.on_socket()
                elif key.data == "signal":
                    self.on_signals()
                elif key.data == "keeper":
                    self.selector.unregister(self.keeper)
                    self.close()  # it never writes: this is EOF, the keeper is gone
                else:
                    self.on_sentinel(self.sentinel.read())
            self.reap()
            self.check_stop()
        self.terminal.give_back()

    def on_socket(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbox.feed(data)
        while True:
            try:
                request = self.inbox.next()
                if request is None:
                    break
                self.handle(request)
            except (ValueError, KeyError, TypeError) as e:
                self.send(event=protocol.ERROR, errno=errno.EINVAL, message=f"bad request: {e}")

    def on_signals(self) -> None:
        try:
            received = os.read(self.wakeup_r, 512)
        except BlockingIOError:
            return
        if signal.SIGTERM in received or signal.SIGHUP in received:
            self.close()

    def on_sentinel(self, sig: int | None) -> None:
        """The sentinel reported ``sig`` from the terminal (None: nothing)."""
        if sig is not None and self.stopping is None:
            self.send(event=protocol.INTERRUPT, signal=sig)

    def close(self) -> None:
        """Asyncreload is gone (or we were told to go): stop everything, then exit."""
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(KeyError):  # not registered yet: it failed during set-up
            self.selector.unregister(self.sock)
        if self.stopping is None:
            self.begin_stop(self.stop_signal, self.grace, signalled=False)

    def handle(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        if op == protocol.SPAWN:
            foreground = bool(request.get("foreground", True))
            self.spawn(request["argv"], request["env"], request.get("cwd"), foreground=foreground)
        elif op == protocol.STOP:
            grace = float(request.get("grace", self.grace))
            sig = int(request.get("signal", self.stop_signal))
            self.begin_stop(sig, grace, signalled=bool(request.get("signalled")))
            self.check_stop()
        elif op == protocol.RESUME:
            self.resume(foreground=bool(request.get("foreground")))
        elif op == protocol.KILL and self.stopping is not None and not self.stopping.killed:
            self.stopping.deadline = 0.0
            self.check_stop()

    def send(self, **message: Any) -> None:
        if self.closing:
            return
        try:
            self.sock.setblocking(True)
            self.sock.sendall(_wire.encode(message))
            self.sock.setblocking(False)
        except OSError:
            self.close()

    # -- starting -------------------------------------------------------------------------------

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str | None, *, foreground: bool
    ) -> None:
        """Start the command; with ``foreground`` (and a terminal), give it the terminal."""
        if self.child is not None:
            self.send(
                event=protocol.ERROR, errno=errno.EBUSY, message="a command is already running"
            )
            return
        foreground = foreground and self.terminal.ours
        pid, failure = fork_command(argv, env, cwd, reset=_RESET, foreground=foreground)
        if foreground:
            self.terminal.lend(pid)
        if failure:
            code, step = failure
            self.terminal.give_back()
            self.send(event=protocol.ERROR, errno=code, message=os.strerror(code), step=step)
            return
        self.child = pid
        if foreground:
            self.sentinel.start(pid)
        self.send(event=protocol.STARTED, pid=pid)

    # -- stopping -------------------------------------------------------------------------------

    def begin_stop(self, sig: int, grace: float, *, signalled: bool) -> None:
        self.sentinel.kill()
        signal_all(self.pid, self.child, sig, signalled=signalled)
        self.stopping = Stop(deadline=time.monotonic() + grace)

    def check_stop(self) -> None:
        stop = self.stopping
        if stop is None:
            return
        if not self.reap():
            self.stopping = None
            self.send(event=protocol.STOPPED, killed=stop.killed, victims=stop.victims, stuck=[])
            return
        if time.monotonic() < stop.deadline:
            return
        if not stop.killed:
            stop.victims = kill_all(self.pid, self.child)
            stop.killed = True
            stop.deadline = time.monotonic() + _subreaper.KILL_TIMEOUT
            self.check_stop()
            return
        stuck = sorted(_subreaper.descendants(self.pid))
        self.stopping = None
        self.send(event=protocol.STOPPED, killed=True, victims=stop.victims, stuck=stuck)

    def reap(self) -> bool:
        """Reap every child that has exited; True while any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if os.WIFSTOPPED(status):
                if pid == self.child:
                    self.on_child_stopped(pid, os.WSTOPSIG(status))
                continue
            if pid == self.child:
                self.child, self.suspended = None, False
                # A command that exits on Ctrl-C races its sentinel's report of it: hear the
                # sentinel out first, so that asyncreload learns of the Ctrl-C before the exit
                # (an exit alone would read as "it exited by itself": restart on a change).
                self.on_sentinel(self.sentinel.hear_out())
                self.terminal.give_back()
                self.send(
                    event=protocol.EXITED, pid=pid, returncode=os.waitstatus_to_exitcode(status)
                )

    # -- job control ----------------------------------------------------------------------------

    def on_child_stopped(self, pid: int, sig: int) -> None:
        """The command was stopped: a stopped job, if it holds the terminal (else not ours)."""
        if not self.terminal.ours or self.stopping is not None or self.suspended:
            return
        self.suspended = True
        self.terminal.take_back()
        self.send(event=protocol.SUSPENDED, pid=pid, signal=sig)

    def resume(self, *, foreground: bool) -> None:
        """Continue the stopped command; with ``foreground``, give it the terminal first."""
        if self.child is None or not self.suspended:
            return
        self.suspended = False
        if foreground:
            self.terminal.lend_again(self.child)
        _subreaper.send_signal(self.child, signal.SIGCONT, group=True)


def main(argv: list[str]) -> int:
    """Run the keeper and the guard: ``guard_program.py '{"fd": N, "signal": 15, "grace": 5.0,
    "terminal_pgrp": P, "path": [...]}'``; ``path``: the directories of ``_wire``,
    ``_subreaper``, ``guard_protocol`` and the guard's parts, for ``sys.path`` (after the
    standard library's)."""
    config = json.loads(argv[1])
    sock = socket.socket(fileno=int(config["fd"]))
    os.set_inheritable(sock.fileno(), False)  # the commands must not hold it
    # Out of asyncreload's process group: Ctrl-C and the shell's job-control signals for
    # asyncreload's job must not reach us, who follow asyncreload by the socket.
    os.setpgid(0, 0)
    _subreaper.prctl(_subreaper.PR_SET_CHILD_SUBREAPER, 1)
    for sig in _IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    keeper_r, keeper_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        sock.close()  # the guard's copy is the only one: its death must reach asyncreload
        os.close(keeper_r)
        return keep(pid, config)  # keeper_w stays open until the keeper exits
    os.close(keeper_w)
    guard = Guard(sock, config, keeper_r)
    try:
        guard.setup()
        guard.run()
    except BaseException:
        kill_all(guard.pid, guard.child)  # whatever went wrong, leave nothing behind
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
