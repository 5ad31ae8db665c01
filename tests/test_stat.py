"""The stat poller's sweep on real trees, including the ways a tree can fight back."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from asyncreload import Change, ChangeKind, PathFilter
from asyncreload._stat import HOT_FOR, Snapshot, Sweep, Sweeper, _HotSet, poll

from .helpers import CLI, without_dac_override


def sweep(root: Path, old: Snapshot | None = None) -> Sweep:
    return Sweeper(str(root), PathFilter()).sweep(old)


def kinds(result: Sweep, root: Path) -> dict[str, ChangeKind]:
    """The sweep's changes by path relative to ``root``; a path must come once."""
    found = {os.path.relpath(c.path, root): c.kind for c in result.changes}
    assert len(found) == len(result.changes), result.changes
    return found


def make_tree(root: Path, dirs: int = 5, files: int = 10) -> None:
    for d in range(dirs):
        (root / f"d{d}" / "sub").mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}.py").write_text("x")
        (root / f"d{d}" / "sub" / "deep.py").write_text("x")


def _age(root: Path) -> None:
    """Date every directory an hour back, so their listings are trusted from the first sweep."""
    old_ns = time.time_ns() - 3600 * 10**9
    for d in [root, *root.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            os.utime(d, ns=(old_ns, old_ns))


def test_added_modified_deleted_files_and_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = sweep(tmp_path)
    assert first.problems == []
    assert first.changes == []  # the first sweep has nothing to compare with
    assert len(first.snapshot.files) == 5 * 11
    (tmp_path / "d0" / "f0.py").write_text("longer content")
    (tmp_path / "d1" / "f1.py").unlink()
    (tmp_path / "d2" / "new.py").write_text("x")
    shutil.rmtree(tmp_path / "d3")
    (tmp_path / "d4" / "newdir").mkdir()
    changed = kinds(sweep(tmp_path, first.snapshot), tmp_path)
    assert changed.pop("d0/f0.py") is ChangeKind.MODIFIED
    assert changed.pop("d1/f1.py") is ChangeKind.DELETED
    assert changed.pop("d2/new.py") is ChangeKind.ADDED
    assert changed.pop("d4/newdir") is ChangeKind.ADDED
    assert changed.pop("d3") is ChangeKind.DELETED
    assert set(changed) == {f"d3/f{i}.py" for i in range(10)} | {"d3/sub", "d3/sub/deep.py"}
    assert set(changed.values()) == {ChangeKind.DELETED}


def test_same_size_same_second_rewrite_is_seen(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("one")
    first = sweep(tmp_path)
    st = f.stat()
    f.write_text("two")  # same size; force the same mtime to the ns but a new inode
    f2 = tmp_path / "a.tmp"
    f2.write_text("two")
    os.utime(f2, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(f2, f)
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {"a.py": ChangeKind.MODIFIED}


def test_unchanged_directories_are_not_listed_again_but_new_files_are_seen(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=2, files=3)
    _age(tmp_path)
    first = sweep(tmp_path)
    assert all(d.trusted for d in first.snapshot.dirs.values())
    # A new file changes its directory's mtime: that listing is read again.
    (tmp_path / "d1" / "sub" / "new.py").write_text("x")
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {"d1/sub/new.py": ChangeKind.ADDED}


def test_an_idle_sweep_carries_every_directory_record_over_unchanged(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=3, files=5)
    _age(tmp_path)
    first = sweep(tmp_path)
    second = sweep(tmp_path, first.snapshot)
    assert second.changes == []
    # The same objects, not equal copies: an idle sweep builds nothing new.
    assert all(second.snapshot.dirs[p] is d for p, d in first.snapshot.dirs.items())
    (tmp_path / "d1" / "f2.py").write_text("changed")  # the listing stays as it was
    third = sweep(tmp_path, second.snapshot)
    assert kinds(third, tmp_path) == {"d1/f2.py": ChangeKind.MODIFIED}
    d0, d1 = str(tmp_path / "d0"), str(tmp_path / "d1")
    assert third.snapshot.dirs[d1] is not second.snapshot.dirs[d1]
    assert third.snapshot.dirs[d0] is second.snapshot.dirs[d0]
    assert kinds(sweep(tmp_path, third.snapshot), tmp_path) == {}


def test_a_linked_file_that_becomes_a_directory_is_walked(tmp_path: Path) -> None:
    watched, elsewhere = tmp_path / "w", tmp_path / "elsewhere"
    watched.mkdir()
    elsewhere.mkdir()
    (elsewhere / "target").write_text("x")
    (watched / "link").symlink_to(elsewhere / "target")
    _age(watched)
    first = sweep(watched)
    (elsewhere / "target").unlink()  # the watched directory's listing doesn't change...
    (elsewhere / "target").mkdir()
    (elsewhere / "target" / "m.py").write_text("x")
    second = sweep(watched, first.snapshot)  # ...but what the link names is now a directory
    assert {(c.kind, os.path.relpath(c.path, watched)) for c in second.changes} == {
        (ChangeKind.DELETED, "link"),
        (ChangeKind.ADDED, "link"),
        (ChangeKind.ADDED, "link/m.py"),
    }


def test_a_fresh_directory_listing_is_not_trusted(tmp_path: Path) -> None:
    # Timestamps are coarse: a file created in the same tick as the listing we read leaves the
    # directory's mtime as it was. A listing read while its mtime is recent is read again.
    (tmp_path / "a.py").write_text("x")
    first = sweep(tmp_path)
    mtime = tmp_path.stat().st_mtime_ns
    (tmp_path / "b.py").write_text("x")
    os.utime(tmp_path, ns=(mtime, mtime))  # as if b.py had landed in the same tick
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {"b.py": ChangeKind.ADDED}


def test_files_vanishing_mid_sweep(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=3, files=20)
    first = sweep(tmp_path)

    class Vandal(PathFilter):
        """Deletes a file and a whole directory while the sweep is listing them."""

        def __call__(self, relpath: str, *, is_dir: bool = False) -> bool:
            if relpath == "d0/f0.py":
                shutil.rmtree(tmp_path / "d2", ignore_errors=True)
                for f in (tmp_path / "d0").glob("f1*.py"):
                    f.unlink()
            return super().__call__(relpath, is_dir=is_dir)

    second = Sweeper(str(tmp_path), Vandal()).sweep(first.snapshot)
    assert second.problems == []  # vanishing is a change, not a problem
    changed = kinds(second, tmp_path)
    assert changed["d0/f10.py"] is ChangeKind.DELETED
    assert changed["d2"] is ChangeKind.DELETED
    assert all(k is ChangeKind.DELETED for k in changed.values())
    assert kinds(sweep(tmp_path, second.snapshot), tmp_path) == {}


def test_symlink_loops_end_and_links_are_followed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path)  # pkg/loop/pkg/loop/... forever
    (tmp_path / "self").symlink_to(tmp_path / "self")  # stat() says ELOOP
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "linked").symlink_to(tmp_path / "pkg")  # a real second path to pkg
    first = sweep(tmp_path)
    assert first.problems == []
    assert set(first.snapshot.files) == {
        str(tmp_path / p) for p in ("pkg/m.py", "self", "dangling", "linked/m.py")
    }
    (tmp_path / "pkg" / "m.py").write_text("changed")
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {
        "pkg/m.py": ChangeKind.MODIFIED,
        "linked/m.py": ChangeKind.MODIFIED,
    }


def test_ignored_and_excluded_directories_are_pruned(tmp_path: Path) -> None:
    for d in ("node_modules/x", ".git/objects", "build", "mnt/share"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f.py").write_text("x")
    (tmp_path / "app.py").write_text("x")
    snap = (
        Sweeper(
            str(tmp_path), PathFilter(exclude=["build"]), excludes=[str(tmp_path / "mnt" / "share")]
        )
        .sweep(None)
        .snapshot
    )
    assert set(snap.files) == {str(tmp_path / "app.py")}
    assert str(tmp_path / "node_modules") not in snap.dirs  # never even listed


def test_a_single_file_as_root(tmp_path: Path) -> None:
    f = tmp_path / "settings.toml"
    f.write_text("a")
    first = sweep(f)
    f.write_text("bb")
    second = sweep(f, first.snapshot)
    assert [(c.kind, c.path) for c in second.changes] == [(ChangeKind.MODIFIED, str(f))]
    f.unlink()
    assert [c.kind for c in sweep(f, second.snapshot).changes] == [ChangeKind.DELETED]


def test_permission_denied_warns_once_and_the_rest_is_still_watched(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    locked = tree / "locked"
    locked.mkdir(parents=True)
    (locked / "secret.py").write_text("x")
    locked.chmod(0)
    try:
        with CLI(
            "watch", "--json", "--force-polling", "--poll-interval", "0.05", str(tree),
            prefix=without_dac_override(),
        ) as cli:  # fmt: skip
            cli.wait_line(lambda line: "permission denied" in line, stream="stderr")
            cli.wait_ready()
            (tree / "ok.py").write_text("x")
            cli.wait_change(tree / "ok.py", source="stat")
            (tree / "ok2.py").write_text("x")  # several sweeps later...
            cli.wait_change(tree / "ok2.py", source="stat")
            warnings = [line for line in cli.stderr if "permission denied" in line]
            assert warnings == [f"asyncreload: warning: {locked}: permission denied; "
                                "not watched until it can be read"]  # fmt: skip
            locked.chmod(0o755)
            cli.wait_line(lambda line: "readable again" in line, stream="stderr")
            cli.wait_change(locked / "secret.py", source="stat")  # now seen, as added
    finally:
        locked.chmod(0o755)
    assert "Traceback" not in "\n".join(cli.stderr)


@pytest.mark.anyio
async def test_sweep_runs_off_the_event_loop(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=50, files=40)
    sweeper = Sweeper(str(tmp_path), PathFilter())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        snap = (await sweeper.sweep_parallel(None, workers=4)).snapshot
        tg.cancel_scope.cancel()
    assert len(snap.files) == 50 * 41
    assert ticks > 0  # the loop kept running while the threads swept


@pytest.mark.anyio
async def test_a_slow_sweep_sends_what_it_found_before_it_ends(tmp_path: Path) -> None:
    for name in ("fast", "slow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.py").write_text("x")
    released = threading.Event()
    held: list[bool] = []

    class Gate(PathFilter):
        """Holds the listing of slow/ until the change in fast/ has been received."""

        armed = False

        def __call__(self, relpath: str, *, is_dir: bool = False) -> bool:
            if self.armed and relpath == "slow/m.py" and not held:
                held.append(released.wait(30))
            return super().__call__(relpath, is_dir=is_dir)

    gate = Gate()
    sweeper = Sweeper(str(tmp_path), gate)
    first = await sweeper.sweep_parallel(None, workers=2)
    (tmp_path / "fast" / "m.py").write_text("changed")
    gate.armed = True  # both directories are fresh, so both listings are read (and filtered)
    send, receive = anyio.create_memory_object_stream[list[Change]](8)
    received: list[Change] = []

    async def release_on_first_batch() -> None:
        received.extend(await receive.receive())
        released.set()

    async with send, receive, anyio.create_task_group() as tg:
        tg.start_soon(release_on_first_batch)
        second = await sweeper.sweep_parallel(first.snapshot, workers=2, send=send)
        tg.cancel_scope.cancel()  # if nothing came while it ran, don't wait for it now
    assert held == [True]  # the sweep was still running when its first change arrived
    assert [(c.kind, c.path) for c in received] == [
        (ChangeKind.MODIFIED, str(tmp_path / "fast" / "m.py"))
    ]
    assert second.changes == []  # nothing held back for the end


def test_what_the_hot_set_finds_is_not_reported_again_by_the_next_sweep(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=1, files=2)
    _age(tmp_path)
    sweeper = Sweeper(str(tmp_path), PathFilter())
    first = sweeper.sweep(None)
    f = tmp_path / "d0" / "f0.py"
    f.write_text("changed")
    second = sweeper.sweep(first.snapshot)
    assert second.touched == [str(f)]
    hot = _HotSet()
    hot.note(second.touched, now=0.0)
    f.write_text("changed again")
    snapshot = second.snapshot
    assert [(c.kind, c.path) for c in hot.check(snapshot)] == [(ChangeKind.MODIFIED, str(f))]
    assert hot.check(snapshot) == []
    assert sweeper.sweep(snapshot).changes == []  # the check wrote what it saw into the snapshot
    f.unlink()
    assert [(c.kind, c.path) for c in hot.check(snapshot)] == [(ChangeKind.DELETED, str(f))]
    assert not hot
    assert sweeper.sweep(snapshot).changes == []


def test_the_hot_set_keeps_the_files_changed_last_and_cools_down() -> None:
    hot = _HotSet()
    hot.note([f"/r/{i}.py" for i in range(100)], now=0.0)
    assert list(hot.paths) == [f"/r/{i}.py" for i in range(68, 100)]
    hot.note(["/r/99.py"], now=HOT_FOR - 1)
    hot.note([], now=HOT_FOR + 1)
    assert list(hot.paths) == ["/r/99.py"]


@pytest.mark.anyio
async def test_a_file_just_changed_is_checked_again_between_sweeps(tmp_path: Path) -> None:
    f = tmp_path / "app.py"
    f.write_text("x")
    sweeps: list[float] = []
    send, receive = anyio.create_memory_object_stream[list[Change]](8)
    poller = functools.partial(
        poll,
        Sweeper(str(tmp_path), PathFilter()),
        send,
        interval=5.0,  # far longer than a hot check takes, even on a loaded machine
        workers=1,
        on_sweep=lambda seconds, files: sweeps.append(seconds),
    )
    async with receive, anyio.create_task_group() as tg:
        await tg.start(poller)
        f.write_text("xx")
        with anyio.fail_after(30):
            first = await receive.receive()  # from a sweep
        assert [(c.kind, c.path) for c in first] == [(ChangeKind.MODIFIED, str(f))]
        swept = len(sweeps)
        f.write_text("xxx")
        with anyio.fail_after(30):
            second = await receive.receive()
        assert (ChangeKind.MODIFIED, str(f)) in [(c.kind, c.path) for c in second]
        assert len(sweeps) == swept  # found between two sweeps, by the hot check
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_cpu_budget_stretches_the_pause_between_sweeps(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=100, files=30)  # 3,100 files: a sweep is a few ms of CPU
    marks: list[tuple[float, float]] = []  # (wall, this process's CPU) as each sweep ends
    send, receive = anyio.create_memory_object_stream[list[Change]](8)
    poller = functools.partial(
        poll,
        Sweeper(str(tmp_path), PathFilter()),
        send,
        interval=0.001,  # alone, this would sweep half the time: half a core
        workers=1,
        cpu_budget=0.05,
        on_sweep=lambda seconds, files: marks.append((time.monotonic(), time.process_time())),
    )
    async with receive, anyio.create_task_group() as tg:
        await tg.start(poller)
        with anyio.fail_after(60):
            while len(marks) < 8:
                await anyio.sleep(0.05)
        (wall0, cpu0), (wall1, cpu1) = marks[1], marks[-1]
        # Measured independently of the poller's own accounting: all of this process's CPU
        # (sweeps, event loop, this test) over seven cycles.
        assert (cpu1 - cpu0) / (wall1 - wall0) < 0.15
        (tmp_path / "d7" / "f3.py").write_text("changed")
        with anyio.fail_after(30):
            batch = await receive.receive()  # later, but found
        assert (ChangeKind.MODIFIED, str(tmp_path / "d7" / "f3.py")) in [
            (c.kind, c.path) for c in batch
        ]
        tg.cancel_scope.cancel()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("Linux file system semantics")
