"""The hybrid watcher end to end: real files, a real FUSE mount, both anyio backends."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import asyncreload
from asyncreload import ChangeKind, ConfigError, PathNotFoundError, Source, open_watcher

from .conftest import FuseMount
from .helpers import all_of, collect_until, eventually, has

pytestmark = pytest.mark.anyio


async def test_fuse_backing_change_is_polled_and_local_change_is_evented(
    fuse_mount: FuseMount, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (fuse_mount.backing / "app.py").write_text("v1")
    async with open_watcher(local, fuse_mount.mount, poll_interval=0.1) as changes:
        # The far side of the mount: no inotify event exists for this anywhere.
        (fuse_mount.backing / "app.py").write_text("version 2")
        (local / "main.py").write_text("x")
        seen = await collect_until(
            changes,
            all_of(
                has(fuse_mount.mount / "app.py", ChangeKind.MODIFIED, Source.STAT),
                has(local / "main.py", ChangeKind.ADDED, Source.EVENTS),
            ),
        )
    assert all(c.path.startswith((str(local), str(fuse_mount.mount))) for c in seen)


async def test_fuse_mount_nested_inside_a_local_tree(fuse_mount: FuseMount, tmp_path: Path) -> None:
    # tmp_path holds backing/ and mount/: the local part gets events, the mount is polled and
    # the event watcher does not walk into it (nor does it watch the mount point's backing).
    (tmp_path / "pkg").mkdir()
    targets = asyncreload.explain(tmp_path, probe=False)
    by_path = {t.path: t for t in targets}
    assert by_path[str(tmp_path)].backend is Source.EVENTS
    assert str(fuse_mount.mount) in by_path[str(tmp_path)].excludes
    assert by_path[str(fuse_mount.mount)].backend is Source.STAT
    assert by_path[str(fuse_mount.mount)].fstype == "fuse.bindfs"

    async with open_watcher(tmp_path, poll_interval=0.1) as changes:
        (fuse_mount.backing / "far.txt").write_text("from the far side")
        (tmp_path / "pkg" / "near.py").write_text("local")
        await collect_until(
            changes,
            all_of(
                has(fuse_mount.mount / "far.txt", ChangeKind.ADDED, Source.STAT),
                has(tmp_path / "pkg" / "near.py", ChangeKind.ADDED, Source.EVENTS),
            ),
        )
        # A new directory at a level watched flat (the way down to the mount) is taken in.
        (tmp_path / "newdir").mkdir()
        await collect_until(changes, has(tmp_path / "newdir", ChangeKind.ADDED))
        (tmp_path / "newdir" / "later.py").write_text("y")
        await collect_until(changes, has(tmp_path / "newdir" / "later.py", source=Source.EVENTS))


async def test_dead_mount_warns_once_keeps_watching_the_rest_and_resumes(
    fuse_mount: FuseMount, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (fuse_mount.backing / "kept.py").write_text("1")
    caplog.set_level("INFO", logger="asyncreload")
    async with open_watcher(local, fuse_mount.mount, poll_interval=0.05) as changes:
        fuse_mount.kill()
        (local / "a.py").write_text("still watched")
        seen = await collect_until(changes, has(local / "a.py", source=Source.EVENTS))
        # Its files are not reported deleted just because the mount stopped answering.
        assert not any(c.path.startswith(str(fuse_mount.mount)) for c in seen)

        def dead() -> list[str]:
            return [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]

        # The events of the local tree may well come before the poller's next sweep.
        await eventually(dead, what="the dead-mount warning")
        (local / "b.py").write_text("and again")
        await collect_until(changes, has(local / "b.py"))
        assert len(dead()) == 1, [r.getMessage() for r in caplog.records]
        assert str(fuse_mount.mount) in dead()[0]

        await anyio.to_thread.run_sync(fuse_mount.remount)
        (fuse_mount.backing / "kept.py").write_text("changed after the remount")
        await collect_until(changes, has(fuse_mount.mount / "kept.py", ChangeKind.MODIFIED))
    # The resumption is said in one line, whoever noticed first: the old poller finding the
    # mount readable again, or the live mount table's re-plan (a new poller taking over the last
    # known state), seen as one change (the unmount and the mount read together) or as two (the
    # mount point watched with events in between). The kernel may even hand the new mount the
    # old one's id, and then the plan does not change at all.
    lines = {
        f"{fuse_mount.mount}: readable again; watching it",
        f"{fuse_mount.mount}: fuse.bindfs mounted here; polled from now on",
        f"{fuse_mount.mount}: remounted; polling goes on from its last known state",
    }
    assert lines & set(caplog.messages), caplog.messages


async def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError, match=r"does not exist: .*nope"):
        async with open_watcher(tmp_path / "nope"):
            pass
    with pytest.raises(FileNotFoundError):  # also the builtin it refines
        async with open_watcher(tmp_path, poll=[tmp_path / "nope"]):
            pass


async def test_force_polling_reports_from_stat(tmp_path: Path) -> None:
    async with open_watcher(tmp_path, force_polling=True, poll_interval=0.05) as changes:
        (tmp_path / "x.py").write_text("1")
        await collect_until(changes, has(tmp_path / "x.py", ChangeKind.ADDED, Source.STAT))
        (tmp_path / "x.py").unlink()
        await collect_until(changes, has(tmp_path / "x.py", ChangeKind.DELETED, Source.STAT))


async def test_filters_apply_to_both_sources(tmp_path: Path) -> None:
    polled = tmp_path / "polled"
    evented = tmp_path / "evented"
    for d in (polled, evented):
        (d / "__pycache__").mkdir(parents=True)
        (d / "logs").mkdir()
    async with open_watcher(
        tmp_path, poll=[polled], poll_interval=0.05, exclude=["logs", "*.tmp"]
    ) as changes:
        for d in (polled, evented):
            (d / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
            (d / "logs" / "out.log").write_text("x")
            (d / "junk.tmp").write_text("x")
            (d / "real.py").write_text("x")
        seen = await collect_until(
            changes,
            all_of(
                has(polled / "real.py", source=Source.STAT),
                has(evented / "real.py", source=Source.EVENTS),
            ),
        )
        # One more sweep after the files above, so anything the filter let through shows now.
        (polled / "marker.py").write_text("x")
        seen += await collect_until(changes, has(polled / "marker.py"))
    ignored = [c for c in seen if "__pycache__" in c.path or "logs" in c.path or ".tmp" in c.path]
    assert ignored == []


async def test_a_burst_is_one_batch_and_each_path_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    batches = []
    async with open_watcher(tmp_path, debounce=0.25, max_wait=60) as changes:

        def burst() -> None:
            for i in range(2000):
                (src / f"m{i}.py").write_text("x")
            for i in range(2000):
                (src / f"m{i}.py").write_text("y")  # twice: still one entry per path

        await anyio.to_thread.run_sync(burst)
        with anyio.fail_after(30):
            async for batch in changes:
                batches.append(batch)
                if len({c.path for b in batches for c in b}) >= 2000:
                    break
    assert len(batches) == 1
    paths = [c.path for c in batches[0]]
    assert len(paths) == len(set(paths))
    assert {c.kind for c in batches[0]} == {ChangeKind.ADDED}


async def test_files_in_brand_new_directories_are_all_reported(tmp_path: Path) -> None:
    # As a git checkout or an unpacked archive does: directories created and filled at once,
    # faster than a watch on each new directory can be added.
    expected = {
        str(tmp_path / f"pkg{d}" / "sub" / f"m{f}.py") for d in range(50) for f in range(20)
    }

    def unpack() -> None:
        for d in range(50):
            (tmp_path / f"pkg{d}" / "sub").mkdir(parents=True)
            for f in range(20):
                (tmp_path / f"pkg{d}" / "sub" / f"m{f}.py").write_text("x")

    async with open_watcher(tmp_path) as changes:
        await anyio.to_thread.run_sync(unpack)
        seen = await collect_until(changes, lambda s: expected <= {c.path for c in s})
    assert all(c.source is Source.EVENTS for c in seen)


async def test_awatch_iterates_batches(tmp_path: Path) -> None:
    from contextlib import aclosing

    async def write_until_cancelled() -> None:
        # awatch starts its watcher on the first __anext__, with no signal of when it is in
        # place: write again until it is seen (the deadline below bounds the wait).
        while True:
            (tmp_path / "a.txt").write_text(str(os.getpid()))
            await anyio.sleep(0.2)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_until_cancelled)
            async with aclosing(asyncreload.awatch(tmp_path)) as batches:
                batch = await batches.__anext__()
            tg.cancel_scope.cancel()
    assert any(c.path == str(tmp_path / "a.txt") for c in batch)


async def test_a_mount_made_after_the_start_is_polled_and_its_unmount_goes_back_to_events(
    fuse_mount: FuseMount, tmp_path: Path, caplog: pytest.LogCaptureFixture, events_backend: str
) -> None:
    caplog.set_level("INFO", logger="asyncreload")
    mount = fuse_mount.mount
    await anyio.to_thread.run_sync(fuse_mount.unmount)
    (fuse_mount.backing / "there.py").write_text("before the mount")
    for i in range(3000):  # the local tree's watches take a while to lay again, and meanwhile
        (tmp_path / "local" / str(i)).mkdir(parents=True)  # the mount's poller goes on
    async with open_watcher(tmp_path, poll_interval=0.1) as changes:
        await anyio.to_thread.run_sync(fuse_mount.start)
        mounted = f"{mount}: fuse.bindfs mounted here; polled from now on"
        await eventually(lambda: mounted in caplog.messages, what=mounted)
        # The far side of the new mount: no event anywhere says this.
        (fuse_mount.backing / "far.py").write_text("far side")
        seen = await collect_until(changes, has(mount / "far.py", ChangeKind.ADDED, Source.STAT))

        await anyio.to_thread.run_sync(fuse_mount.unmount)
        unmounted = (
            f"{mount}: unmounted; watched with kernel events as part of {tmp_path} from now on"
        )
        await eventually(lambda: unmounted in caplog.messages, what=unmounted)
        (mount / "near.py").write_text("the directory under the mount")
        seen += await collect_until(
            changes, has(mount / "near.py", ChangeKind.ADDED, Source.EVENTS)
        )
    # Neither the mount nor the unmount reads as its files coming or going (far.py, just
    # changed, is checked every 50 ms by the hot set, unmount or not).
    assert not [c for c in seen if c.path == str(mount / "there.py")], seen
    assert not [c for c in seen if c.kind is ChangeKind.DELETED], seen
    assert [m for m in caplog.messages if str(mount) in m] == [mounted, unmounted]


async def test_where_no_signal_says_the_table_changed_it_is_read_again(
    fuse_mount: FuseMount, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # macOS's way (no change signal; the table read again), forced here on Linux's real table:
    # a mount made after the start is polled all the same.
    from asyncreload._watch import watcher
    from asyncreload._watch.mounts import RereadTable, read_mounts

    monkeypatch.setattr(watcher.MountTable, "open", lambda: RereadTable(read_mounts, 0.1))
    caplog.set_level("INFO", logger="asyncreload")
    mount = fuse_mount.mount
    await anyio.to_thread.run_sync(fuse_mount.unmount)
    async with open_watcher(tmp_path, poll_interval=0.1) as changes:
        await anyio.to_thread.run_sync(fuse_mount.start)
        mounted = f"{mount}: fuse.bindfs mounted here; polled from now on"
        await eventually(lambda: mounted in caplog.messages, what=mounted)
        (fuse_mount.backing / "far.py").write_text("far side")  # no event anywhere says this
        await collect_until(changes, has(mount / "far.py", ChangeKind.ADDED, Source.STAT))


@pytest.mark.parametrize("listing", ["read again", "trusted"])
async def test_a_remount_reports_only_what_changed(
    sshfs_mount: FuseMount, caplog: pytest.LogCaptureFixture, listing: str
) -> None:
    caplog.set_level("INFO", logger="asyncreload")
    backing, mount = sshfs_mount.backing, sshfs_mount.mount
    names = [f"m{i}.py" for i in range(300)]
    for name in names:
        (backing / name).write_text("x")
    if listing == "trusted":  # an old directory: only its known files are stat'ed again
        hour_ago = time.time_ns() - 3600 * 10**9
        os.utime(backing, ns=(hour_ago, hour_ago))
    # sshfs numbers inodes in the order they are first looked up: backwards now, as listed
    # (by the poller) after the remount.
    before = {name: os.stat(mount / name).st_ino for name in reversed(names)}
    async with open_watcher(mount, poll_interval=0.05) as changes:
        await anyio.to_thread.run_sync(sshfs_mount.unmount)
        (backing / "m7.py").write_text("changed while it was unmounted")
        await anyio.to_thread.run_sync(sshfs_mount.start)
        seen = await collect_until(changes, has(mount / "m7.py", ChangeKind.MODIFIED))
        # Found by a later sweep than the remount's: whatever else it reported is in by then.
        (backing / "marker.py").write_text("x")
        seen += await collect_until(changes, has(mount / "marker.py", ChangeKind.ADDED))
    after = {name: os.stat(mount / name).st_ino for name in names}
    assert before != after  # the inode numbers did change
    assert {(c.kind, c.path) for c in seen} == {
        (ChangeKind.MODIFIED, str(mount / "m7.py")),
        (ChangeKind.ADDED, str(mount / "marker.py")),
    }


async def test_a_root_given_as_a_symlink_follows_it_when_it_is_re_pointed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, events_backend: str
) -> None:
    caplog.set_level("INFO", logger="asyncreload")
    v1, v2, current = tmp_path / "v1", tmp_path / "v2", tmp_path / "current"
    v1.mkdir()
    v2.mkdir()
    current.symlink_to(v1)
    async with open_watcher(current) as changes:
        (v1 / "a.py").write_text("x")
        await collect_until(changes, has(v1 / "a.py", ChangeKind.ADDED))
        flip = tmp_path / "current.new"
        flip.symlink_to(v2)
        os.replace(flip, current)  # as a deploy flips it: atomically
        seen = await collect_until(changes, has(v2, ChangeKind.MODIFIED))
        (v1 / "old.py").write_text("no longer watched")
        (v2 / "b.py").write_text("x")
        seen += await collect_until(changes, has(v2 / "b.py", ChangeKind.ADDED))
        (v2 / "c.py").write_text("x")  # events come in order: old.py's would be in by now
        seen += await collect_until(changes, has(v2 / "c.py", ChangeKind.ADDED))
    assert not [c for c in seen if c.path.startswith(str(v1))], seen
    assert [m for m in caplog.messages if str(v2) in m] == [
        f"{current} now leads to {v2}: watching it instead of {v1}"
    ]


async def test_watching_the_current_directory_follows_the_mount_table_too(
    fuse_mount: FuseMount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_watcher(poll_interval=0.1) as changes:
        await anyio.to_thread.run_sync(fuse_mount.remount)
        (fuse_mount.backing / "after.py").write_text("far side, after the remount")
        await collect_until(changes, has(fuse_mount.mount / "after.py", source=Source.STAT))


AWATCH_AND_BREAK = """
import gc, sys, anyio, asyncreload

