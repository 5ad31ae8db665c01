"""The hybrid watcher end to end: real files, a real FUSE mount, both anyio backends."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

import asyncreload
from asyncreload import ChangeKind, PathNotFoundError, Source, open_watcher

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
    assert any("readable again" in r.getMessage() for r in caplog.records)


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
