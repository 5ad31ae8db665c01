"""The event source: how watches are laid, and the fall back to polling at the inotify limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncreload import PathFilter, Source
from asyncreload._events_watchfiles import Layout, layout
from asyncreload._plan import Target

from .conftest import IN_CI
from .helpers import CLI

MAX_WATCHES = "/proc/sys/fs/inotify/max_user_watches"


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
    tmp_path: Path, low_watch_limit: int
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
