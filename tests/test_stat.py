"""The stat poller's sweep on real trees, including the ways a tree can fight back."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import anyio
import pytest

from asyncreload import ChangeKind, PathFilter
from asyncreload._stat import Snapshot, Sweeper, diff

from .helpers import CLI, without_dac_override


def sweep(root: Path, old: Snapshot | None = None, **kw: object) -> tuple[Snapshot, list]:  # type: ignore[type-arg]
    return Sweeper(str(root), PathFilter(), **kw).sweep(old or Snapshot())  # type: ignore[arg-type]


def kinds(old: Snapshot, new: Snapshot, root: Path) -> dict[str, ChangeKind]:
    sweeper = Sweeper(str(root), PathFilter())
    return {os.path.relpath(c.path, root): c.kind for c in diff(old, new, sweeper.report_dir)}


def make_tree(root: Path, dirs: int = 5, files: int = 10) -> None:
    for d in range(dirs):
        (root / f"d{d}" / "sub").mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}.py").write_text("x")
        (root / f"d{d}" / "sub" / "deep.py").write_text("x")


def test_added_modified_deleted_files_and_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first, problems = sweep(tmp_path)
    assert problems == []
    assert len(first.files) == 5 * 11
    (tmp_path / "d0" / "f0.py").write_text("longer content")
    (tmp_path / "d1" / "f1.py").unlink()
    (tmp_path / "d2" / "new.py").write_text("x")
    shutil.rmtree(tmp_path / "d3")
    (tmp_path / "d4" / "newdir").mkdir()
    second, _ = sweep(tmp_path, first)
    changed = kinds(first, second, tmp_path)
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
    first, _ = sweep(tmp_path)
    st = f.stat()
    f.write_text("two")  # same size; force the same mtime to the ns but a new inode
    f2 = tmp_path / "a.tmp"
    f2.write_text("two")
    os.utime(f2, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(f2, f)
    second, _ = sweep(tmp_path, first)
    assert kinds(first, second, tmp_path) == {"a.py": ChangeKind.MODIFIED}


def test_unchanged_directories_are_not_listed_again_but_new_files_are_seen(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=2, files=3)
    old_ns = time.time_ns() - 3600 * 10**9
    for d in [tmp_path, *tmp_path.rglob("*")]:
        if d.is_dir():
            os.utime(d, ns=(old_ns, old_ns))
    first, _ = sweep(tmp_path)
    assert all(d.trusted for d in first.dirs.values())
    # A new file changes its directory's mtime: that listing is read again.
    (tmp_path / "d1" / "sub" / "new.py").write_text("x")
    second, _ = sweep(tmp_path, first)
    assert kinds(first, second, tmp_path) == {"d1/sub/new.py": ChangeKind.ADDED}


def test_a_fresh_directory_listing_is_not_trusted(tmp_path: Path) -> None:
    # Timestamps are coarse: a file created in the same tick as the listing we read leaves the
    # directory's mtime as it was. A listing read while its mtime is recent is read again.
    (tmp_path / "a.py").write_text("x")
    first, _ = sweep(tmp_path)
    mtime = tmp_path.stat().st_mtime_ns
    (tmp_path / "b.py").write_text("x")
    os.utime(tmp_path, ns=(mtime, mtime))  # as if b.py had landed in the same tick
    second, _ = sweep(tmp_path, first)
    assert kinds(first, second, tmp_path) == {"b.py": ChangeKind.ADDED}


def test_files_vanishing_mid_sweep(tmp_path: Path) -> None:
    make_tree(tmp_path, dirs=3, files=20)
    first, _ = sweep(tmp_path)

    class Vandal(PathFilter):
        """Deletes a file and a whole directory while the sweep is listing them."""

        def __call__(self, relpath: str, *, is_dir: bool = False) -> bool:
            if relpath == "d0/f0.py":
                shutil.rmtree(tmp_path / "d2", ignore_errors=True)
                for f in (tmp_path / "d0").glob("f1*.py"):
                    f.unlink()
            return super().__call__(relpath, is_dir=is_dir)

    second, problems = Sweeper(str(tmp_path), Vandal()).sweep(first)
    assert problems == []  # vanishing is a change, not a problem
    changed = kinds(first, second, tmp_path)
    assert changed["d0/f10.py"] is ChangeKind.DELETED
    assert changed["d2"] is ChangeKind.DELETED
    assert all(k is ChangeKind.DELETED for k in changed.values())
    third, _ = sweep(tmp_path, second)
    assert kinds(second, third, tmp_path) == {}


def test_symlink_loops_end_and_links_are_followed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path)  # pkg/loop/pkg/loop/... forever
    (tmp_path / "self").symlink_to(tmp_path / "self")  # stat() says ELOOP
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "linked").symlink_to(tmp_path / "pkg")  # a real second path to pkg
    first, problems = sweep(tmp_path)
    assert problems == []
    assert set(first.files) == {
        str(tmp_path / p) for p in ("pkg/m.py", "self", "dangling", "linked/m.py")
    }
    (tmp_path / "pkg" / "m.py").write_text("changed")
    second, _ = sweep(tmp_path, first)
    assert kinds(first, second, tmp_path) == {
        "pkg/m.py": ChangeKind.MODIFIED,
        "linked/m.py": ChangeKind.MODIFIED,
    }


def test_ignored_and_excluded_directories_are_pruned(tmp_path: Path) -> None:
    for d in ("node_modules/x", ".git/objects", "build", "mnt/share"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f.py").write_text("x")
    (tmp_path / "app.py").write_text("x")
    snap, _ = Sweeper(
        str(tmp_path), PathFilter(exclude=["build"]), excludes=[str(tmp_path / "mnt" / "share")]
    ).sweep(Snapshot())
    assert set(snap.files) == {str(tmp_path / "app.py")}
    assert str(tmp_path / "node_modules") not in snap.dirs  # never even listed


def test_a_single_file_as_root(tmp_path: Path) -> None:
    f = tmp_path / "settings.toml"
    f.write_text("a")
    first, _ = sweep(f)
    f.write_text("bb")
    second, _ = sweep(f, first)
    assert [c.kind for c in diff(first, second, lambda p: True)] == [ChangeKind.MODIFIED]


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
        snap, _ = await sweeper.sweep_parallel(Snapshot(), workers=4)
        tg.cancel_scope.cancel()
    assert len(snap.files) == 50 * 41
    assert ticks > 0  # the loop kept running while the threads swept


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("Linux file system semantics")
