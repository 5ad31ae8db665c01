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
import threading
import time
from functools import partial
from pathlib import Path

import anyio
import pytest

import asyncreload
from asyncreload import ChangeKind, PathFilter, Source, open_watcher
from asyncreload._types import Backend, Change
from asyncreload._watch.events import inotify as _events_inotify
from asyncreload._watch.events.inotify_bindings import WatchLimitError
from asyncreload._watch.events.watchfiles import Layout, _TargetWatch, layout
from asyncreload._watch.plan import Target

from .conftest import IN_CI
from .helpers import CLI, all_of, collect_until, eventually, has, without_dac_override

USER_WATCH_LIMIT = "/proc/sys/user/max_inotify_watches"
"""The inotify watch limit of the current user namespace (Linux 5.11 and later)."""
LOW_WATCH_LIMIT = 20


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


class _ScriptedNotify:
    """RustNotify's ``watch`` protocol, playing given batches (``(delay, events)``) in order,
    then idle: a fake for the order in which separate watch threads hand over."""

    def __init__(self, *batches: tuple[float, set[tuple[int, str]]]) -> None:
        self.batches = list(batches)

    def watch(self, _debounce: int, _step: int, timeout: int, stop: threading.Event) -> object:
        if self.batches:
            delay, events = self.batches.pop(0)
            return "stop" if stop.wait(delay) else events  # stopped, a watch drops what it holds
        return "stop" if stop.wait(timeout / 1000) else "timeout"

    def close(self) -> None:
        pass


@pytest.mark.anyio
async def test_watchfiles_hands_on_what_the_tops_watch_holds_when_the_parents_says_it_is_gone(
    tmp_path: Path,
) -> None:
    # `rm -rf project` seen by two watch threads: the parent's hands over "project deleted"
    # first; the top's, a step later, "app.py deleted". Cancelling the top's watch at once
    # (as it was) lost app.py's deletion (a CI run saw it with the watchfiles backend).
    top = str(tmp_path / "project")  # already gone
    send, receive = anyio.create_memory_object_stream[list[Change]](10)
    watch = _TargetWatch(Target(top, Backend.EVENTS, "test", root=top), PathFilter(), send)
    parent = _ScriptedNotify((0.0, {(3, top)}))
    inside = _ScriptedNotify((0.3, {(3, f"{top}/app.py"), (3, top)}))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            watch._pump_all(tg, [parent, inside])  # type: ignore[list-item]
            assert await watch._relay_until_broken(tg) == "moved or deleted"
            tg.cancel_scope.cancel()
    send.close()
    with receive:
        reported = {(c.kind, c.path) async for batch in receive for c in batch}
    assert (ChangeKind.DELETED, f"{top}/app.py") in reported


@pytest.fixture
def low_watch_limit() -> list[str]:
    """A command prefix that runs a child in a user namespace of its own, whose inotify watch limit
    is :data:`LOW_WATCH_LIMIT`.

    Since Linux 5.11 the limit is counted per user namespace, and a namespace's own limit (its
    ``/proc/sys/user/max_inotify_watches``) binds only what runs in it; the watches of the
    processes outside don't count against it either. The machine-wide
    ``fs.inotify.max_user_watches`` is never written: as root, writing it even from inside a
    namespace changes the host's.
    """
    prefix = ["unshare", "--user", "--map-root-user", "sh", "-c",
              f'echo {LOW_WATCH_LIMIT} > {USER_WATCH_LIMIT} && exec "$@"', "sh"]  # fmt: skip
    reason = None
    if not sys.platform.startswith("linux"):
        reason = "inotify is Linux's"
    elif shutil.which("unshare") is None:
        reason = "unshare(1) is not installed"
    else:
        tried = subprocess.run([*prefix, "cat", USER_WATCH_LIMIT], capture_output=True, text=True)
        if tried.stdout.strip() != str(LOW_WATCH_LIMIT):
            reason = f"can't lower the watch limit in a user namespace: {tried.stderr.strip()}"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but the inotify limit test can't run: {reason}")
        pytest.skip(reason)
    return prefix


