"""The event source on both backends: what it reports, what it watches, and the fall back to
polling at the inotify limits."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import asyncreload
from asyncreload import ChangeKind, PathFilter, Source, _events_inotify, open_watcher
from asyncreload._events_watchfiles import Layout, layout
from asyncreload._inotify import WatchLimitError
from asyncreload._plan import Target

from .conftest import IN_CI
from .helpers import CLI, all_of, collect_until, eventually, has, without_dac_override

MAX_WATCHES = "/proc/sys/fs/inotify/max_user_watches"
MAX_QUEUED = "/proc/sys/fs/inotify/max_queued_events"


def test_layout_watches_the_way_down_flat_and_the_rest_recursively(tmp_path: Path) -> None:
    for d in ("a/b/mnt", "a/b/sib", "a/other", "top", "node_modules/x", ".git"):
        (tmp_path / d).mkdir(parents=True)
    target = Target(
        str(tmp_path), Source.EVENTS, "test", excludes=(str(tmp_path / "a/b/mnt"),),
        root=str(tmp_path),
    )  # fmt: skip
    lay = layout(target, PathFilter())
    assert lay.flat == (str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a/b"))
    # ignored directories at the flat levels cost no watches; the polled mount is never walked
    assert lay.recursive == tuple(str(tmp_path / p) for p in ("a/b/sib", "a/other", "top"))


def test_layout_without_anything_to_keep_out_is_one_recursive_watch(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    target = Target(str(tmp_path), Source.EVENTS, "test", root=str(tmp_path))
    assert layout(target, PathFilter()) == Layout(flat=(), recursive=(str(tmp_path),))
    (tmp_path / ".git").mkdir()
    assert layout(target, PathFilter()) == Layout(
        flat=(str(tmp_path),), recursive=(str(tmp_path / "src"),)
    )


def _watches_in_use(uid: int) -> int:
    """inotify watches held by processes of ``uid`` (what the per-user limit counts)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


@pytest.fixture
def low_watch_limit() -> Iterator[int]:
    """Lower fs.inotify.max_user_watches to a little above what is in use; restore it after."""
    reason = None
    if not sys.platform.startswith("linux"):
        reason = "inotify is Linux's"
    elif not os.access(MAX_WATCHES, os.W_OK):
        reason = f"{MAX_WATCHES} is not writable (needs root outside a read-only /proc)"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but the inotify limit test can't run: {reason}")
        pytest.skip(reason)
    with open(MAX_WATCHES) as f:
        before = int(f.read())
    low = _watches_in_use(os.geteuid()) + 20
    with open(MAX_WATCHES, "w") as f:
        f.write(str(low))
    try:
        yield low
    finally:
        with open(MAX_WATCHES, "w") as f:
            f.write(str(before))


