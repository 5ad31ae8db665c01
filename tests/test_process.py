"""The managed process and its guard: real processes, checked by PID in /proc, on asyncio and trio.

The command used throughout is ``CHILD`` (below): a small Python program that records each start
(with its environment and the PIDs it spawned) as a JSON line, and then behaves as its flags say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncreload
from asyncreload import (
    CommandError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ManagedProcess,
    open_managed_process,
)
from asyncreload._run.process import describe_returncode, returncode_to_status
from asyncreload._subreaper import descendants, parse_stat

from .helpers import DEADLINE, eventually
from .processes import Journal, Tracked, child_command, parent, start_time

pytestmark = pytest.mark.anyio

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
        guard = parent(start["pid"])
    assert tracked.alive() == []
    assert start_time(guard) is None


async def test_if_the_guard_is_killed_its_keeper_stops_everything_it_held(
    journal: Journal,
) -> None:
    async with open_managed_process(grace=0.5) as proc:
        await proc.start(child_command(journal, "grandchildren"))
        start = await journal.wait_starts(1)
        # the command, and what it started: in its group, setsid()'d, double-forked
        tracked = Tracked([start["pid"], *start["spawned"]])
        os.kill(parent(start["pid"]), signal.SIGKILL)
        await eventually(lambda: not tracked.alive(), what="everything to be gone")
        with pytest.raises(CommandError, match=r"^the guard process exited unexpectedly$"):
            await proc.wait()


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
        # The kill request only acts during a stop: once stop() has sent its request and waits
        # for the reply (the guard reads the two in order), not after a guessed delay.
        await anyio.wait_all_tasks_blocked()
        await proc.kill()
        await eventually(lambda: result, what="the stop to end")
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


async def test_a_working_directory_that_is_gone_is_not_a_command_not_found(
    tmp_path: Path,
) -> None:
    gone = tmp_path / "gone"
    async with open_managed_process() as proc:
        with pytest.raises(CommandError) as caught:
            await proc.start(["true"], cwd=gone)
    assert not isinstance(caught.value, CommandNotFoundError)
    assert str(caught.value) == f"can't start true in {gone}: no such file or directory"


async def test_stop_with_nothing_running_returns_at_once() -> None:
    async with open_managed_process() as proc:
        result = await proc.stop()
        assert result.returncode is None
        assert not result.killed
        assert isinstance(proc, ManagedProcess)


def test_the_guard_starts_from_a_zipped_install(tmp_path: Path) -> None:
    # The guard ran as `python -I <package dir>/guard_program.py`: from a zip that path isn't a
    # file, and every command failed with "the guard process exited unexpectedly".
    package = Path(asyncreload.__file__).parent
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in package.rglob("*.py"):
            z.write(path, Path("asyncreload") / path.relative_to(package))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import anyio, asyncreload\n"
        "assert asyncreload.__file__.startswith(sys.argv[1]), asyncreload.__file__\n"
        "async def main():\n"
        "    async with asyncreload.open_managed_process() as proc:\n"
        "        await proc.start([sys.executable, '-c', 'print(\"ran\")'])\n"
        "        print('returncode', await proc.wait())\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(archive)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran", "returncode", "0"]
