"""A managed command: its own process group, a stop signal, a grace period, SIGKILL, no orphans.

:func:`open_managed_process` starts a guard process (see :mod:`.guard_program`) and yields a
:class:`ManagedProcess` that starts, waits for and stops commands through it. The guard is a child
subreaper that watches its socket to us: when this process goes away for any reason, SIGKILL
included, the guard stops whatever the command left running and exits. Its parent, the keeper, is a
subreaper too and does the same if the guard is killed. So a command run here can never outlive
us, and neither can anything it started.

Works the same on asyncio and trio; every wait is cancellable except a stop, which is shielded
and bounded by the grace period: cancelling the caller stops the command gracefully, then kills it.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.resources
import json
import logging
import os
import signal as signals
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import Process, TaskStatus

from .._channel import Channel
from .._exceptions import CommandError, CommandNotExecutableError, CommandNotFoundError
from .._platform import process_trees_missing
from . import guard_protocol as protocol

__all__ = [
    "ManagedProcess",
    "StopResult",
    "open_managed_process",
    "returncode_to_status",
    "terminal_hung_up",
]

log = logging.getLogger("asyncreload.process")

GUARD = importlib.resources.files(__package__) / "guard_program.py"
"""The guard's script: run by path (``python -I FILE``), so it starts without importing
asyncreload; from a zip (a zipapp, a zipped install) it is copied out for the start."""
GUARD_PATH = [
    str(importlib.resources.files("asyncreload")),
    str(importlib.resources.files(__package__)),
]
"""Where the guard finds the modules it shares with us (``_wire``, ``_subreaper``,
``guard_protocol``) and its own parts (``guard_*``); zipimport reads them from a zip in place."""
DEFAULT_GRACE = 5.0
"""Seconds between the stop signal and SIGKILL."""
_MARGIN = 15.0
"""Seconds on top of the grace period that we wait for the guard before giving up on it."""
_NAMED = 3
"""Processes named in a SIGKILL warning; more are counted."""

StrPath = str | os.PathLike[str]
"""A command's working directory (the watcher's paths may be bytes too: ``_watch.StrPath``)."""


def returncode_to_status(returncode: int) -> int:
    """The shell's exit status for a :mod:`subprocess`-style returncode: 128+N for signal N.

    >>> returncode_to_status(3), returncode_to_status(-signals.SIGTERM)
    (3, 143)
    """
    return 128 - returncode if returncode < 0 else returncode


def describe_returncode(returncode: int) -> str:
    """``exited with code 3`` or ``killed by SIGTERM``, for log lines.

    >>> describe_returncode(-9)
    'killed by SIGKILL'
    """
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signals.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def describe_killed(
    victims: Sequence[tuple[int, str]], command: int | None, grace: float, cause: str
) -> str:
    """The warning for a SIGKILL at the end of the grace period: whom it hit, the command or
    processes it started (``victims``: ``(pid, name)``; ``command``: the command's PID).

    >>> describe_killed([(7, "app")], 7, 2, "SIGTERM")
    'the command (pid 7) was still running 2 s after SIGTERM: killed it with SIGKILL'
    >>> print(describe_killed([(8, "sleep")], 7, 2, "SIGTERM"))  # doctest: +NORMALIZE_WHITESPACE
    a process the command started, sleep (pid 8), was still running 2 s after SIGTERM:
    killed it with SIGKILL
    >>> print(describe_killed([(7, "app"), (8, "sleep"), (9, "sh")], 7, 2, "Ctrl-C"))
    ... # doctest: +NORMALIZE_WHITESPACE
    the command (pid 7) and 2 processes it started, sleep (pid 8) and sh (pid 9), were still
    running 2 s after Ctrl-C: killed them with SIGKILL
    """
    others = [f"{name} (pid {pid})" for pid, name in victims if pid != command]
    after = f"still running {grace:g} s after {cause}: killed"
    if not others:
        return f"the command (pid {command}) was {after} it with SIGKILL"
    some = f"{len(others)} processes" if len(others) > 1 else "a process"
    if len(others) == len(victims):  # the command had ended: only what it started was left
        verb, them = ("were", "them") if len(others) > 1 else ("was", "it")
        return f"{some} the command started, {_listed(others)}, {verb} {after} {them} with SIGKILL"
    some = some.replace("a process", "1 process")
    return (
        f"the command (pid {command}) and {some} it started, {_listed(others)}, "
        f"were {after} them with SIGKILL"
    )


def _listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``, ``a, b, c and 2 more``."""
    if len(items) > _NAMED:
        items = [*items[:_NAMED], f"{len(items) - _NAMED} more"]
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]]))


