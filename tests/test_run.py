"""The restart loop (``run_process``, ``ProcessRunner``): real files and processes, both backends.

Each test runs the runner in its own event loop and watches the journal its command writes (see
``CHILD`` in test_process.py): one JSON line per start with ``ASYNCRELOAD_RESTART`` and
``ASYNCRELOAD_CHANGES`` as the command saw them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from asyncreload import (
    Change,
    ChangeKind,
    CommandNotExecutableError,
    CommandNotFoundError,
    ConfigError,
    ProcessRunner,
    Source,
    run_process,
)
from asyncreload._run.command import changes_env, check_command
from asyncreload._run.runner import Backoff, parse_signal
from asyncreload._watch.config import DEFAULTS
from asyncreload._watch.merge import summarize
from asyncreload.cli.pyproject import load_config

from .helpers import eventually
from .processes import Journal, Tracked, child_command, start_time

pytestmark = pytest.mark.anyio

SETTLE = 1.5
"""Seconds to watch for a restart that must *not* happen: longer than the watcher's max_wait
(1 s), the longest a pending change can be held back."""


@contextlib.asynccontextmanager
async def running(runner: ProcessRunner) -> AsyncIterator[list[int | None]]:
    """Run ``runner`` from its first start until the block ends; then stop it, and hand back
    what run() returned."""
    result: list[int | None] = []

    async def run(*, task_status: TaskStatus[None]) -> None:
        result.append(await runner.run(task_status=task_status))

    async with anyio.create_task_group() as tg:
        await tg.start(run)
        yield result
        runner.stop()


def paths_of(start: dict[str, Any]) -> list[str]:
    return [c["path"] for c in start["changes"]]


async def no_more_starts(journal: Journal, count: int) -> None:
    """Check that no start follows the ``count`` ones seen, for SETTLE seconds."""
    await anyio.sleep(SETTLE)  # proving an absence: there's no event to wait for
    assert len(journal.starts()) == count, journal.starts()


# -- restarts ------------------------------------------------------------------------------------


async def test_a_change_restarts_the_command_with_the_changes_in_its_environment(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal), watched, grace=5)
    async with running(runner) as result:
        first = await journal.wait_starts(1)
        assert first["restart"] == 0
        assert first["changes"] == []
        (watched / "app.py").write_text("x")
        second = await journal.wait_starts(2)
    assert second["restart"] == 1
    assert second["changes"] == [
        {"change": "added", "path": str(watched / "app.py"), "source": "events"}
    ]
    assert [e["pid"] for e in journal.entries("term")][:1] == [first["pid"]]
    assert result == [0]  # stopped by SIGTERM, its handler exited with 0
    assert runner.starts == 2


async def test_grandchildren_are_gone_after_a_restart(journal: Journal, watched: Path) -> None:
    runner = ProcessRunner(child_command(journal, "grandchildren"), watched, grace=1)
    async with running(runner):
        first = await journal.wait_starts(1)
        tracked = Tracked([first["pid"], *first["spawned"]])
        (watched / "app.py").write_text("x")
        await journal.wait_starts(2)
        # stop, grace, kill and reap all happen before the next start
        assert tracked.alive() == []


async def test_a_command_that_exits_with_3_is_reported_and_restarted_on_the_next_change(
    journal: Journal, watched: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "asyncreload")
    runner = ProcessRunner(child_command(journal, "exit3"), watched)
    async with running(runner):
        await journal.wait_starts(1)
        await eventually(
            lambda: "command exited with code 3" in caplog.text, what="the exit to be reported"
        )
        (watched / "app.py").write_text("x")
        second = await journal.wait_starts(2)
        assert paths_of(second) == [str(watched / "app.py")]
    warning = next(r for r in caplog.records if "exited with code 3" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().endswith("restarting on the next change")


async def test_one_restart_for_a_burst_of_2000_files(journal: Journal, watched: Path) -> None:
    for d in range(20):
        (watched / f"pkg{d}").mkdir()
    runner = ProcessRunner(child_command(journal), watched)
    async with running(runner):
        await journal.wait_starts(1)

        # like a git checkout: another process writes files in a few directories, fast
        # It prints how many pauses of more than 0.1 s it made (a disk stalled by an ext4 journal
        # commit, a CPU taken by something else): each may end a batch, as changes quiet for
        # 100 ms after a stop let the command start (the README).
        burst = "import sys, time\nlast, gaps = time.monotonic(), 0\n"
        burst += "for d in range(20):\n    for n in range(100):\n"
        burst += "        open(f'{sys.argv[1]}/pkg{d}/mod{n}.py', 'w').write('x = 1')\n"
        burst += "        now = time.monotonic()\n        gaps += now - last > 0.1\n"
        burst += "        last = now\nprint(gaps)\n"
        began = time.monotonic()
        writer = await anyio.run_process([sys.executable, "-c", burst, str(watched)])
        wrote = time.monotonic() - began
        pauses = int(writer.stdout)
        await journal.wait_starts(2)
        # A stall of the writer longer than the burst's quiet time (an ext4 journal commit on a
        # busy disk) splits it into two batches, so a second restart may come a while after the
        # first: wait until the starts stop, then count them.
        count = len(journal.starts())
        with anyio.fail_after(60):
            while True:
                await anyio.sleep(SETTLE)  # proving an absence: there's no event to wait for
                if len(journal.starts()) == count:
                    break
                count = len(journal.starts())
    # Count the starts asyncreload made: a command restarted again while still booting
    # never gets to write its journal line.
    restarts = runner.starts - 1
    print(f"2,000 files written in {wrote:.2f} s, {pauses} pause(s) -> {restarts} restart(s)")
    # One restart for the burst, plus one for each batch that max_wait cut from a burst still
    # being written (a slow disk: 2,000 files took 0.9 s on a quiet machine, 1.5 s on a busy
    # one), and one for each pause of the writer; one more where a batch ends just as the
    # command restarts (what came meanwhile is the next restart: none is lost).
    assert 1 <= restarts <= 2 + pauses + int(wrote / DEFAULTS.max_wait)
    last = journal.starts()[-1]
    assert last["restart"] == restarts
    assert last["changes"]  # valid JSON, even when cut to the size limit


async def test_a_change_during_a_slow_stop_folds_into_that_restart(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "slow-stop"), watched, grace=5)
    async with running(runner):
        await journal.wait_starts(1)
        (watched / "a.py").write_text("x")
        await journal.wait(lambda j: j.entries("term"), "the stop to begin")
        (watched / "b.py").write_text("x")  # while the old command takes 1 s to stop
        second = await journal.wait_starts(2)
        assert paths_of(second) == [str(watched / "a.py"), str(watched / "b.py")]
        await no_more_starts(journal, 2)


async def test_changes_during_a_slow_stop_fold_by_the_streams_net_rule(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "slow-stop"), watched, grace=5)
    async with running(runner):
        await journal.wait_starts(1)
        (watched / "a.py").write_text("x")
        (watched / "scratch.py").write_text("x")
        await journal.wait(lambda j: j.entries("term"), "the stop to begin")
        (watched / "a.py").write_text("y")  # added, then modified: added
        (watched / "scratch.py").unlink()  # added, then deleted: nothing
        second = await journal.wait_starts(2)
        assert [(c["change"], c["path"]) for c in second["changes"]] == [
            ("added", str(watched / "a.py"))
        ]


async def test_a_name_watchfiles_cant_take_doesnt_stop_the_command(
    journal: Journal, watched: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCRELOAD_EVENTS_BACKEND", "watchfiles")
    runner = ProcessRunner(child_command(journal), watched, poll_interval=0.05)
    async with running(runner):
        await journal.wait_starts(1)
        with open(os.fsencode(watched) + b"/\xff.py", "w"):
            pass  # not UTF-8: watchfiles gives up on the tree, which is then polled
        await journal.wait_starts(2)  # for what its lost events may have been
        (watched / "later.py").write_text("x")
        third = await journal.wait_starts(3)
        assert paths_of(third) == [str(watched / "later.py")]


async def test_a_change_during_a_slow_start_causes_exactly_one_more_restart(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "slow-start"), watched, grace=5)
    async with running(runner):
        await journal.wait_starts(1)
        (watched / "a.py").write_text("x")
        await journal.wait(lambda j: len(j.entries("boot")) >= 2, "the restart to begin")
        (watched / "b.py").write_text("x")  # while the new command is still booting
        await journal.wait(lambda j: len(j.entries("boot")) >= 3, "one more restart")
        third = await journal.wait_starts(2)
        await anyio.sleep(SETTLE)  # proving an absence: no fourth start
    assert [b["restart"] for b in journal.entries("boot")] == [0, 1, 2]
    assert third["restart"] == 2
    assert paths_of(third) == [str(watched / "b.py")]


async def test_on_exit_restart_backs_off_instead_of_looping_hot(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "exit1"), watched, on_exit="restart")
    async with running(runner):
        await journal.wait_starts(5, timeout=30)
    t = [s["t"] for s in journal.starts()[:5]]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # delays of 0, 0.1, 0.2, 0.4 s between the five starts (plus each run's own time)
    assert gaps[2] >= 0.2
    assert gaps[3] >= 0.4
    assert sum(gaps) < 15


async def test_on_exit_exit_returns_the_commands_returncode(
    journal: Journal, watched: Path
) -> None:
    with anyio.fail_after(30):
        assert await run_process(child_command(journal, "exit3"), watched, on_exit="exit") == 3


async def test_restart_and_stop_on_request(journal: Journal, watched: Path) -> None:
    runner = ProcessRunner(child_command(journal, "ignore-term"), watched, grace=0.3)
    async with running(runner) as result:
        await journal.wait_starts(1)
        runner.restart()
        second = await journal.wait_starts(2)
        assert second["changes"] == []
    assert result == [-signal.SIGKILL]  # it ignored SIGTERM: killed after the grace period
    assert start_time(second["pid"]) is None


async def test_a_restart_requested_during_a_stop_folds_into_that_restart(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "slow-stop"), watched, grace=5)
    async with running(runner):
        await journal.wait_starts(1)
        runner.restart()
        await journal.wait(lambda j: j.entries("term"), "the stop to begin")
        runner.restart()  # a second SIGHUP while the old command takes 1 s to stop
        await journal.wait_starts(2)
        await no_more_starts(journal, 2)
    assert runner.starts == 2  # not a third start, stopped at once


async def test_cancelling_the_runner_stops_the_command_gracefully(
    journal: Journal, watched: Path
) -> None:
    runner = ProcessRunner(child_command(journal, "slow-stop"), watched, grace=5)
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        first = await journal.wait_starts(1)
        tg.cancel_scope.cancel()
    assert journal.entries("term")
    assert start_time(first["pid"]) is None


async def test_a_command_that_cant_be_found_raises_before_watching(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFoundError, match="command not found: no-such-command-x"):
        await run_process(["no-such-command-x"], tmp_path)
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CommandNotExecutableError):
        await run_process([str(script)], tmp_path)


async def test_a_command_that_vanishes_is_reported_and_started_again_once_back(
    tmp_path: Path, watched: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "asyncreload")
    marker = tmp_path / "ran"
    script = tmp_path / "tool.sh"
    script.write_text(f"#!/bin/sh\necho $ASYNCRELOAD_RESTART >> {marker}\nexec sleep 1000\n")
    script.chmod(0o755)
    runner = ProcessRunner([str(script)], watched, grace=1)
    async with running(runner):
        await eventually(marker.exists, what="the first start")
        script.unlink()
        (watched / "a.py").write_text("x")
        await eventually(
            lambda: "command not found" in caplog.text, what="the failure to be logged"
        )
        script.write_text(f"#!/bin/sh\necho $ASYNCRELOAD_RESTART >> {marker}\nexec sleep 1000\n")
        script.chmod(0o755)
        (watched / "b.py").write_text("x")
        await eventually(lambda: marker.read_text().split() == ["0", "2"], what="the third start")


async def test_shell_commands(tmp_path: Path, watched: Path) -> None:
    out = tmp_path / "out"
    command = f"echo $ASYNCRELOAD_RESTART | tr 0 z > {out}; exit 4"
    with anyio.fail_after(30):
        assert await run_process(command, watched, shell=True, on_exit="exit") == 4
    assert out.read_text() == "z\n"


@pytest.mark.fuse
async def test_a_change_in_the_backing_directory_of_a_fuse_mount_restarts_the_command(
    journal: Journal, fuse_mount: Any
) -> None:
    runner = ProcessRunner(child_command(journal), fuse_mount.mount, poll_interval=0.1)
    async with running(runner):
        await journal.wait_starts(1)
        (fuse_mount.backing / "far.py").write_text("x")  # the far side: no inotify event here
        second = await journal.wait_starts(2)
    assert second["changes"] == [
        {"change": "added", "path": str(fuse_mount.mount / "far.py"), "source": "stat"}
    ]


# -- pure parts ----------------------------------------------------------------------------------


def test_changes_env_is_a_json_list_cut_to_the_limit() -> None:
    batch = tuple(Change(ChangeKind.MODIFIED, f"/src/m{n:04}.py", Source.STAT) for n in range(3000))
    env = changes_env(batch)
    assert len(env["ASYNCRELOAD_CHANGES"]) <= 64 * 1024
    assert env["ASYNCRELOAD_CHANGES_TRUNCATED"] == "1"
    listed = json.loads(env["ASYNCRELOAD_CHANGES"])
    assert listed[0] == {"change": "modified", "path": "/src/m0000.py", "source": "stat"}
    assert [c["path"] for c in listed] == [c.path for c in batch[: len(listed)]]
    assert changes_env(()) == {"ASYNCRELOAD_CHANGES": "[]"}


def test_summary_names_a_few_paths_and_counts_them_all() -> None:
    batch = [Change(ChangeKind.ADDED, f"/p/src/{n}.py", Source.EVENTS) for n in range(2000)]
    assert summarize(batch, "/p") == "2,000 changes: src/0.py, src/1.py, src/2.py, ..."


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run() -> None:
    b = Backoff(first=1, cap=4, healthy=10)
    assert [b.after(0.5) for _ in range(6)] == [0, 1, 2, 4, 4, 4]
    assert b.after(10) == 0
    assert b.after(0.5) == 0


def test_signals_by_name_or_number() -> None:
    assert parse_signal("SIGQUIT") is signal.SIGQUIT
    assert parse_signal(" hup ") is signal.SIGHUP
    assert parse_signal("9") is signal.SIGKILL
    with pytest.raises(ConfigError, match="unknown signal"):
        parse_signal("SIGNOPE")


def test_check_command(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    check_command("sh", env=env, cwd=str(tmp_path))
    check_command(sys.executable, env=env, cwd=str(tmp_path))
    with pytest.raises(CommandNotFoundError):
        check_command("./nope", env=env, cwd=str(tmp_path))
    with pytest.raises(CommandNotExecutableError):
        check_command(str(tmp_path), env=env, cwd="/")
    with pytest.raises(ConfigError):
        ProcessRunner([], tmp_path)


def test_config_from_the_nearest_pyproject_with_the_environment_winning(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.asyncreload]\n"
        'watch = ["src", "/abs"]\nforce-polling = false\ndebounce = 50\nexclude = "*.log"\n'
        "command = ['python', 'app.py']\nsignal = 2\n"
    )
    config = load_config(tmp_path, env={"ASYNCRELOAD_DEBOUNCE": "10"})
    assert config is not None
    assert config.path == tmp_path / "pyproject.toml"
    assert config.values == {
        "watch": (str(tmp_path / "src"), "/abs"),
        "force_polling": False,
        "exclude": ("*.log",),
        "command": ("python", "app.py"),
        "signal": "2",
    }  # no debounce: ASYNCRELOAD_DEBOUNCE is set, and wins
    inner = tmp_path / "service"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "service"\n')
    assert load_config(inner, env={}) is None  # the nearest file counts, not a parent's table
    (inner / "pyproject.toml").write_text("[tool.asyncreload\n")
    with pytest.raises(ConfigError, match="can't read it"):
        load_config(inner, env={})
