"""The stat poller's sweep on real trees, including the ways a tree can fight back."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import cast

import anyio
import pytest

from asyncreload import Change, ChangeKind, PathFilter, _platform, open_watcher
from asyncreload._exceptions import WatchPathError
from asyncreload._watch import walk
from asyncreload._watch.poll import HOT_FOR, Sweep, Sweeper, _HotSet, poll
from asyncreload._watch.snapshot import Snapshot, file_key, same_content

from .conftest import FuseMount
from .helpers import CLI, all_of, collect_until, has, reading_by_path, without_dac_override


@pytest.fixture(params=["fd", "path"])
def dir_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Each way the poller reads a directory: through a descriptor (Linux, macOS), and by path
    (Windows's way, forced here). The ``script`` of a CLI that reads the same way."""
    if request.param == "fd":
        return None
    monkeypatch.setattr(_platform, "DIR_FD", False)
    return reading_by_path()


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


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
def test_unchanged_directories_are_not_listed_again_but_new_files_are_seen(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=2, files=3)
    _age(tmp_path)
    first = sweep(tmp_path)
    assert all(d.trusted for d in first.snapshot.dirs.values())
    # A new file changes its directory's mtime: that listing is read again.
    (tmp_path / "d1" / "sub" / "new.py").write_text("x")
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {"d1/sub/new.py": ChangeKind.ADDED}


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
def test_a_fresh_directory_listing_is_not_trusted(tmp_path: Path) -> None:
    # Timestamps are coarse: a file created in the same tick as the listing we read leaves the
    # directory's mtime as it was. A listing read while its mtime is recent is read again.
    (tmp_path / "a.py").write_text("x")
    first = sweep(tmp_path)
    mtime = tmp_path.stat().st_mtime_ns
    (tmp_path / "b.py").write_text("x")
    os.utime(tmp_path, ns=(mtime, mtime))  # as if b.py had landed in the same tick
    assert kinds(sweep(tmp_path, first.snapshot), tmp_path) == {"b.py": ChangeKind.ADDED}


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
def test_symlink_loops_end_and_each_directory_is_walked_once(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "m.py").write_text("x")
    (outside / "lib").mkdir(parents=True)
    (outside / "lib" / "o.py").write_text("x")
    (tree / "pkg" / "loop").symlink_to(tree)  # pkg/loop/pkg/loop/... forever
    (tree / "self").symlink_to(tree / "self")  # stat() says ELOOP
    (tree / "dangling").symlink_to(tree / "nowhere")
    # A second path to pkg, listed before it: pkg is still walked at its real path, once.
    (tree / "a-link").symlink_to(tree / "pkg")
    (tree / "shared").symlink_to(outside)  # outside the tree: walked through the link
    (tree / "shared-too").symlink_to(outside / "lib")  # ... and once only
    first = sweep(tree)
    assert first.problems == []
    files = set(first.snapshot.files)
    assert {str(tree / p) for p in ("pkg/m.py", "self", "dangling")} <= files
    assert len(files & {str(tree / "shared/lib/o.py"), str(tree / "shared-too/o.py")}) == 1
    assert len(files) == 4, files
    (tree / "pkg" / "m.py").write_text("changed")
    assert kinds(sweep(tree, first.snapshot), tree) == {"pkg/m.py": ChangeKind.MODIFIED}


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
def test_a_single_file_as_root(tmp_path: Path) -> None:
    f = tmp_path / "settings.toml"
    f.write_text("a")
    first = sweep(f)
    f.write_text("bb")
    second = sweep(f, first.snapshot)
    assert [(c.kind, c.path) for c in second.changes] == [(ChangeKind.MODIFIED, str(f))]
    f.unlink()
    assert [c.kind for c in sweep(f, second.snapshot).changes] == [ChangeKind.DELETED]


def _watching_unprivileged(tree: Path, dir_reader: str | None) -> CLI:
    """``watch --json`` polling ``tree`` every 50 ms, without root's permission override (so
    a chmod locks it out), reading directories the ``dir_reader`` way."""
    return CLI(
        "watch", "--json", "--force-polling", "--poll-interval", "0.05", str(tree),
        prefix=without_dac_override(), script=dir_reader,
    )  # fmt: skip