@dataclass(frozen=True)
class StopResult:
    """What :meth:`ManagedProcess.stop` found and did."""

    returncode: int | None
    """The command's returncode (negative: killed by that signal); None if none was started."""
    killed: bool
    """Whether the grace period ran out and SIGKILL was needed."""
    stuck: tuple[int, ...] = ()
    """PIDs that not even SIGKILL ended (uninterruptible sleep): rare, and worth a warning."""


@dataclass
class _Child:
    pid: int
    exited: anyio.Event = field(default_factory=anyio.Event)
    interrupted: anyio.Event = field(default_factory=anyio.Event)
    interrupt: int | None = None
    """The signal the terminal sent: SIGINT, SIGQUIT, or SIGHUP when it hung up."""
    suspended: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None


class ManagedProcess:
    """One command at a time, run under the guard; made by :func:`open_managed_process`.

    ::

        async with open_managed_process(grace=2) as proc:
            await proc.start(["python", "app.py"])
            returncode = await proc.wait()
    """

    def __init__(
        self, stream: Channel, *, stop_signal: int, grace: float, foreground: bool
    ) -> None:
        self._stream = stream
        self.stop_signal = stop_signal
        self.grace = grace
        self.foreground = foreground
        """Whether each command gets the terminal (becomes the foreground process group)."""
        self._replies, self._reply_stream = anyio.create_memory_object_stream[dict[str, Any]](8)
        self._child: _Child | None = None
        self._last: _Child | None = None
        self._lock = anyio.Lock()
        self._broken = False
        self._gone = anyio.Event()
        """Set once the guard's socket closed: the guard has exited."""
        self._closing = False
        self._kill_requested = False

    @property
    def pid(self) -> int | None:
        """The PID (and process group) of the running command, or None."""
        return self._child.pid if self._child else None

    @property
    def returncode(self) -> int | None:
        """The returncode of the last command that exited (negative: killed by that signal)."""
        return self._last.returncode if self._last else None

    @property
    def interrupted(self) -> bool:
        """Whether the terminal interrupted (Ctrl-C, Ctrl-\\\\) the command started last, or hung
        up while it ran."""
        return self._last is not None and self._last.interrupted.is_set()

    @property
    def interrupt(self) -> int | None:
        """The signal of that interruption: SIGINT, SIGQUIT, or SIGHUP (a hang-up); or None."""
        return self._last.interrupt if self._last is not None else None

    def ended_by_terminal(self, returncode: int) -> bool:
        """Whether the user pressed Ctrl-C (or Ctrl-\\) in the terminal the command held, or
        the terminal hung up, given the ``returncode`` it exited with."""
        if not self.foreground:
            return self.interrupted
        by_terminal = returncode in (-signals.SIGINT, -signals.SIGQUIT) or (
            returncode == -signals.SIGHUP and terminal_hung_up()
        )
        return self.interrupted or by_terminal

    async def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: StrPath | None = None,
    ) -> int:
        """Start ``command`` in a new process group; return its PID. Stop the last one first.

        Raises :class:`~asyncreload.CommandNotFoundError` or
        :class:`~asyncreload.CommandNotExecutableError` when it can't be run.
        """
        if self._child is not None:
            raise CommandError("a command is already running: stop it first")
        request = protocol.spawn(
            command,
            os.environ if env is None else env,
            None if cwd is None else os.fspath(cwd),
            # Not after `bg`: the terminal is the shell's then.
            foreground=self.foreground and holds_terminal(),
        )
        async with self._lock:
            with anyio.CancelScope(shield=True), anyio.fail_after(_MARGIN):
                # Shielded: once asked, the guard will answer; a reply nobody reads would be
                # taken for the answer to the next request.
                reply = await self._request(request)
        if reply["event"] == protocol.ERROR and reply.get("step") == protocol.AT_CWD:
            raise CommandError(f"can't start {command[0]} in {cwd}: {reply['message'].lower()}")
        if reply["event"] == protocol.ERROR:
            raise _start_error(command[0], reply["errno"], reply["message"])
        pid: int = reply["pid"]
        log.debug("started %s (pid %d)", command[0], pid)
        return pid

    async def wait(self) -> int:
        """Wait for the running (or last) command to exit; return its returncode."""
        child = self._child or self._last
        if child is None:
            raise CommandError("no command was started")
        await child.exited.wait()
        if child.returncode is None:
            raise CommandError("the guard process exited unexpectedly")
        return child.returncode

    async def wait_interrupted(self) -> None:
        """Wait until the terminal interrupts the running command (the user pressed Ctrl-C)."""
        child = self._child or self._last
        if child is None:
            await anyio.sleep_forever()
        else:
            await child.interrupted.wait()

    async def wait_suspended(self) -> None:
        """Wait until the command, holding the terminal, is stopped (Ctrl-Z); the guard has given
        the terminal back by then. Call :meth:`resume` to continue it."""
        child = self._child
        if child is None:
            await anyio.sleep_forever()
        else:
            await child.suspended.wait()

    async def watch_guard(self) -> None:
        """Raise :class:`~asyncreload.CommandError` once the guard exits unexpectedly (it was
        killed, say); never return otherwise. Its keeper stops what it held: commands can no
        longer be started or stopped, so the caller should wind up."""
        await self._gone.wait()
        if not self._closing:
            raise CommandError("the guard process exited unexpectedly")
        await anyio.sleep_forever()

    async def resume(self) -> None:
        """Continue the command after :meth:`wait_suspended`; it gets the terminal back if we
        hold it (``fg``), and runs without it if not (``bg``)."""
        child = self._child
        if child is not None and child.suspended.is_set() and not self._broken:
            child.suspended = anyio.Event()
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._send(protocol.resume(foreground=holds_terminal()))

    async def stop(
        self,
        *,
        signal: int | None = None,
        grace: float | None = None,
        signalled: bool = False,
    ) -> StopResult:
        """Stop the command and everything it started; reap them all.

        The stop signal (default: the one given to :func:`open_managed_process`) goes to the
        command's process group and to every descendant that left it; whatever is still alive
        after ``grace`` seconds gets SIGKILL. With ``signalled``, the group is not sent the
        signal again (the terminal sent it SIGINT already). Also cleans up after a command that
        exited by itself but left processes behind; returns at once when there's nothing to stop.

        Shielded from cancellation, and bounded: it takes at most ``grace`` seconds plus the time
        SIGKILL takes.
        """
        grace = self.grace if grace is None else grace
        sig = int(self.stop_signal if signal is None else signal)
        pid = self.pid
        self._kill_requested = False
        request = protocol.stop(sig, grace, signalled=signalled)
        async with self._lock:
            with anyio.CancelScope(shield=True), anyio.fail_after(grace + _MARGIN):
                reply = await self._request(request)
        # The guard reports the command's exit before the end of the stop, so _child is None now
        # unless it is stuck.
        self._child = None
        killed = bool(reply.get("killed"))
        victims = [(int(p), str(name)) for p, name in reply.get("victims", ())]
        if killed and victims and grace > 0 and not self._kill_requested:
            # Else a server whose shutdown takes longer than the grace period loses its cleanup
            # without a word (and a Python command can miss a SIGINT that lands just before it
            # blocks in a sleep: CPython notices it only when the sleep ends).
            cause = "Ctrl-C" if signalled else _signal_name(sig)
            log.warning("%s", describe_killed(victims, pid, grace, cause))
        stuck = tuple(reply.get("stuck", ()))
        if stuck:
            log.warning("processes that SIGKILL could not end: %s", ", ".join(map(str, stuck)))
        return StopResult(self.returncode, killed, stuck)

    async def kill(self) -> None:
        """During a :meth:`stop`, SIGKILL everything now instead of waiting out the grace period."""
        self._kill_requested = True
        if not self._broken:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._send(protocol.kill())

    # -- the socket -----------------------------------------------------------------------------

    async def _send(self, message: Mapping[str, Any]) -> None:
        await self._stream.send_message(message)

    async def _request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if self._broken:
            raise CommandError("the guard process exited unexpectedly")
        try:
            await self._send(message)
            return await self._reply_stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise CommandError("the guard process exited unexpectedly") from None

    async def _read(self, *, task_status: TaskStatus[int]) -> None:
        """Route the guard's messages: replies to the waiting request, events to the child.

        Shielded: a cancellation of the caller must not end it, since stopping the command on
        the way out needs the guard's replies. It ends when the socket closes.
        """
        with anyio.CancelScope(shield=True):
            try:
                ready = await self._receive()
                task_status.started(ready["pid"])
                while True:
                    self._dispatch(await self._receive())
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                if not self._closing:
                    # Not an error line here: whoever waits on it raises CommandError, which
                    # says it (once). The keeper stops what the guard held.
                    log.debug("the guard process exited unexpectedly")
            finally:
                self._broken = True
                self._gone.set()
                self._replies.close()
                for child in (self._child, self._last):
                    if child is not None:
                        child.exited.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._stream.receive_message()

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event == protocol.STARTED:
            # Set here, not in start(): the exit of a quick command may be the very next message,
            # read before start() resumes.
            self._child = self._last = _Child(message["pid"])
        child = self._child
        if event == protocol.EXITED:
            if child is not None and child.pid == message["pid"]:
                child.returncode = message["returncode"]
                child.exited.set()
                self._child = None
        elif event == protocol.SUSPENDED:
            if child is not None and child.pid == message["pid"]:
                child.suspended.set()
        elif event == protocol.INTERRUPT:
            sig = int(message.get("signal", signals.SIGINT))
            # A SIGHUP is the terminal's only if it hung up: else somebody sent the command's
            # group one (to make a server reload its configuration, say).
            if child is not None and (sig != signals.SIGHUP or terminal_hung_up()):
                child.interrupt = sig
                child.interrupted.set()
        else:
            self._replies.send_nowait(message)


