"""Symlink graphs: the walk rule both walkers follow (each directory once, never into a pseudo file
system, a bound on the size), end to end through the CLI on the real /sys and /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from .helpers import CLI, DEADLINE, reading_by_path
from .processes import proc_stat

EXIT_SOON = 5.0
"""SIGINT to exit, at most (the promise is about a second; CI machines are 2 noisy cores)."""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/sys is Linux's")


class Walker(NamedTuple):
    """One walker, as the CLI is told to use it."""

    options: list[str]
    by_path: bool = False
    """The stat poller reads directories by path (Windows's way), not through descriptors."""

    def script(self, program: str | None = None) -> str | None:
        """The ``CLI(script=...)`` that runs ``program`` (None: the CLI) with this walker."""
        return reading_by_path(program) if self.by_path else program


@pytest.fixture(params=["inotify", "stat", "stat by path"])
def walker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Walker:
    """Each walker in turn: the inotify event source's, and the stat poller's, both ways."""
    monkeypatch.setenv("ASYNCRELOAD_EVENTS_BACKEND", "inotify")
    if request.param == "inotify":
        return Walker([])
    return Walker(["--force-polling"], by_path=request.param == "stat by path")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    assert fields is not None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("path", ["/sys", "/proc", "/sys/class", "/proc/self"])
def test_watching_a_pseudo_file_system_is_one_line_and_exit_2(path: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncreload", "watch", path],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "a pseudo file system" in result.stderr
    assert result.stderr.startswith("asyncreload: error: ")


def test_a_link_to_sys_class_costs_nothing(walker: Walker, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "class").symlink_to("/sys/class")  # every device by several paths, and loops
    (tree / "proc").symlink_to("/proc")  # /proc/<pid>/root: the whole file system
    began = time.monotonic()
    with CLI(
        "watch", "--json", *walker.options, str(tree), cwd=tmp_path, script=walker.script()
    ) as cli:
        cli.wait_ready()
        ready = time.monotonic() - began
        (tree / "app.py").write_text("x")
        cli.wait_change(tree / "app.py")
        rss = peak_rss_mb(cli.process.pid)
        began = time.monotonic()
        cli.process.send_signal(signal.SIGINT)
        assert cli.process.wait(timeout=DEADLINE) in (0, 130)
        stopped = time.monotonic() - began
    assert not any("class/" in c["path"] or "proc/" in c["path"] for c in cli.json_changes())
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    assert stopped < EXIT_SOON
    print(f"ready after {ready:.2f} s, peak RSS {rss:.0f} MB, SIGINT to exit {stopped:.2f} s")


def test_sigint_ends_a_walk_of_the_whole_file_system(walker: Walker, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "root").symlink_to("/")  # big, and allowed: every directory once, up to the bound
    args = ["watch", "--no-default-ignores", *walker.options, str(tree)]
    with CLI(*args, cwd=tmp_path, script=walker.script()) as cli:
        deadline = time.monotonic() + DEADLINE
        while cpu_seconds(cli.process.pid) < 1.0:  # imports take ~0.3 s: then it walks
            assert time.monotonic() < deadline, "it never got to walking"
            time.sleep(0.01)
        if any(s.startswith("asyncreload: watching") for s in cli.stderr):
            pytest.skip("the whole file system was walked before the test could interrupt it")
        began = time.monotonic()
        cli.process.send_signal(signal.SIGINT)
        assert cli.process.wait(timeout=DEADLINE) in (0, 130)
        stopped = time.monotonic() - began
    assert stopped < EXIT_SOON
    assert not [line for line in cli.stderr if "Traceback" in line], cli.stderr
    print(f"SIGINT to exit mid-walk: {stopped:.2f} s")


BOUNDED = """
import sys
import asyncreload._watch.walk
asyncreload._watch.walk.MAX_DIRS = 30  # the real bound (200,000) takes a big tree to reach
from asyncreload.cli import main
main(sys.argv[1:])
"""


def test_a_walk_past_the_bound_names_the_link_and_the_exclude(
    walker: Walker, tmp_path: Path
) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "src").mkdir(parents=True)
    for i in range(40):
        (outside / f"d{i}").mkdir(parents=True)
    (tree / "src" / "vendored").symlink_to(outside)
    with CLI(
        "watch", *walker.options, str(tree), cwd=tmp_path, script=walker.script(BOUNDED)
    ) as cli:
        assert cli.process.wait(timeout=DEADLINE) == 2
    cli.stop()
    assert cli.stderr == [
        f"asyncreload: error: {tree}: more than 30 directories to watch, 29 of them through the "
        f"symlink {tree}/src/vendored -> {outside}; stopped. Leave it out with --exclude "
        "src/vendored"
    ]