def test_watch_limit_falls_back_to_polling_with_one_warning(
    tmp_path: Path, events_backend: str, low_watch_limit: int
) -> None:
    big = tmp_path / "big"
    for i in range(200):  # each directory takes one watch: well over the limit
        (big / f"d{i}").mkdir(parents=True)
    explained = subprocess.run(
        [sys.executable, "-m", "asyncreload", "explain", "--json", str(big)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    plan = json.loads(explained.stdout)["targets"]
    assert [(t["path"], t["backend"]) for t in plan] == [(str(big), "stat")]
    assert "fs.inotify.max_user_watches" in plan[0]["reason"]

    with CLI("watch", "--json", "--poll-interval", "0.05", str(big)) as cli:
        line = cli.wait_line(lambda s: "inotify watch limit" in s, stream="stderr")
        assert "sysctl fs.inotify.max_user_watches=" in line
        assert "polling it instead" in line
        cli.wait_ready()
        (big / "d7" / "x.py").write_text("x")
        cli.wait_change(big / "d7" / "x.py", source="stat")
    assert sum("inotify watch limit" in s for s in cli.stderr) == 1
    assert not any("Traceback" in s for s in cli.stderr)


# --- The event stream end to end, on each backend where the behaviour is shared ----------------


def _inotify_watches() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every directory this process holds an inotify watch on."""
    watched = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                lines = [line for line in f if line.startswith("inotify wd:")]
        except OSError:
            continue
        for line in lines:
            fields = dict(kv.split(":", 1) for kv in line.split()[1:] if ":" in kv)
            sdev = int(fields["sdev"], 16)  # the kernel's dev_t: major << 20 | minor
            watched.add((os.makedev(sdev >> 20, sdev & 0xFFFFF), int(fields["ino"], 16)))
    return watched


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


@pytest.mark.anyio
async def test_added_modified_touched_deleted_come_from_events(
    tmp_path: Path, events_backend: str
) -> None:
    app = tmp_path / "app.py"
    async with open_watcher(tmp_path) as changes:
        app.write_text("1")
        await collect_until(changes, has(app, ChangeKind.ADDED, Source.EVENTS))
        app.write_text("2")
        await collect_until(changes, has(app, ChangeKind.MODIFIED, Source.EVENTS))
        os.utime(app)  # touch: only the times change
        await collect_until(changes, has(app, ChangeKind.MODIFIED, Source.EVENTS))
        app.unlink()
        await collect_until(changes, has(app, ChangeKind.DELETED, Source.EVENTS))


# --- The native backend's own behaviour --------------------------------------------------------


@pytest.mark.anyio
async def test_a_file_written_at_once_into_a_new_nested_directory_is_seen(
    tmp_path: Path, native_events: None
) -> None:
    # Native only: watchfiles' backend adds the watch of a new directory some time after it
    # appears, and misses the second write now and then.
    deep = tmp_path / "a" / "b" / "c"
    async with open_watcher(tmp_path) as changes:
        deep.mkdir(parents=True)  # mkdir -p a/b/c && echo x > a/b/c/x.py: faster than a watch
        (deep / "x.py").write_text("x")
        await collect_until(changes, has(deep / "x.py", ChangeKind.ADDED, Source.EVENTS))
        (deep / "x.py").write_text("y")  # and its directory is watched from then on
        await collect_until(changes, has(deep / "x.py", ChangeKind.MODIFIED, Source.EVENTS))


@pytest.mark.anyio
async def test_a_single_file_target_survives_being_replaced_by_a_rename(
    tmp_path: Path, native_events: None
) -> None:
    # Native only: watchfiles' backend watches the file's inode, and sees nothing after the
    # first replace.
    settings = tmp_path / "settings.toml"
    settings.write_text("a")
    async with open_watcher(settings) as changes:
        for version in ("b", "c"):  # twice: the second replaces the inode the first brought
            (tmp_path / "settings.toml.new").write_text(version)
            os.replace(tmp_path / "settings.toml.new", settings)
            (tmp_path / "other.py").write_text(version)  # in the same directory, not watched
            seen = await collect_until(changes, has(settings, source=Source.EVENTS))
            assert {c.path for c in seen} == {str(settings)}


@pytest.mark.anyio
async def test_a_directory_renamed_in_the_tree_is_reported_under_its_new_name(
    tmp_path: Path, native_events: None
) -> None:
    old, new = tmp_path / "pkg", tmp_path / "renamed"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "m.py").write_text("1")
    async with open_watcher(tmp_path) as changes:
        old.rename(new)
        seen = await collect_until(
            changes,
            all_of(
                has(old, ChangeKind.DELETED, Source.EVENTS),
                has(new / "sub" / "m.py", ChangeKind.ADDED, Source.EVENTS),
            ),
        )
        (new / "sub" / "m.py").write_text("2")
        (new / "sub" / "n.py").write_text("new")
        seen += await collect_until(
            changes,
            all_of(
                has(new / "sub" / "m.py", ChangeKind.MODIFIED),
                has(new / "sub" / "n.py", ChangeKind.ADDED),
            ),
        )
    stale = [c for c in seen if c.path.startswith(f"{old}/")]
    assert stale == []


@pytest.mark.anyio
async def test_a_directory_moved_out_of_the_tree_is_no_longer_watched(
    tmp_path: Path, native_events: None
) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "pkg" / "sub").mkdir(parents=True)
    outside.mkdir()
    async with open_watcher(tree) as changes:
        pkg_watches = {_ident(tree / "pkg"), _ident(tree / "pkg" / "sub")}
        assert pkg_watches <= _inotify_watches()
        (tree / "pkg").rename(outside / "pkg")
        seen = await collect_until(changes, has(tree / "pkg", ChangeKind.DELETED, Source.EVENTS))
        assert not pkg_watches & _inotify_watches()  # its watches went with it
        (outside / "pkg" / "sub" / "far.py").write_text("x")
        (tree / "marker.py").write_text("x")  # after the write above, on the same queue
        seen += await collect_until(changes, has(tree / "marker.py"))
    assert [c for c in seen if "far.py" in c.path] == []


@pytest.mark.anyio
async def test_a_directory_deleted_and_made_again_is_watched_again(
    tmp_path: Path, native_events: None
) -> None:
    pkg = tmp_path / "pkg"
    for d in range(30):
        (pkg / f"d{d}" / "sub").mkdir(parents=True)
        (pkg / f"d{d}" / "sub" / "m.py").write_text("x")
    async with open_watcher(tmp_path) as changes:
        before = _inotify_watches()
        shutil.rmtree(pkg)
        await collect_until(changes, has(pkg, ChangeKind.DELETED, Source.EVENTS))
        await eventually(lambda: len(_inotify_watches()) == 1, what="the watches to go")
        assert _inotify_watches() == {_ident(tmp_path)} < before
        (pkg / "d3" / "sub").mkdir(parents=True)
        (pkg / "d3" / "sub" / "m.py").write_text("again")
        await collect_until(changes, has(pkg / "d3" / "sub" / "m.py", ChangeKind.ADDED))
        (pkg / "d3" / "sub" / "m.py").write_text("and again")
        await collect_until(changes, has(pkg / "d3" / "sub" / "m.py", ChangeKind.MODIFIED))


@pytest.mark.anyio
async def test_ignored_directories_and_polled_paths_get_no_watches(
    tmp_path: Path, native_events: None
) -> None:
    for d in ("src/app", "node_modules/lib/deep", ".git/objects/ab", "vendor/share/deep", "docs"):
        (tmp_path / d).mkdir(parents=True)
    async with open_watcher(tmp_path, poll=[tmp_path / "vendor"], exclude=["docs"]) as changes:
        expected = {_ident(tmp_path / d) for d in (".", "src", "src/app")}
        assert _inotify_watches() == expected
        # A new directory inside an ignored one raises no event that could add a watch.
        (tmp_path / "node_modules" / "new").mkdir()
        (tmp_path / "src" / "fresh").mkdir()
        await collect_until(changes, has(tmp_path / "src" / "fresh", ChangeKind.ADDED))
        assert _inotify_watches() == expected | {_ident(tmp_path / "src" / "fresh")}


@pytest.mark.anyio
async def test_symlinked_directories_are_followed_and_a_loop_is_walked_once(
    tmp_path: Path, native_events: None
) -> None:
    tree, shared = tmp_path / "tree", tmp_path / "shared"
    tree.mkdir()
    (shared / "lib").mkdir(parents=True)
    (tree / "shared").symlink_to(shared)  # outside the tree: watched through the link
    (tree / "loop").symlink_to(tree)  # back to the top
    async with open_watcher(tree) as changes:
        assert _inotify_watches() == {_ident(p) for p in (tree, shared, shared / "lib")}
        (shared / "lib" / "util.py").write_text("x")
        await collect_until(
            changes, has(tree / "shared" / "lib" / "util.py", ChangeKind.ADDED, Source.EVENTS)
        )


@pytest.mark.anyio
async def test_a_watched_root_that_is_deleted_is_polled_until_it_is_back(
    tmp_path: Path, native_events: None, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    async with open_watcher(root, poll_interval=0.05) as changes:
        shutil.rmtree(root)
        await collect_until(changes, has(root, ChangeKind.DELETED, Source.EVENTS))
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "back.py").write_text("x")
        await collect_until(changes, has(root / "sub" / "back.py", ChangeKind.ADDED, Source.STAT))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{root}: moved or deleted; polling it instead"
    ]


@pytest.mark.anyio
async def test_an_idle_watcher_does_no_work(tmp_path: Path, native_events: None) -> None:
    # Every thread's voluntary context switches (one each time it goes back to sleep), before
    # and after a second of quiet: a thread that woke to look for events (as watchfiles' does
    # every 10 ms) would switch about a hundred times. Involuntary switches are left out: they
    # count preemptions, which a loaded machine deals out to whatever runs, however briefly.
    def switches() -> int:
        total = 0
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f
                             if line.startswith("voluntary_ctxt_switches"))  # fmt: skip
        return total

    for d in range(20):
        (tmp_path / f"d{d}").mkdir()
    async with open_watcher(tmp_path):
        before = switches()
        await anyio.sleep(1)
        after = switches()
    assert after - before < 20


@contextlib.contextmanager
def max_queued_events(value: int) -> Iterator[None]:
    """fs.inotify.max_queued_events lowered for the instances created meanwhile (it is read when
    an instance is created): set for as short a time as possible, since it is machine-wide."""
    if not os.access(MAX_QUEUED, os.W_OK):
        if IN_CI:
            pytest.fail(f"CI=true but {MAX_QUEUED} is not writable")
        pytest.skip(f"{MAX_QUEUED} is not writable (needs root outside a read-only /proc)")
    with open(MAX_QUEUED) as f:
        before = f.read()
    with open(MAX_QUEUED, "w") as f:
        f.write(str(value))
    try:
        yield
    finally:
        with open(MAX_QUEUED, "w") as f:
            f.write(before)


@pytest.mark.anyio
async def test_a_queue_overflow_reports_the_target_and_watches_what_came_meanwhile(
    tmp_path: Path, native_events: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        with max_queued_events(16):
            changes = await stack.enter_async_context(open_watcher(tmp_path))
        # Written without yielding to the event loop, so nothing drains the queue meanwhile: it
        # overflows, and the creation of late/deep is among the events lost.
        for i in range(100):
            (tmp_path / f"f{i}.py").write_text("x")
        (tmp_path / "late" / "deep").mkdir(parents=True)
        await collect_until(changes, has(tmp_path, ChangeKind.MODIFIED, Source.EVENTS))
        (tmp_path / "late" / "deep" / "after.py").write_text("x")
        await collect_until(changes, has(tmp_path / "late" / "deep" / "after.py", ChangeKind.ADDED))
    overflows = [r for r in caplog.records if "max_queued_events" in r.getMessage()]
    assert [r.levelname for r in overflows] == ["WARNING"]


def test_permission_denied_warns_once_and_the_rest_gets_events(
    tmp_path: Path, native_events: None
) -> None:
    tree = tmp_path / "tree"
    locked = tree / "locked"
    locked.mkdir(parents=True)
    (locked / "secret.py").write_text("x")
    locked.chmod(0)
    try:
        with CLI("watch", "--json", str(tree), prefix=without_dac_override()) as cli:
            cli.wait_ready()
            (tree / "ok.py").write_text("x")
            cli.wait_change(tree / "ok.py", source="events")
            warnings = [line for line in cli.stderr if "permission denied" in line]
            assert warnings == [f"asyncreload: warning: {locked}: permission denied; "
                                "not watched until it can be read"]  # fmt: skip
            locked.chmod(0o755)  # raises IN_ATTRIB in tree's watch: the walk is tried again
            cli.wait_line(lambda line: "readable again" in line, stream="stderr")
            cli.wait_change(locked / "secret.py", source="events")  # now seen, as added
            (locked / "later.py").write_text("x")
            cli.wait_change(locked / "later.py", source="events")
    finally:
        locked.chmod(0o755)
    assert "Traceback" not in "\n".join(cli.stderr)


EMBEDDED = """
import sys, anyio, asyncreload
async def main():
    async with asyncreload.open_watcher(sys.argv[1], poll_interval=0.05) as changes:
        print("ready", flush=True)
        async for batch in changes:
            for c in batch:
                print(c.kind, c.path, c.source, flush=True)
anyio.run(main)
"""


def test_an_unreadable_root_is_polled_until_it_can_be_read(
    tmp_path: Path, native_events: None
) -> None:
    # Through the library: the CLI refuses an unreadable path outright (exit 2, one line).
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text("x")
    tree.chmod(0)
    try:
        with CLI(str(tree), script=EMBEDDED, prefix=without_dac_override()) as app:
            app.wait_line(lambda line: line == "ready")
            # No event would say when it becomes readable: the poller tries every sweep.
            # One line, the poller's: the event source gave the tree up without a word. (Waited
            # for: stderr has its own reader, which may be behind stdout's.)
            warning = f"{tree}: permission denied; not watched until it can be read"
            app.wait_line(lambda line: line == warning, stream="stderr")
            assert app.stderr == [warning]
            tree.chmod(0o755)
            app.wait_line(lambda line: line == f"added {tree / 'a.py'} stat")
            (tree / "b.py").write_text("x")
            app.wait_line(lambda line: line == f"added {tree / 'b.py'} stat")
    finally:
        tree.chmod(0o755)
    assert "Traceback" not in "\n".join(app.stderr)


@pytest.mark.anyio
async def test_the_instance_limit_falls_back_to_polling_with_one_warning(
    tmp_path: Path,
    native_events: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The kernel's answer at fs.inotify.max_user_instances, stood in for: lowering that sysctl
    # would break every other program on the machine that starts watching meanwhile.
    def refused() -> int:
        raise WatchLimitError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(_events_inotify, "init", refused)
    async with open_watcher(tmp_path, poll_interval=0.05) as changes:
        (tmp_path / "x.py").write_text("x")
        await collect_until(changes, has(tmp_path / "x.py", ChangeKind.ADDED, Source.STAT))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "polling it instead" in warnings[0]
    assert "fs.inotify.max_user_instances=" in warnings[0]
    targets = await anyio.to_thread.run_sync(asyncreload.explain, tmp_path)
    assert [(t.backend, "max_user_instances" in t.reason) for t in targets] == [(Source.STAT, True)]