def _signal_name(sig: int) -> str:
    try:
        return signals.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _start_error(name: str, code: int, message: str) -> CommandError:
    if code in (errno.ENOENT, errno.ENOTDIR):
        return CommandNotFoundError(f"command not found: {name}")
    if code in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
        return CommandNotExecutableError(f"command not executable: {name} ({message.lower()})")
    return CommandError(f"can't run {name}: {message}")


def terminal_hung_up() -> bool:
    """Whether our terminal (stdin) hung up: once it has, asking it anything fails."""
    try:
        os.tcgetpgrp(0)
    except OSError:
        return True
    return False


def holds_terminal() -> bool:
    """Whether this process may give the terminal to a command: stdin is a terminal and our
    process group is its foreground group (not so when started in the background with ``&``)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


@contextlib.asynccontextmanager
async def open_managed_process(
    *,
    stop_signal: int = signals.SIGTERM,
    grace: float = DEFAULT_GRACE,
    foreground: bool = False,
) -> AsyncIterator[ManagedProcess]:
    """Start the guard; yield a :class:`ManagedProcess`; on exit stop the command and the guard.

    ``stop_signal`` and ``grace`` are the defaults for :meth:`ManagedProcess.stop` and also what
    the guard does by itself if this process dies. With ``foreground`` (only honoured when
    :func:`holds_terminal`), each command becomes the terminal's foreground process group, so it
    can read the terminal (``input()``, ``breakpoint()``) and gets the terminal's Ctrl-C.
    """
    missing = process_trees_missing("run")
    if missing is not None:
        raise CommandError(missing)
    terminal_pgrp = os.getpgrp() if foreground and holds_terminal() else None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    config: dict[str, object] = {
        "fd": theirs.fileno(),
        "signal": int(stop_signal),
        "grace": grace,
        "terminal_pgrp": terminal_pgrp,
        "path": GUARD_PATH,
    }
    # A copy out of a zip is deleted once the guard has read it (or on the way out, whatever
    # happens); an installed file is used in place.
    with contextlib.ExitStack() as script:
        try:
            path = script.enter_context(importlib.resources.as_file(GUARD))
            guard = await anyio.open_process(
                [sys.executable, "-I", str(path), json.dumps(config)],
                stdin=None,
                stdout=None,
                stderr=None,
                pass_fds=[theirs.fileno()],
            )
        except OSError as e:
            ours.close()
            raise CommandError(f"can't start the guard process: {e}") from e
        finally:
            theirs.close()  # the guard's copy is the only one: its death must reach us as EOF
        stream = Channel(ours)
        proc = ManagedProcess(
            stream,
            stop_signal=stop_signal,
            grace=grace,
            foreground=terminal_pgrp is not None,
        )
        try:
            async with anyio.create_task_group() as tg:
                try:
                    with anyio.fail_after(_MARGIN):
                        await tg.start(proc._read)
                    script.close()
                    yield proc
                finally:
                    with anyio.CancelScope(shield=True):
                        await _shut_down(proc, guard)
                        await stream.aclose()  # ends the reader
        finally:
            proc._reply_stream.close()
            proc._replies.close()
            with anyio.CancelScope(shield=True):
                await stream.aclose()
                if guard.returncode is None:
                    guard.kill()
                    await guard.wait()


async def _shut_down(proc: ManagedProcess, guard: Process) -> None:
    """Stop the command, then half-close the socket: the guard sees EOF, and exits.

    Waits for both the keeper (``guard``: it stops what a killed guard left) and the guard (which
    stops everything if the keeper was killed), so nothing outlives us. The keeper is killed
    only as a last resort: on EOF everything stops within the grace period by itself.
    """
    if not proc._broken:
        with contextlib.suppress(CommandError, TimeoutError):
            await proc.stop()
    proc._closing = True
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await proc._stream.send_eof()
    with anyio.move_on_after(proc.grace + _MARGIN):
        await guard.wait()
        await proc._gone.wait()
    if guard.returncode is None:
        log.error("the guard process did not exit; killing it")
