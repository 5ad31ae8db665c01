"""The restart loop: run a command, restart it after each batch of changes, lose no change.

:class:`ProcessRunner` consumes the watcher's stream of batches and drives a
:class:`~.process.ManagedProcess`. The stream is pull-based: while a restart is under
way nothing is pulled, so changes made meanwhile fold into the next batch. A restart stops the
command at once; after a burst (a checkout, a build: :data:`~.merge.BURST_PATHS` or
more paths) it starts it again only when changes have stopped coming for a moment
(:data:`~.waiting.SETTLE_QUIET`, counted from the start of the stop), so the burst is one restart
even when it pauses; a save of a file or two restarts at once. What comes after the start causes
exactly one more restart.

:class:`Backoff` is the pure part: how long to wait before restarting a command that keeps
exiting by itself.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal as signals
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import anyio
from anyio.abc import TaskStatus

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .._exceptions import (
    AsyncReloadError,
    CommandError,
    ConfigError,
)
from .._loopguard import LoopGuard, changed_at
from .._watch import (
    BURST_PATHS,
    QUANTITIES,
    ChangeBatch,
    ChangeStream,
    WatcherOptions,
    current_directory,
    fold,
    open_watcher,
)
from .command import DirectoryGone, argv_of, check_command, start, start_failure_status, words_of
from .process import (
    DEFAULT_GRACE,
    ManagedProcess,
    StrPath,
    open_managed_process,
)
from .report import Report, log
from .requests import Requests
from .restarts import Then, step
from .waiting import settle, wait

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11

__all__ = ["Backoff", "OnExit", "ProcessRunner", "RunOptions", "parse_signal", "run_process"]


CWD_RETRY = 1.0
"""Seconds between looks for a working directory that is gone (moved or removed), to start the
command again once it is back."""


class OnExit(str, enum.Enum):
    """What to do when the command exits by itself."""

    WAIT = "wait"
    """Report its exit code and restart it on the next change."""
    RESTART = "restart"
    """Restart it at once; back off exponentially while it keeps exiting quickly."""
    EXIT = "exit"
    """Stop watching; :func:`run_process` returns the command's returncode."""

    def __str__(self) -> str:
        return self.value


@dataclass
class Backoff:
    """Delays before restarting a command that exits by itself, so a crash loop is never hot.

    A command that ran for ``healthy`` seconds or more is restarted at once; the first quick exit
    too; after that each quick exit doubles the delay, from ``first`` up to ``cap``.

    >>> b = Backoff()
    >>> [b.after(0.01) for _ in range(5)], b.after(60.0), b.after(0.01)
    ([0.0, 0.1, 0.2, 0.4, 0.8], 0.0, 0.0)
    """

    first: float = 0.1
    cap: float = 10.0
    healthy: float = 5.0
    quick_exits: int = 0

    def after(self, ran_for: float) -> float:
        """The delay before restarting a command that ran for ``ran_for`` seconds."""
        if ran_for >= self.healthy:
            self.quick_exits = 0
            return 0.0
        self.quick_exits += 1
        if self.quick_exits == 1:
            return 0.0
        return min(self.first * 2.0 ** (self.quick_exits - 2), self.cap)


def parse_signal(value: str | int) -> signals.Signals:
    """A signal from a name or a number: ``TERM``, ``SIGTERM``, ``sigterm``, ``15``.

    >>> parse_signal("int"), parse_signal(1)
    (<Signals.SIGINT: 2>, <Signals.SIGHUP: 1>)
    """
    text = str(int(value)) if isinstance(value, int) else value.strip().upper()  # Signals too
    try:
        if text.isdigit():
            return signals.Signals(int(text))
        return signals.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise ConfigError(f"unknown signal: {value!r} (try TERM, INT, HUP, QUIT or KILL)") from None