def test_permission_denied_warns_once_and_the_rest_is_still_watched(
    tmp_path: Path, dir_reader: str | None
) -> None:
    tree = tmp_path / "tree"
    locked = tree / "locked"
    locked.mkdir(parents=True)
    (locked / "secret.py").write_text("x")
    locked.chmod(0)
    try:
        with _watching_unprivileged(tree, dir_reader) as cli:
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


def _no_deletion(cli: CLI, path: Path) -> None:
    deleted = [c for c in cli.json_changes() if c["path"] == str(path) and c["change"] == "deleted"]
    assert deleted == [], cli.stdout


def test_a_file_that_cant_be_stated_is_kept_and_checked_again(
    tmp_path: Path, dir_reader: str | None
) -> None:
    # chmod 644 on its directory: the listing still reads, but a stat of sub/a.py is EACCES.
    tree = tmp_path / "tree"
    sub = tree / "sub"
    sub.mkdir(parents=True)
    (sub / "a.py").write_text("one")
    _age(tree)  # sub's listing is trusted: only its known files are stat'ed
    try:
        with _watching_unprivileged(tree, dir_reader) as cli:
            cli.wait_ready()
            sub.chmod(0o644)
            cli.wait_line(lambda line: f"{sub}: permission denied" in line, stream="stderr")
            sub.chmod(0o755)
            cli.wait_line(lambda line: f"{sub}: readable again" in line, stream="stderr")
            (sub / "a.py").write_text("two, longer")
            cli.wait_change(sub / "a.py", source="stat")
            _no_deletion(cli, sub / "a.py")
            warnings = [line for line in cli.stderr if "permission denied" in line]
            assert len(warnings) == 1, cli.stderr
    finally:
        sub.chmod(0o755)
    assert [c["change"] for c in cli.json_changes()] == ["modified"]
    assert "Traceback" not in "\n".join(cli.stderr)


def test_a_directory_made_unreadable_is_one_problem_and_keeps_its_last_state(
    tmp_path: Path, dir_reader: str | None
) -> None:
    # chmod 0 on a directory already read and trusted: it can't be listed, nor its files
    # stat'ed, nor its subdirectories reached. One warning, for it alone, by path too (where the
    # directory's own stat still works): not one more for each directory below it.
    tree = tmp_path / "tree"
    locked = tree / "locked"
    (locked / "sub").mkdir(parents=True)
    (locked / "a.py").write_text("x")
    (locked / "sub" / "b.py").write_text("x")
    _age(tree)
    try:
        with _watching_unprivileged(tree, dir_reader) as cli:
            cli.wait_ready()
            locked.chmod(0)
            cli.wait_line(lambda line: "permission denied" in line, stream="stderr")
            (tree / "ok.py").write_text("x")
            cli.wait_change(tree / "ok.py", source="stat")  # swept again since the warning
            locked.chmod(0o755)
            cli.wait_line(lambda line: f"{locked}: readable again" in line, stream="stderr")
            (locked / "sub" / "b.py").write_text("changed")
            cli.wait_change(locked / "sub" / "b.py", source="stat")
    finally:
        locked.chmod(0o755)
    warnings = [line for line in cli.stderr if "permission denied" in line]
    assert warnings == [f"asyncreload: warning: {locked}: permission denied; "
                        "not watched until it can be read"]  # fmt: skip
    assert [c["change"] for c in cli.json_changes()] == ["added", "modified"]