async def touch(root):
    while True:  # until the watcher is in place and sees it: awatch has no "ready" signal
        with open(f"{root}/f.py", "w") as f:
            f.write("x")
        await anyio.sleep(0.05)

async def main(root):
    async with anyio.create_task_group() as tg:
        tg.start_soon(touch, root)
        async for batch in asyncreload.awatch(root):
            break  # no aclosing: the generator is finalized later, elsewhere
        gc.collect()
        for _ in range(3):  # and the program goes on: task groups, scopes, sleeps
            async with anyio.create_task_group() as inner:
                inner.start_soon(anyio.sleep, 0.05)
            with anyio.move_on_after(0.05):
                await anyio.sleep(1)
        tg.cancel_scope.cancel()
    print("went on", flush=True)

anyio.run(main, sys.argv[1], backend=sys.argv[2])
"""


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_breaking_out_of_awatch_without_aclosing_never_crashes_the_program(
    tmp_path: Path, events_backend: str, loop: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", AWATCH_AND_BREAK, str(tmp_path), loop],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "went on\n", "")


@pytest.mark.parametrize("delay", [0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1])
async def test_cancelling_open_watcher_while_it_starts_leaks_nothing(
    tmp_path: Path, fuse_mount: FuseMount, delay: float
) -> None:
    for i in range(50):
        (tmp_path / f"d{i}").mkdir()
    # Events, a polled mount and a polled local tree start side by side; cancelled at some point
    # of that. A stream left open would be a ResourceWarning, an error here.
    with anyio.move_on_after(delay):
        async with open_watcher(tmp_path, fuse_mount.mount, poll=[tmp_path / "d1"]):
            await anyio.sleep_forever()
    gc.collect()


async def test_misused_arguments_get_a_clear_answer(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("x")
    (tmp_path / "main.txt").write_text("x")
    # One glob given as a str is that glob, not one glob per character ('*' matching all).
    async with open_watcher(tmp_path, include="*.py") as changes:
        (tmp_path / "style.css").write_text("x")
        (tmp_path / "app.py").write_text("x")
        seen = await collect_until(changes, has(tmp_path / "app.py"))
        assert str(tmp_path / "style.css") not in {c.path for c in seen}
    with pytest.raises(ConfigError, match="empty"):
        async with open_watcher(""):
            pass
    with pytest.raises(ConfigError, match="empty"):
        async with open_watcher(tmp_path, poll=[""]):
            pass
    with pytest.raises(TypeError, match="expected a path"):
        async with open_watcher(3):  # type: ignore[arg-type]
            pass
    async with open_watcher(os.fsencode(tmp_path)) as changes:  # bytes: a path, as os takes it
        (tmp_path / "b.py").write_text("x")
        await collect_until(changes, has(tmp_path / "b.py"))