class ProcessRunner:
    """Run a command under the watcher and restart it on changes; see :func:`run_process`.

    Use the object when you need to steer it while it runs: :meth:`restart` and :meth:`stop`
    (call them from the event loop that runs :meth:`run`)::

        runner = ProcessRunner(["python", "app.py"], "src", grace=2)
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)   # returns once the command has started
            ...
            runner.stop()                # run() returns the command's returncode
    """

    def __init__(
        self,
        command: Sequence[str] | str,
        *paths: StrPath,
        shell: bool = False,
        stop_signal: int | str = signals.SIGTERM,
        grace: float = DEFAULT_GRACE,
        on_exit: OnExit | str = OnExit.WAIT,
        clear: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: StrPath | None = None,
        foreground: bool = False,
        **watch_options: Unpack[WatcherOptions],
    ) -> None:
        self.command = words_of(command, shell=shell)
        QUANTITIES["grace"].check("grace", grace)
        self.argv = argv_of(self.command, shell=shell)
        self.paths = paths
        self.shell = shell
        self.stop_signal = parse_signal(stop_signal)
        self.grace = grace
        self.on_exit = OnExit(on_exit)
        self.clear = clear
        self.env = env
        self.cwd = None if cwd is None else os.fspath(cwd)
        self._cwd = ""
        """The working directory of every start, resolved once: a path, not the directory, so a
        directory removed and made again is the command's again (and no ``os.getcwd()`` fails)."""
        self.foreground = foreground
        self.watch_options = watch_options
        self.starts = 0
        """How many times the command was started (``ASYNCRELOAD_RESTART`` is this, before)."""
        self._requests = Requests()
        self._guard = LoopGuard()
        self._report = Report()
        self.on_start: Callable[[int], None] | None = None
        """Called with the command's PID after each start (``run --live-reload-port``)."""

    def restart(self) -> None:
        """Restart the command now, as if a file had changed (e.g. on SIGHUP)."""
        self._requests.ask_restart()

    def stop(self, *, force: bool = False) -> None:
        """Stop the command gracefully and return from :meth:`run`; ``force``: SIGKILL it now."""
        self._requests.ask_stop(force=force)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> int | None:
        """Watch, run the command, restart it on changes, until :meth:`stop` or the command's exit
        (with ``on_exit="exit"``) or the terminal's Ctrl-C.

        Returns the command's returncode (as in :mod:`subprocess`: negative for a signal), or None
        if no command was running when it was told to stop. Cancelling it stops the command
        gracefully (stop signal, grace period, SIGKILL) before the cancellation goes on.
        """
        here = current_directory()
        cwd = self._cwd = here if self.cwd is None else os.path.join(here, self.cwd)
        self._report.cwd = cwd
        env = os.environ if self.env is None else self.env
        if not self.shell:
            check_command(self.argv[0], env=env, cwd=cwd)
        # A stop while the watcher starts (which waits for a hung mount as long as it hangs)
        # ends the start: the loop that would see the stop request is not running yet.
        result = None
        starting = self._requests.begin()
        try:
            with starting:
                async with (
                    open_managed_process(
                        stop_signal=self.stop_signal, grace=self.grace, foreground=self.foreground
                    ) as proc,
                    open_watcher(*self.paths, **self.watch_options) as changes,
                    anyio.create_task_group() as tg,
                ):
                    self._requests.started()
                    tg.start_soon(self._kill_when_forced, proc)
                    result = await self._loop(proc, changes, task_status)
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            _raise_sole_error(group)
            raise
        finally:
            self._requests.started()
        return result

    async def _kill_when_forced(self, proc: ManagedProcess) -> None:
        await self._requests.forced()
        await proc.kill()

    # -- the loop -------------------------------------------------------------------------------

    async def _loop(
        self, proc: ManagedProcess, changes: ChangeStream, task_status: TaskStatus[None]
    ) -> int | None:
        batch: ChangeBatch = ()
        why = ""
        backoff = Backoff()
        while not self._requests.stop:
            began = anyio.current_time()
            await proc.stop()
            stopped = anyio.current_time()
            # Only a burst is held back: a save of a file or two restarts at once.
            burst = why == "change" and len(batch) >= BURST_PATHS
            if burst:
                batch = await settle(changes, batch, since=began)
            else:
                batch = fold(batch, changes.take_nowait())
            settled = anyio.current_time()
            if burst:
                self._report.held(settled - stopped)
            # This start answers a restart asked for during the stop (a SIGHUP, say): else it
            # would be stopped again at once.
            self._requests.restart = False
            first = self.starts == 0
            failure = await self._start(proc, batch)
            self._guard.settled()
            started = anyio.current_time()
            gone = isinstance(failure, DirectoryGone)
            if first:
                task_status.started()
            elif not gone:
                self._report.restarted(why, batch, stopped - began, started - settled)
            running = failure is None
            # Once the command is gone: restart after this many seconds (None: on a change).
            delay: float | None = None
            if failure:
                if self.on_exit is OnExit.EXIT:
                    return start_failure_status(failure)
                if gone:
                    delay = CWD_RETRY
                    self._report.cwd_gone(failure)
                else:
                    delay = self._exit_delay(backoff, 0.0)
                    self._report.exited(start_failure_status(failure), failure, delay)

            while True:  # until there's a reason to restart
                wake = await wait(
                    proc, changes, self._requests, admit=self._admit, child=running, delay=delay
                )
                returncode = proc.returncode
                # The changes that came while the directory was gone are this start's too.
                pending = fold(batch, wake.batch) if gone else wake.batch
                then = step(
                    wake,
                    running=running,
                    stop_requested=self._requests.stop,
                    restart_requested=self._requests.restart,
                    exit_ends_run=self.on_exit is OnExit.EXIT,
                    by_terminal=wake.exited and proc.ended_by_terminal(_known(returncode)),
                    hangup=proc.interrupt == signals.SIGHUP,
                    changes_pending=bool(pending),
                )
                if then.suspend:
                    await _suspend(proc)
                if wake.exited:
                    running = False
                if then.exited:
                    delay = self._exit_delay(backoff, anyio.current_time() - started)
                    self._report.exited(_known(returncode), None, delay)
                if then.then is Then.FINISH:
                    return await self._finish(proc, had_child=then.had_child,
                                              signalled=then.signalled)  # fmt: skip
                if then.then is Then.EXIT:
                    self._report.ended(_known(returncode))
                    await proc.stop()  # whatever it left behind
                    return returncode
                if then.then is Then.RESTART:
                    batch, why = pending, then.why
                    self._requests.restart = False
                    break
        if self.starts == 0:
            task_status.started()
        return await self._finish(proc, had_child=False)

    def _exit_delay(self, backoff: Backoff, ran_for: float) -> float | None:
        return backoff.after(ran_for) if self.on_exit is OnExit.RESTART else None

    async def _start(self, proc: ManagedProcess, batch: ChangeBatch) -> CommandError | None:
        """Start the command; None, or why it can't be started (raised on the first start)."""
        # Abandonable: the directory may be on a mount that stopped answering.
        there = await anyio.to_thread.run_sync(os.path.isdir, self._cwd, abandon_on_cancel=True)
        if self.starts and not there:  # no start to count: none began
            return DirectoryGone(f"can't start the command: {self._cwd} is gone")
        first = self.starts == 0
        self.starts += 1
        try:
            pid = await start(proc, self.argv, env=self.env, cwd=self._cwd, batch=batch,
                              restart=self.starts - 1, clear=self.clear)  # fmt: skip
        except CommandError as e:
            if first:
                raise
            return e
        if self.on_start is not None:
            self.on_start(pid)
        if first:
            self._report.watching(self.paths, self.argv)
        return None

    def _admit(self, batch: ChangeBatch) -> ChangeBatch:
        """``batch``, or nothing when it holds only paths that keep restarting the command."""
        verdict = self._guard.admit({c.path: changed_at(c) for c in batch})
        self._report.muted(verdict.muted, self.paths)
        return batch if verdict.paths else ()

    async def _finish(
        self, proc: ManagedProcess, *, had_child: bool, signalled: bool = False
    ) -> int | None:
        """Stop the command (and what it left); its returncode if it was running, else None."""
        grace = 0.0 if self._requests.force else None
        await proc.stop(signalled=signalled, grace=grace)
        return proc.returncode if had_child else None