def test_a_hot_file_that_cant_be_stated_is_kept_and_checked_again(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    sub = tree / "sub"
    sub.mkdir(parents=True)
    (sub / "a.py").write_text("one")
    _age(tree)
    try:
        # A long interval: between two sweeps, the hot set checks a.py every 50 ms.
        with CLI(
            "watch", "--json", "--force-polling", "--poll-interval", "1", str(tree),
            prefix=without_dac_override(),
        ) as cli:  # fmt: skip
            cli.wait_ready()
            (sub / "a.py").write_text("two")
            cli.wait_change(sub / "a.py", source="stat")  # now hot
            sub.chmod(0)
            cli.wait_line(lambda line: f"{sub}: permission denied" in line, stream="stderr")
            sub.chmod(0o755)
            cli.wait_line(lambda line: f"{sub}: readable again" in line, stream="stderr")
            (sub / "a.py").write_text("three")
            cli.wait_line(lambda line: len(cli.json_changes()) >= 2)
            _no_deletion(cli, sub / "a.py")
    finally:
        sub.chmod(0o755)
    assert [c["change"] for c in cli.json_changes()] == ["modified", "modified"]


@pytest.mark.anyio
@pytest.mark.usefixtures("dir_reader")
async def test_a_directory_replaced_by_a_file_of_its_name_is_reported(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / "m.py").write_text("x")
    async with open_watcher(tmp_path, force_polling=True, poll_interval=0.05) as changes:
        empty.rmdir()
        empty.write_text("now a file")
        shutil.rmtree(full)
        full.write_text("now a file too")
        seen = await collect_until(
            changes,
            all_of(has(empty, ChangeKind.MODIFIED), has(full, ChangeKind.MODIFIED),
                   has(full / "m.py", ChangeKind.DELETED)),
        )  # fmt: skip
    assert {(c.kind, c.path) for c in seen} == {
        (ChangeKind.MODIFIED, str(empty)),
        (ChangeKind.MODIFIED, str(full)),
        (ChangeKind.DELETED, str(full / "m.py")),
    }


def _after_a_clock_tick(path: Path) -> None:
    """Wait until the clock is past ``path``'s ctime by more than a (coarse) timestamp tick."""
    ctime = path.stat().st_ctime_ns
    while time.time_ns() < ctime + 50_000_000:
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["touch -r", "cp -p"])
@pytest.mark.usefixtures("dir_reader")
def test_a_same_size_edit_whose_mtime_is_put_back_is_seen(tmp_path: Path, how: str) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    f, ref = watched / "a.py", tmp_path / "ref"
    f.write_text("one")
    ref.write_text("ref")
    _age(watched)
    first = sweep(watched)
    mtime = f.stat().st_mtime_ns
    _after_a_clock_tick(f)
    if how == "touch -r":
        subprocess.run(["touch", "-r", str(f), str(ref)], check=True)  # ref gets a.py's times
        f.write_text("two")  # same size
        subprocess.run(["touch", "-r", str(ref), str(f)], check=True)  # and they are put back
    else:
        ref.write_text("two")
        subprocess.run(["touch", "-r", str(f), str(ref)], check=True)
        subprocess.run(["cp", "-p", str(ref), str(f)], check=True)  # in place: same inode
    assert (f.stat().st_mtime_ns, f.stat().st_size) == (mtime, 3)  # only the ctime tells
    assert kinds(sweep(watched, first.snapshot), watched) == {"a.py": ChangeKind.MODIFIED}


@pytest.mark.anyio
async def test_sweep_runs_off_the_event_loop(tmp_path: Path) -> None:
    # The sweep's filter waits, inside the sweep, for the event loop to run a task: on the
    # loop's own thread it would wait in vain (it asserted only that a ticker ticked at all).
    make_tree(tmp_path, dirs=50, files=40)
    sweeping, loop_ran = threading.Event(), threading.Event()
    waited: list[bool] = []

    class WaitsForTheLoop(PathFilter):
        def __call__(self, relpath: str, *, is_dir: bool = False) -> bool:
            if not sweeping.is_set():
                sweeping.set()
                waited.append(loop_ran.wait(30))
            return super().__call__(relpath, is_dir=is_dir)

    async def loop_runs() -> None:
        while not sweeping.is_set():
            await anyio.sleep(0.001)
        loop_ran.set()

    sweeper = Sweeper(str(tmp_path), WaitsForTheLoop())
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop_runs)
        snap = (await sweeper.sweep_parallel(None, workers=4)).snapshot
        tg.cancel_scope.cancel()  # a sweep that never called the filter fails below, not hangs
    assert len(snap.files) == 50 * 41
    assert waited == [True]


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


@pytest.mark.usefixtures("dir_reader")
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


