"""sshfs end to end, on a private sshd on 127.0.0.1: what only a real network file system shows.

Its caches (``explain`` must say how late a far-side change may show), its far side (a change
made in the served directory raises no event on the mount: only polling sees it) and its inode
numbers (its own, handed out afresh on each mount: a remount must not read as "every file
modified").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from asyncreload import Change, ChangeKind, Source, open_watcher

from .helpers import collect_until, has
from .sshfs import SshfsMount, loopback_sshfs

__all__ = ["loopback_sshfs"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.fuse


def explain(path: Path) -> tuple[list[str], dict[str, object]]:
    """``asyncreload explain PATH``: its lines, and its ``--json`` entry for PATH."""
    lines, entries = [], {}
    for args in (["explain", str(path)], ["explain", "--json", str(path)]):
        done = subprocess.run(
            [sys.executable, "-m", "asyncreload", *args],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if "--json" in args:
            entries = {t["path"]: t for t in json.loads(done.stdout)["targets"]}
        else:
            lines = done.stdout.splitlines()
    return lines, entries[str(path)]


def test_explain_says_sshfs_is_polled_and_how_late_it_may_be(loopback_sshfs: SshfsMount) -> None:
    for options in ((), ("dir_cache=no", "attr_timeout=0", "entry_timeout=0")):
        loopback_sshfs.remount(options)
        lines, entry = explain(loopback_sshfs.mount)
        assert entry["backend"] == "stat" and entry["fstype"] == "fuse.sshfs", entry
        assert lines[0].startswith(f"{loopback_sshfs.mount} ") and " stat " in lines[0], lines
        assert "far side raise no events" in lines[0]
        # sshfs's options are its own (the kernel shows none of them in the mount table), so
        # with caching off too it can only state the default delay and the options that remove
        # it: it never claims this mount is late, nor that it is fresh.
        delay = lines[1].strip()
        assert delay == entry["delay"], (lines, entry)
        assert "sshfs caches attributes and listings for 20 s by default" in delay
        assert "-o dir_cache=no" in delay and "attr_timeout=0,entry_timeout=0" in delay


@pytest.mark.anyio
async def test_far_side_changes_are_reported_from_stat(loopback_sshfs: SshfsMount) -> None:
    far, mount = loopback_sshfs.far, loopback_sshfs.mount
    (far / "pkg").mkdir()
    (far / "pkg" / "app.py").write_text("v1")
    (far / "gone.py").write_text("x")
    async with open_watcher(mount, poll_interval=0.1) as changes:
        # Sizes differ each time: SFTP carries whole-second mtimes, and an edit within the
        # same second that keeps the size is invisible through sshfs (to every stat poller).
        (far / "pkg" / "app.py").write_text("version 2")
        await collect_until(
            changes, has(mount / "pkg" / "app.py", ChangeKind.MODIFIED, Source.STAT)
        )
        (far / "pkg" / "new.py").write_text("new")
        await collect_until(changes, has(mount / "pkg" / "new.py", ChangeKind.ADDED, Source.STAT))
        (far / "gone.py").unlink()
        await collect_until(changes, has(mount / "gone.py", ChangeKind.DELETED, Source.STAT))


def _tree(root: Path, dirs: int, per_dir: int) -> list[Path]:
    files = []
    for d in range(dirs):
        (root / f"d{d}").mkdir()
        for f in range(per_dir):
            path = root / f"d{d}" / f"m{f}.py"
            path.write_text(f"{d} {f}")
            files.append(path)
    return files


def _inodes(root: Path, names: list[str]) -> dict[str, int]:
    return {name: os.stat(root / name).st_ino for name in names}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "away",
    [0.0, 0.5],
    ids=["mounted-again-at-once", "away-half-a-second-polled-by-override"],
)
async def test_remount_reports_only_the_file_that_changed(
    loopback_sshfs: SshfsMount, away: float
) -> None:
    far, mount = loopback_sshfs.far, loopback_sshfs.mount
    names = [str(p.relative_to(far)) for p in _tree(far, 10, 20)]  # 200 files
    # sshfs numbers inodes in the order they are first looked up. Looked up here backwards
    # (files before the directories the watcher's walk takes first), nearly every number
    # differs from the next mount's, whoever looks first there: as a remount does in real life.
    before = _inodes(mount, names[::-1])
    # Away for a while, the mount point is polled by --poll's override (the plan can't hand it
    # back to kernel events): the poller holds, and checks the file just edited meanwhile.
    poll = [mount] if away else []
    async with open_watcher(mount, poll=poll, poll_interval=0.1) as changes:
        if away:
            # Edited just before, in a subdirectory: checked every 50 ms (a hot file) while the
            # mount is away. Each edit in one step (write_text truncates first: two reports);
            # twice: the second is reported by the hot set, after the sweep that saw the first
            # has ended (a poller stopped before its sweep ends hands over the state before).
            staged = far.parent / "staged"
            for text in ("edited before the remount", "and edited again"):
                staged.write_text(text)
                staged.replace(far / names[3])
                await collect_until(changes, has(mount / names[3], ChangeKind.MODIFIED))

        await anyio.to_thread.run_sync(loopback_sshfs.unmount)
        await anyio.sleep(away)  # a fixed outage: only what is (not) reported is awaited
        await anyio.to_thread.run_sync(loopback_sshfs.start)
        after = _inodes(mount, names)
        assert sum(before[n] != after[n] for n in names) > 0.9 * len(names), (before, after)

        (far / names[7]).write_text("changed after the remount")
        seen: list[Change] = await collect_until(changes, has(mount / names[7]))
        # A second far-side edit, awaited too: whatever the remount was going to report has
        # been reported by then (it comes in sweep order, before this).
        (far / names[150]).write_text("and a second change")
        seen += await collect_until(changes, has(mount / names[150]))
    reported = sorted({(c.kind.value, c.path) for c in seen})
    assert reported == [
        ("modified", str(mount / names[7])),
        ("modified", str(mount / names[150])),
    ], f"{len(seen)} changes, the first: {reported[:5]}"