def _known(returncode: int | None) -> int:
    """The returncode of a command that has exited."""
    assert returncode is not None
    return returncode


async def _suspend(proc: ManagedProcess) -> None:
    """The command, holding the terminal, was stopped (Ctrl-Z): stop our own job as well, as a
    shell expects of a job whose process stopped, so the shell gives the prompt back; once we
    are continued (``fg`` or ``bg``), continue the command."""
    log.debug("the command was suspended; suspending asyncreload's job")
    # Not delivered when our process group is orphaned (a shell without job control started us,
    # so nobody could continue us): the command is then continued at once.
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signals.SIGTSTP)
    await proc.resume()


def _raise_sole_error(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise an :class:`AsyncReloadError` that is the only error in ``group``, unwrapped, so callers
    can ``except CommandNotFoundError`` (task groups wrap whatever crosses them)."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                collect(sub)
        else:
            leaves.append(exc)

    collect(group)
    if len(leaves) == 1 and isinstance(leaves[0], AsyncReloadError):
        raise leaves[0]


class CommandOptions(TypedDict, total=False):
    """:class:`ProcessRunner`'s own keyword arguments (see :func:`run_process`)."""

    shell: bool
    stop_signal: int | str
    grace: float
    on_exit: OnExit | str
    clear: bool
    env: Mapping[str, str] | None
    cwd: StrPath | None
    foreground: bool


class RunOptions(CommandOptions, WatcherOptions, total=False):
    """:func:`run_process`'s keyword arguments: the command's and the watcher's, passed on to
    :class:`ProcessRunner` as they are (a test holds this equal to its signature)."""


async def run_process(
    command: Sequence[str] | str, *paths: StrPath, **options: Unpack[RunOptions]
) -> int | None:
    """Run ``command``, restart it whenever something under ``paths`` changes; no orphan, ever.

    ::

        # restart the app on every change under src/, until cancelled
        await asyncreload.run_process(["python", "app.py"], "src", exclude=["*.log"])

    ``paths`` default to the current directory; ``options`` are :class:`ProcessRunner`'s
    (``shell=False``, ``stop_signal=SIGTERM``, ``grace=5``, ``on_exit="wait"``, ``clear=False``,
    ``env=None``, ``cwd=None``, ``foreground=False``) and :func:`~asyncreload.open_watcher`'s
    (``poll``, ``debounce``, ``include``, ...). A restart sends
    ``stop_signal`` to the command's process group (and to whatever left it), waits ``grace``
    seconds, SIGKILLs what is left, and starts the command again with
    ``ASYNCRELOAD_CHANGES`` (a JSON list of the changes) and ``ASYNCRELOAD_RESTART`` (0, 1, ...)
    added to ``env`` (default: this process's environment, which is never modified).
    ``on_exit`` says what to do when the command exits by itself (see :class:`OnExit`); with
    ``shell`` the command is a ``/bin/sh -c`` script (a list of words is joined with spaces
    into one script, as ssh does); ``clear`` clears the screen before each
    start; ``foreground`` hands the terminal to the command, when this process holds it.
    Every start is in ``cwd`` (default: the current directory when it begins), by its path: while
    no directory by that name exists, a start waits for one (one warning, a look each second).

    Returns the command's returncode once it exits with ``on_exit="exit"``, or when Ctrl-C in the
    terminal it holds stopped it. Cancellation stops the command gracefully, then kills it.
    To steer it while it runs (restart or stop on request), use :class:`ProcessRunner`.
    """
    runner = ProcessRunner(command, *paths, **options)
    return await runner.run()
