"""The managed process and its guard: real processes, checked by PID in /proc, on asyncio and trio.

The command used throughout is ``CHILD`` (below): a small Python program that records each start
(with its environment and the PIDs it spawned) as a JSON line, and then behaves as its flags say.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncreload import (
    CommandNotExecutableError,
    CommandNotFoundError,
    ManagedProcess,
    open_managed_process,
)
from asyncreload._guard import descendants, parse_stat
from asyncreload._process import describe_returncode, returncode_to_status

pytestmark = pytest.mark.anyio

DEADLINE = 20.0  # generous: CI is two noisy cores; a pass takes a fraction of this

CHILD = r"""
import json, os, signal, subprocess, sys, time

log, *flags = sys.argv[1:]

def record(**fields):
    fields["pid"] = os.getpid()
    with open(log, "a") as f:  # one short O_APPEND write: atomic
        f.write(json.dumps(fields) + "\n")

def on_term(*_):
    record(event="term")
    if "stubborn" in flags:
        return
    if "slow-stop" in flags:
        time.sleep(1.0)
    sys.exit(0)

signal.signal(signal.SIGTERM, signal.SIG_IGN if "ignore-term" in flags else on_term)
if "slow-start" in flags:
    record(event="boot", restart=int(os.environ.get("ASYNCRELOAD_RESTART", "-1")))
    time.sleep(0.5)