@pytest.mark.usefixtures("dir_reader")
def test_after_a_remount_new_inode_numbers_alone_are_no_change(sshfs_mount: FuseMount) -> None:
    backing, mount = sshfs_mount.backing, sshfs_mount.mount
    names = [f"m{i}.py" for i in range(20)]
    for name in names:
        (backing / name).write_text("x")
    _age(backing)  # the listing is trusted: the known files are stat'ed again
    sweeper = Sweeper(str(mount), PathFilter())
    snapshot = sweeper.sweep(None).snapshot
    hot = _HotSet()
    hot.note([str(mount / "m0.py")], now=0.0)
    sshfs_mount.remount()  # the same device number again, here; new inode numbers:
    renumbered = {name: os.stat(mount / name).st_ino for name in reversed(names)}
    assert renumbered != {name: snapshot.files[str(mount / name)] & (2**64 - 1) for name in names}
    sweeper.renumbered = True  # as the watcher marks its pollers when the mount table changes
    assert hot.check(snapshot) == []  # a new inode number alone is the sweep's to judge
    second = sweeper.sweep(snapshot)
    assert second.changes == []
    assert hot.check(second.snapshot) == []  # the sweep took the new numbers in
    (backing / "m0.py").write_text("changed")
    assert [c.kind for c in hot.check(second.snapshot)] == [ChangeKind.MODIFIED]


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


def _windows_error(winerror: int, code: int, path: str) -> OSError:
    """An OSError as Windows's os functions raise it: ``winerror`` set, and the errno Python's
    table (PC/errmap.h) derives from it, which for network errors says little or misleads."""
    error = OSError(code, os.strerror(code), path)
    setattr(error, "winerror", winerror)  # noqa: B010 - typeshed has it on Windows only
    return error


def _failing_stat(
    monkeypatch: pytest.MonkeyPatch, fails: Callable[[str, bool], OSError | None]
) -> None:
    """``os.stat`` raising ``fails(path, follow_symlinks)`` where that is not None."""
    real = os.stat

    def stat(path: str, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> object:
        error = fails(os.fsdecode(path), follow_symlinks)
        if error is not None:
            raise error
        return real(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "stat", stat)


@pytest.mark.parametrize(
    ("winerror", "code"),
    [(53, errno.ENOENT), (64, errno.EINVAL), (21, errno.EACCES), (1231, errno.EINVAL)],
    ids=["BAD_NETPATH", "NETNAME_DELETED", "NOT_READY", "NETWORK_UNREACHABLE"],
)
def test_a_share_that_stops_answering_on_windows_is_not_reported_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, winerror: int, code: int
) -> None:
    # Windows's way, forced on Linux: directories read by path, and a lost share raises its
    # winerror, with an errno (ENOENT for ERROR_BAD_NETPATH) that alone would read as deleted.
    monkeypatch.setattr(_platform, "DIR_FD", False)
    make_tree(tmp_path, dirs=2, files=3)
    first = sweep(tmp_path)
    share = str(tmp_path / "d1")
    _failing_stat(
        monkeypatch,
        lambda p, _: _windows_error(winerror, code, p) if p.startswith(share) else None,
    )
    second = sweep(tmp_path, first.snapshot)
    assert second.changes == []
    assert [(p.path, p.dead_mount) for p in second.problems] == [(share, True)]
    assert second.snapshot.files == first.snapshot.files  # its last known state, kept


def test_a_file_gone_on_windows_is_deleted_and_a_lost_share_under_it_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restat of a known listing: ERROR_FILE_NOT_FOUND is a deletion; ERROR_UNEXP_NET_ERR for a
    # file of another directory is its whole directory not answering.
    monkeypatch.setattr(_platform, "DIR_FD", False)
    make_tree(tmp_path, dirs=2, files=3)
    _age(tmp_path)
    first = sweep(tmp_path)
    gone, lost = str(tmp_path / "d0" / "f0.py"), str(tmp_path / "d1" / "f0.py")

    def fails(path: str, follow: bool) -> OSError | None:
        if path == gone:
            return _windows_error(2, errno.ENOENT, path)
        if path == lost:
            return _windows_error(59, errno.EINVAL, path)
        return None

    _failing_stat(monkeypatch, fails)
    second = sweep(tmp_path, first.snapshot)
    assert kinds(second, tmp_path) == {"d0/f0.py": ChangeKind.DELETED}
    assert [(p.path, p.dead_mount) for p in second.problems] == [(str(tmp_path / "d1"), True)]


