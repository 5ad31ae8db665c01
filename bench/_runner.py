"""One watcher under test, in its own process: start it, read its events with deadlines, stop it.

The runner is the only child of its own session, so stopping it means signalling its whole
process group: terminate, wait, then kill; then any descendant that left the group (a reloader
may start its command in a group of its own) is killed too. The kernel also kills the runner if
the harness dies (``PR_SET_PDEATHSIG``), so an interrupted run leaves no watcher behind.

The same machinery starts the reloaders of the restart and serve measurements: their stdout may
carry other lines than the protocol's JSON (a reloader's own messages), which are skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = ["Event", "RunnerDied", "RunnerProcess", "Spawned", "running", "spawned", "stop_group"]

Event = dict[str, Any]

_PR_SET_PDEATHSIG = 1
_STOP_GRACE = 3.0


class RunnerDied(RuntimeError):
    """The runner exited while the harness was waiting for it."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec; the harness is single-threaded, so this is safe.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class RunnerProcess:
    """A started runner; ``history`` keeps every event read so far, in order."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.history: list[Event] = []
        self.armed = False
        self.rearms = False
        """Set by the caller for watchers that are disarmed by each batch (until "armed")."""
        self.strays = 0
        """Descendants that outlived the process group when it was stopped (see stop_group)."""
        self._buffer = b""
        self._pending: list[Event] = []
        assert proc.stdout is not None
        self._stdout: IO[bytes] = proc.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.stderr_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def _record(self, event: Event) -> None:
        self.history.append(event)
        if event["ev"] == "armed":
            self.armed = True
        elif event["ev"] == "batch" and self.rearms:
            self.armed = False

    def _read_available(self, timeout: float) -> None:
        """Wait up to ``timeout`` for output; parse whole lines into pending events."""
        if not self._selector.select(max(timeout, 0.0)):
            return
        chunk = self._stdout.read(1 << 20)
        if chunk is None:  # spurious wake-up on a non-blocking pipe
            return
        if not chunk:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_STOP_GRACE)
            raise RunnerDied(
                f"runner exited with status {self.proc.returncode}:\n{self.stderr_tail()}"
            )
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            event = _parse(line)
            if event is not None:
                self._record(event)
                self._pending.append(event)

    def wait_for(self, match: Callable[[Event], bool], deadline: float) -> Event | None:
        """The first new event that matches, or None once ``deadline`` (monotonic) passes.

        Events read on the way that don't match are dropped from the queue (they stay in
        ``history``): a late duplicate report must not be taken for the next trial's.
        """
        while True:
            while self._pending:
                event = self._pending.pop(0)
                if match(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._read_available(remaining)

    def drain(self, seconds: float) -> None:
        """Keep reading for ``seconds``; used to space trials apart, not to wait for anything."""
        self.wait_for(lambda _event: False, time.monotonic() + seconds)

    def wait_armed(self, deadline: float) -> bool:
        if self.armed:
            return True
        return self.wait_for(lambda e: e["ev"] == "armed", deadline) is not None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        """Stop the runner (see :func:`stop_group`); ``strays`` counts what outlived its group."""
        self._selector.close()
        try:
            self.strays = stop_group(self.proc)
        finally:
            self._stdout.close()


def _parse(line: bytes) -> Event | None:
    """One protocol line; None for anything else a process printed."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "ev" in event else None


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def stop_group(proc: subprocess.Popen[bytes]) -> int:
    """Terminate ``proc``'s process group, wait, then kill it; then kill what is left.

    What is left: descendants that were alive when the stop began and outlived their group, for
    instance a command a reloader started in a process group of its own. Returns their number
    (0 when the group took everything with it).
    """
    descendants = _descendants(proc.pid)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            continue
        break
    # psutil.Process remembers the start time, so a recycled pid is not mistaken for ours.
    _gone, alive = psutil.wait_procs(descendants, timeout=_STOP_GRACE)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=_STOP_GRACE)
    return len(alive)


@contextlib.contextmanager
def running(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, stderr_path: Path
) -> Iterator[RunnerProcess]:
    """Start ``command`` in a new session; always stop its process group on the way out."""
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (the harness is single-threaded)
        )
    runner = RunnerProcess(proc, stderr_path)
    try:
        yield runner
    finally:
        runner.stop()


@dataclass
class Spawned:
    """A process started by :func:`spawned`; ``strays`` is set once it has been stopped."""

    proc: subprocess.Popen[bytes]
    strays: int = 0


@contextlib.contextmanager
def spawned(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Iterator[Spawned]:
    """Start ``command`` in a new session, its stdout and stderr to ``log_path``; always stop its
    process group (and stray descendants) on the way out.

    For a process whose output is only kept for the record: a server's access log must not fill
    a pipe nobody reads.
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (the harness is single-threaded)
        )
    handle = Spawned(proc)
    try:
        yield handle
    finally:
        handle.strays = stop_group(proc)