spawned = []
if "grandchildren" in flags:
    # one in our group, one that left it with setsid(), one double-forked (parent gone)
    spawned.append(subprocess.Popen(["sleep", "1000"]).pid)
    spawned.append(subprocess.Popen(["sleep", "1001"], start_new_session=True).pid)
    out = subprocess.run(["sh", "-c", "sleep 1002 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    spawned.append(int(out))
changes = os.environ.get("ASYNCRELOAD_CHANGES")
record(
    event="start",
    restart=int(os.environ.get("ASYNCRELOAD_RESTART", "-1")),
    changes=None if changes is None else json.loads(changes),
    truncated=os.environ.get("ASYNCRELOAD_CHANGES_TRUNCATED"),
    spawned=spawned,
    pgid=os.getpgrp(),
    cwd=os.getcwd(),
    marker=os.environ.get("MARKER"),
    t=time.monotonic(),
)
for flag in flags:
    if flag.startswith("exit"):
        sys.exit(int(flag[4:]))
while True:
    time.sleep(1)
"""


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Journal:
    """The JSON lines the children append to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        lines = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
        return [e for e in lines if event is None or e["event"] == event]

    def starts(self) -> list[dict[str, Any]]:
        return self.entries("start")

    async def wait(
        self, predicate: Callable[[Journal], object], what: str, timeout: float = DEADLINE
    ) -> None:
        await wait_until(lambda: predicate(self), what, timeout=timeout, journal=self)

    async def wait_starts(self, n: int, timeout: float = DEADLINE) -> dict[str, Any]:
        await self.wait(lambda j: len(j.starts()) >= n, f"{n} start(s)", timeout)
        return self.starts()[n - 1]


async def wait_until(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = DEADLINE,
    journal: Journal | None = None,
) -> None:
    """Poll ``condition`` until it's true; fail after ``timeout`` seconds (no bare sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f"; journal: {journal.entries()}" if journal else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        await anyio.sleep(0.02)


def child_command(journal: Journal, *flags: str) -> list[str]:
    script = journal.path.with_name("child.py")
    script.write_text(CHILD)
    return [sys.executable, str(script), str(journal.path), *flags]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (field 22), to tell it from a reused PID; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


class Tracked:
    """PIDs noted while they ran; alive() is True while any of them (not a reuse) still runs."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = {pid: start_time(pid) for pid in pids}
        assert all(t is not None for t in self.pids.values()), self.pids

    def alive(self) -> list[int]:
        return [pid for pid, t in self.pids.items() if start_time(pid) == t]


# -- pure parts ----------------------------------------------------------------------------------


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    assert parse_stat("7 (a) b) c) R 1 7 7 0") == ("R", 1, 7)


def test_descendants_walks_the_real_process_tree() -> None:
    import subprocess

    outer = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:

        def inner() -> list[int]:
            return [p for p in descendants(outer.pid) if p != outer.pid]

        deadline = time.monotonic() + DEADLINE
        while not inner():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert outer.pid in descendants(os.getpid())
        assert set(inner()) <= set(descendants(os.getpid()))
    finally:
        os.killpg(os.getpgid(outer.pid), 0)  # still ours
        for pid in [*descendants(outer.pid), outer.pid]:
            os.kill(pid, signal.SIGKILL)
        outer.wait()


def test_returncodes_read_like_a_shell() -> None:
    assert returncode_to_status(-signal.SIGINT) == 130
    assert returncode_to_status(0) == 0
    assert describe_returncode(3) == "exited with code 3"
    assert describe_returncode(-15) == "killed by SIGTERM"


# -- the managed process -------------------------------------------------------------------------


async def test_start_wait_and_exit_code(journal: Journal, tmp_path: Path) -> None:
    async with open_managed_process() as proc:
        pid = await proc.start(
            child_command(journal, "exit3"), env={**os.environ, "MARKER": "m"}, cwd=tmp_path
        )
        assert await proc.wait() == 3
        assert proc.returncode == 3
        assert proc.pid is None
    start = journal.starts()[0]
    # its own process group, our environment as given, the working directory as given
    assert start["pid"] == pid == start["pgid"]
    assert start["marker"] == "m"
    assert start["cwd"] == str(tmp_path)


async def test_stop_sends_sigterm_to_the_group(journal: Journal) -> None:
    async with open_managed_process(grace=10) as proc:
        await proc.start(child_command(journal))
        await journal.wait_starts(1)
        began = time.monotonic()
        result = await proc.stop()
        assert time.monotonic() - began < 5  # no need to wait out the grace period
    assert result.returncode == 0  # its handler ran and exited cleanly
    assert not result.killed
    assert journal.entries("term")


async def test_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    journal: Journal,
) -> None:
    async with open_managed_process(grace=0.5) as proc:
        await proc.start(child_command(journal, "ignore-term"))
        await journal.wait_starts(1)
        began = time.monotonic()
        result = await proc.stop()
        took = time.monotonic() - began
    assert result.killed
    assert result.returncode == -signal.SIGKILL
    assert 0.5 <= took < 5


async def test_stop_with_another_signal(journal: Journal) -> None:
    async with open_managed_process(stop_signal=signal.SIGINT) as proc:
        await proc.start(child_command(journal, "ignore-term"))
        await journal.wait_starts(1)
        result = await proc.stop()
    assert result.returncode == -signal.SIGINT  # Python's KeyboardInterrupt, uncaught
    assert not result.killed


async def test_no_grandchild_survives_a_stop(journal: Journal) -> None:
    async with open_managed_process(grace=0.5) as proc:
        await proc.start(child_command(journal, "grandchildren"))
        start = await journal.wait_starts(1)
        tracked = Tracked([start["pid"], *start["spawned"]])
        assert len(tracked.pids) == 4
        await proc.stop()
        assert tracked.alive() == []  # gone and reaped when stop() returns
        # a new command starts clean
        await proc.start(child_command(journal))
        await journal.wait_starts(2)


async def test_grandchildren_left_by_a_command_that_exited_are_stopped_next_time(
    journal: Journal,
) -> None:
    async with open_managed_process(grace=0.5) as proc:
        await proc.start(child_command(journal, "grandchildren", "exit0"))
        start = await journal.wait_starts(1)
        assert await proc.wait() == 0
        tracked = Tracked(start["spawned"])
        assert len(tracked.alive()) == 3  # still running: nobody asked them to stop
        await proc.stop()
        assert tracked.alive() == []


async def test_leaving_the_context_stops_everything_and_the_guard(journal: Journal) -> None:
    async with open_managed_process(grace=0.5) as proc:
        await proc.start(child_command(journal, "grandchildren", "ignore-term"))
        start = await journal.wait_starts(1)
        tracked = Tracked([start["pid"], *start["spawned"]])
        guard = _guard_of(start["pid"])
    assert tracked.alive() == []
    assert start_time(guard) is None


async def test_cancellation_stops_the_command_gracefully(journal: Journal) -> None:
    with anyio.CancelScope() as scope:
        async with open_managed_process(grace=5) as proc:
            await proc.start(child_command(journal, "slow-stop"))
            start = await journal.wait_starts(1)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert journal.entries("term")  # it was asked, not just killed
    assert start_time(start["pid"]) is None


async def test_kill_cuts_the_grace_period_short(journal: Journal) -> None:
    async with open_managed_process(grace=30) as proc, anyio.create_task_group() as tg:
        await proc.start(child_command(journal, "ignore-term"))
        await journal.wait_starts(1)
        result: list[Any] = []

        async def stop() -> None:
            result.append(await proc.stop())

        began = time.monotonic()
        tg.start_soon(stop)
        await anyio.sleep(0.2)  # let the stop begin: the kill request only acts during one
        await proc.kill()
        await wait_until(lambda: result, "the stop to end")
    assert time.monotonic() - began < 10
    assert result[0].killed


async def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    async with open_managed_process() as proc:
        with pytest.raises(CommandNotFoundError, match="command not found: no-such-command-x"):
            await proc.start(["no-such-command-x"])
        with pytest.raises(CommandNotExecutableError, match="not executable"):
            await proc.start([str(script)])
        assert proc.pid is None
        script.chmod(0o755)
        await proc.start([str(script)])
        assert await proc.wait() == 0


async def test_stop_with_nothing_running_returns_at_once() -> None:
    async with open_managed_process() as proc:
        result = await proc.stop()
        assert result.returncode is None
        assert not result.killed
        assert isinstance(proc, ManagedProcess)


def _guard_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return parse_stat(f.read())[1]
