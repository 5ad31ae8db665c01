"""Small helpers for tests that wait on the watcher: conditions with deadlines, never sleeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
import pytest

from asyncreload import Change, ChangeKind, ChangeStream, Source

DEADLINE = 20.0  # generous: CI machines are 2 noisy cores; a pass takes a fraction of this


async def collect_until(
    changes: ChangeStream,
    done: Callable[[list[Change]], bool],
    *,
    timeout: float = DEADLINE,
) -> list[Change]:
    """Gather changes from ``changes`` until ``done(seen)``; fail after ``timeout`` seconds."""
    seen: list[Change] = []
    with anyio.fail_after(timeout):
        async for batch in changes:
            seen.extend(batch)
            if done(seen):
                return seen
    raise AssertionError(f"the stream ended; seen: {seen}")


def has(path: Path | str, kind: ChangeKind | None = None, source: Source | None = None):  # type: ignore[no-untyped-def]
    """A predicate for :func:`collect_until`: a change at ``path`` (of a kind, from a source)."""
    target = os.fspath(path)

    def check(seen: Iterable[Change]) -> bool:
        return any(
            c.path == target
            and (kind is None or c.kind is kind)
            and (source is None or c.source is source)
            for c in seen
        )

    return check


async def eventually(
    condition: Callable[[], object],
    *,
    timeout: float = DEADLINE,
    what: str = "condition",
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` on the event loop (other tasks keep running) until it holds; fail after
    ``timeout`` seconds, saying what was awaited and, with ``detail``, what was seen."""
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
        return
    seen = f"; {detail()}" if detail is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")


def all_of(*predicates: Callable[[list[Change]], bool]) -> Callable[[list[Change]], bool]:
    return lambda seen: all(p(seen) for p in predicates)


def without_dac_override() -> list[str]:
    """A command prefix that runs a child without root's power to ignore file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE with")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


CLI_MAIN = "from asyncreload.cli import main\nmain()\n"
"""The CLI, as a ``CLI(script=...)``."""


def reading_by_path(program: str | None = None) -> str:
    """A ``CLI(script=...)`` running ``program`` (None: the CLI) with the stat poller reading
    directories by path, as it must on Windows, rather than through descriptors."""
    return "import asyncreload._platform\nasyncreload._platform.DIR_FD = False\n" + (
        program or CLI_MAIN
    )


_leftovers: list[CLI] = []
"""CLIs that :meth:`CLI.stop` could not reap yet."""


class CLI:
    """``python -m asyncreload ...`` in a subprocess, its stdout and stderr read line by line.

    With ``script``, ``python -c script ...`` instead: a program that embeds the library.
    """

    def __init__(
        self,
        *args: str,
        cwd: Path | None = None,
        prefix: Iterable[str] = (),
        script: str | None = None,
    ) -> None:
        program = ["-m", "asyncreload"] if script is None else ["-c", script]
        self.process = subprocess.Popen(
            [*prefix, sys.executable, *program, *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        streams = ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        self._readers = [
            threading.Thread(target=self._read, args=stream, daemon=True) for stream in streams
        ]
        for t in self._readers:
            t.start()

    def _read(self, pipe: object, lines: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(
        self, predicate: Callable[[str], bool], *, stream: str = "stdout", timeout: float = DEADLINE
    ) -> str:
        """The first line of ``stream`` matching ``predicate``, waiting up to ``timeout``."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._alive()):
                    raise AssertionError(
                        f"no matching line on {stream} within {timeout} s; "
                        f"stdout={self.stdout!r} stderr={self.stderr!r}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        """Wait for the line the CLI prints once every watch is in place."""
        self.wait_line(lambda s: s.startswith("asyncreload: watching "), stream="stderr",
                       timeout=timeout)  # fmt: skip

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self._readers)

    def json_changes(self) -> list[dict[str, str]]:
        return [c for line in self.stdout for c in json.loads(line)["changes"]]

    def wait_change(self, path: Path | str, source: str | None = None, **kw: float) -> None:
        target = os.fspath(path)

        def match(line: str) -> bool:
            try:
                changes = json.loads(line)["changes"]
            except (ValueError, KeyError):
                return False
            return any(
                c["path"] == target and (source is None or c["source"] == source) for c in changes
            )

        self.wait_line(match, **kw)

    def stop(self, timeout: float = DEADLINE) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL) and its readers; its exit code.

        Never waits without a bound. A process with a thread waiting for a stopped FUSE daemon
        that had already taken its request can't exit, not even on SIGKILL, until the daemon
        answers: it is then left to :meth:`reap_leftovers` (None), and so are its pipes, since
        closing a pipe that a reader thread is still reading waits for that reader.
        """
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _leftovers.append(self)
                return None
        self._close(timeout)
        return code

    def _close(self, timeout: float) -> None:
        for t in self._readers:
            t.join(timeout)
        if any(t.is_alive() for t in self._readers):
            return  # a descendant still holds the pipes: they close with it (daemon readers)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    @staticmethod
    def reap_leftovers(timeout: float = DEADLINE) -> None:
        """Wait for the processes :meth:`stop` had to leave (once what held them is gone)."""
        while _leftovers:
            cli = _leftovers.pop()
            cli.process.wait(timeout=timeout)
            cli._close(timeout)

    def __enter__(self) -> CLI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