def test_a_link_windows_cant_resolve_is_watched_as_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A symlink loop on Windows: ERROR_CANT_RESOLVE_FILENAME (errno EINVAL), not ELOOP.
    monkeypatch.setattr(_platform, "DIR_FD", False)
    (tmp_path / "m.py").write_text("x")
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "m.py")  # a real link; its following fails as on Windows
    _failing_stat(
        monkeypatch,
        lambda p, follow: (
            _windows_error(1921, errno.EINVAL, p) if p == str(loop) and follow else None
        ),
    )
    first = sweep(tmp_path)
    assert first.problems == []
    assert set(first.snapshot.files) == {str(tmp_path / "m.py"), str(loop)}


def _fake_stat(**fields: int) -> os.stat_result:
    base = {"st_mtime_ns": 10**18, "st_ctime_ns": 10**18, "st_size": 10, "st_ino": 7}
    return cast(os.stat_result, types.SimpleNamespace(**{**base, **fields}))


def test_on_windows_the_file_key_leaves_the_creation_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_platform, "CTIME_IS_CHANGE", False)
    key = file_key(_fake_stat(st_file_attributes=0x20))
    assert file_key(_fake_stat(st_file_attributes=0x20, st_ctime_ns=5)) == key  # created anew
    assert file_key(_fake_stat(st_file_attributes=0x21)) != key  # made read-only
    assert file_key(_fake_stat(st_file_attributes=0x20, st_mtime_ns=10**18 + 1)) != key
    assert file_key(_fake_stat(st_file_attributes=0x20, st_size=11)) != key
    renumbered = file_key(_fake_stat(st_file_attributes=0x20, st_ino=8))
    assert renumbered != key and same_content(renumbered, key)
    # A 128-bit file index (ReFS) is folded into the inode's 64 bits: the rest stays apart.
    wide = file_key(_fake_stat(st_file_attributes=0x20, st_ino=(3 << 64) | 5))
    assert wide != key and same_content(wide, key)
    monkeypatch.setattr(_platform, "CTIME_IS_CHANGE", True)
    assert file_key(_fake_stat(st_ctime_ns=5)) != file_key(_fake_stat())  # POSIX: a change


@pytest.mark.parametrize("listing", ["read again", "trusted"])
def test_on_windows_a_sweep_does_not_take_st_ctime_for_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    # Keyed the Windows way on Linux: a chmod changes only the ctime here, which on Windows is
    # the creation time; the sweep (its restat of a trusted listing too) doesn't count it.
    monkeypatch.setattr(_platform, "DIR_FD", False)
    monkeypatch.setattr(_platform, "CTIME_IS_CHANGE", False)
    (tmp_path / "m.py").write_text("x")
    (tmp_path / "n.py").write_text("x")
    if listing == "trusted":
        _age(tmp_path)
    first = sweep(tmp_path)
    (tmp_path / "m.py").chmod(0o600)
    _after_a_clock_tick(tmp_path / "n.py")
    (tmp_path / "n.py").write_text("yy")
    second = sweep(tmp_path, first.snapshot)
    assert kinds(second, tmp_path) == {"n.py": ChangeKind.MODIFIED}
    assert kinds(sweep(tmp_path, second.snapshot), tmp_path) == {}


def test_a_junction_is_walked_as_a_symlinked_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows's junctions, forced on Linux: "vendored" is a real directory here, that the
    # platform seam takes for a junction. It is a link to the walk: walked after the others, and
    # named when the walk grows too large through it.
    monkeypatch.setattr(_platform, "DIR_FD", False)
    monkeypatch.setattr(_platform, "JUNCTIONS", True)
    monkeypatch.setattr(_platform, "is_junction", lambda entry: entry.name == "vendored")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x")
    for i in range(40):
        (tmp_path / "vendored" / f"d{i}").mkdir(parents=True)
    first = sweep(tmp_path)
    assert first.snapshot.dirs[str(tmp_path)].links == {"vendored"}
    assert first.snapshot.dirs[str(tmp_path / "src")].links == frozenset()
    monkeypatch.setattr(walk, "MAX_DIRS", 30)
    with pytest.raises(WatchPathError, match=r"29 of them through the symlink .*vendored"):
        sweep(tmp_path)