def test_watch_limit_falls_back_to_polling_with_one_warning(
    tmp_path: Path, events_backend: str, low_watch_limit: list[str]
) -> None:
    big = tmp_path / "big"
    for i in range(200):  # each directory takes one watch: well over the limit
        (big / f"d{i}").mkdir(parents=True)

    def explain(*options: str) -> list[dict[str, str]]:
        explained = subprocess.run(
            [*low_watch_limit, sys.executable, "-m", "asyncreload", "explain", "--json",
             *options, str(big)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return json.loads(explained.stdout)["targets"]  # type: ignore[no-any-return]

    plan = explain()
    assert [(t["path"], t["backend"]) for t in plan] == [(str(big), "stat")]
    assert "fs.inotify.max_user_watches" in plan[0]["reason"]
    # What watch would leave out takes no watches: explain takes the same filter options.
    assert [t["backend"] for t in explain("--exclude", "d1*")] == ["stat"]
    assert [t["backend"] for t in explain("--exclude", "d*")] == ["events"]

    with CLI("watch", "--json", "--poll-interval", "0.05", str(big), prefix=low_watch_limit) as cli:
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
    """(st_dev, st_ino) of every directory this process holds an inotify watch on for its
    entries; not the watch on a root's parent that only waits for the root's deletion."""
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
            if not int(fields["mask"], 16) & 0x100:  # IN_CREATE: only a root's parent lacks it
                continue
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


@pytest.fixture(params=["inotify", "watchfiles", "stat"])
def every_source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each event backend, and the stat poller."""
    source = str(request.param)
    if source == "inotify" and not sys.platform.startswith("linux"):
        pytest.skip("the native inotify backend is Linux's")
    if source == "stat":
        monkeypatch.setenv("ASYNCRELOAD_FORCE_POLLING", "1")
        monkeypatch.setenv("ASYNCRELOAD_POLL_INTERVAL", "0.05")
    else:
        monkeypatch.setenv("ASYNCRELOAD_EVENTS_BACKEND", source)
    return source


@pytest.mark.anyio
@pytest.mark.parametrize("save", ["os.replace", "sed -i"])
async def test_an_atomic_save_is_a_modification_and_its_temporary_file_is_nothing(
    tmp_path: Path, every_source: str, save: str
) -> None:
    code, sentinel = tmp_path / "code.py", tmp_path / "sentinel.py"
    code.write_text("a = 1\n")
    async with open_watcher(tmp_path) as changes:
        for version in (2, 3):  # twice: the second replaces the inode the first brought
            if save == "os.replace":
                (tmp_path / ".code.py.new").write_text(f"a = {version}\n")
                os.replace(tmp_path / ".code.py.new", code)
            else:  # writes a temporary file next to it and renames it over the file
                subprocess.run(["sed", "-i", f"s/= .*/= {version}/", str(code)], check=True)
            seen = await collect_until(changes, has(code))
            # What a source reports comes in order: once a file written after the save is
            # reported, anything more about the save would have been too.
            sentinel.write_text(str(version))
            seen += await collect_until(changes, has(sentinel))
            assert [c.kind for c in seen if c.path == str(code)] == [ChangeKind.MODIFIED]
            assert {c.path for c in seen} == {str(code), str(sentinel)}, seen


@pytest.mark.anyio
async def test_no_file_is_lost_while_new_directories_appear_at_a_flat_level(
    tmp_path: Path, events_backend: str
) -> None:
    # .git makes the root a flat level for watchfiles' backend: each new directory there makes
    # it lay its watches again, which used to lose what was written meanwhile.
    (tmp_path / ".git").mkdir()
    (tmp_path / "src").mkdir()
    written = []

    def write() -> None:
        for i in range(400):
            if i % 40 == 0:
                (tmp_path / f"new{i}").mkdir()
            path = tmp_path / ("src" if i % 2 else f"new{i - i % 40}") / f"f{i}.py"
            path.write_text("x")
            written.append(str(path))
            time.sleep(0.001)  # one file a millisecond, as an editor, a build or a checkout

    async with open_watcher(tmp_path) as changes, anyio.create_task_group() as tg:
        tg.start_soon(partial(anyio.to_thread.run_sync, write))
        await collect_until(
            changes, lambda seen: len(written) == 400 and set(written) <= {c.path for c in seen}
        )


@pytest.mark.anyio
async def test_a_symlinked_directory_that_appears_is_followed(
    tmp_path: Path, events_backend: str
) -> None:
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)  # a flat level for watchfiles' backend, too
    (tree / "src").mkdir()
    async with open_watcher(tree) as changes:
        for link in (tree / "shared", tree / "src" / "shared"):  # at a flat level, and below
            # A directory of its own for each link: one real directory is walked once per
            # target, through the first path found (the walk rule), so a second link to the
            # same one would not report its files again.
            shared = tmp_path / f"shared-{link.parent.name}"
            (shared / "lib").mkdir(parents=True)
            link.symlink_to(shared)
            await collect_until(changes, has(link, ChangeKind.ADDED, Source.EVENTS))
            (shared / "lib" / f"{link.parent.name}.py").write_text("x")
            await collect_until(
                changes,
                has(link / "lib" / f"{link.parent.name}.py", ChangeKind.ADDED, Source.EVENTS),
            )


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
@pytest.mark.parametrize("held", [False, True], ids=["free", "a-cwd-in-it"])
async def test_a_watched_root_that_is_deleted_is_polled_until_it_is_back(
    tmp_path: Path,
    events_backend: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    held: bool,
) -> None:
    # A process whose cwd is the root (ours here; the user's shell, or `watch` with no path)
    # keeps the kernel from saying IN_DELETE_SELF on the root's own watch until it leaves.
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    if held:
        monkeypatch.chdir(root)
    async with open_watcher(root, poll_interval=0.05) as changes:
        shutil.rmtree(root)
        await collect_until(changes, has(root, ChangeKind.DELETED, Source.EVENTS))
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "back.py").write_text("x")  # there when it comes back
        await collect_until(changes, has(root / "sub" / "back.py", ChangeKind.ADDED, Source.STAT))
        (root / "later.py").write_text("x")  # made in it once it is back
        await collect_until(changes, has(root / "later.py", ChangeKind.ADDED, Source.STAT))
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


def _max_queued_events() -> int:
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        return int(f.read())


@pytest.mark.anyio
async def test_a_queue_overflow_reports_the_target_and_watches_what_came_meanwhile(
    tmp_path: Path, native_events: None, caplog: pytest.LogCaptureFixture
) -> None:
    # The queue's limit (fs.inotify.max_queued_events) is machine-wide, and no namespace has one
    # of its own: it is left as it is, and overflowed by writing more files than it holds.
    limit = _max_queued_events()
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many files to overflow it")
    async with open_watcher(tmp_path) as changes:
        # Written without yielding to the event loop, so nothing drains the queue meanwhile: each
        # file raises two events (created, written), and the creation of late/deep is among the
        # events lost.
        for i in range(limit // 2 + 100):
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
