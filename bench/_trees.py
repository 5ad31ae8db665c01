"""Source trees to watch: nested packages of small .py files, written once per run.

A tree is written under ``write_root`` and watched at ``watch_root``. On local disk the two are
the same directory; on FUSE the harness writes to the backing directory and the watchers watch
the mount, which is the case kernel events can't see.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

__all__ = ["Burst", "Tree", "generate", "write_burst"]

_FILES_PER_DIR = (20, 50)
_SUBDIRS_PER_DIR = 6
_MODULE = '"""Module {n} of a generated benchmark tree."""\n\nVALUE = {n}\n\n\ndef f() -> int:\n    return VALUE\n'  # noqa: E501


@dataclass
class Tree:
    """A generated tree; ``files`` and ``dirs`` are relative paths."""

    label: str
    kind: str
    """``local`` or ``fuse``."""
    size: int
    write_root: str
    watch_root: str
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    daemon_pid: int | None = None
    """The FUSE daemon serving ``watch_root``, whose CPU is reported beside the watcher's."""

    def write_path(self, rel: str) -> str:
        return os.path.join(self.write_root, rel)

    def watch_path(self, rel: str) -> str:
        return os.path.join(self.watch_root, rel)


def _dir_names(count: int) -> list[str]:
    """``count`` nested directories, breadth first, each with up to six subdirectories."""
    names = [""]
    for i in range(1, count):
        parent = names[(i - 1) // _SUBDIRS_PER_DIR]
        names.append(os.path.join(parent, f"pkg{i}"))
    return names


def generate(root: str, size: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Write ``size`` modules under ``root`` (20-50 per directory); return (files, dirs)."""
    mean_per_dir = sum(_FILES_PER_DIR) // 2
    dirs = _dir_names(max(1, -(-size // mean_per_dir)))
    files: list[str] = []
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    # Hand out 20-50 files per directory until the total is reached (round robin once the
    # planned directories are full, so the count is exact).
    index = 0
    while len(files) < size:
        d = dirs[index % len(dirs)]
        for _ in range(min(rng.randint(*_FILES_PER_DIR), size - len(files))):
            rel = os.path.join(d, f"mod{len(files)}.py")
            with open(os.path.join(root, rel), "w") as f:
                f.write(_MODULE.format(n=len(files)))
            files.append(rel)
        index += 1
    return files, dirs


@dataclass
class Burst:
    """What :func:`write_burst` wrote: relative paths."""

    modified: list[str]
    created: list[str]
    new_dirs: list[str]


def write_burst(tree: Tree, tag: str, rng: random.Random, total: int) -> Burst:
    """A branch switch: rewrite half of ``total`` existing files, create the other half anew.

    The new files go to fresh directories under existing ones, 50 to a directory, each file
    written right after its directory is made (a watcher must catch files in new directories).
    """
    burst = Burst(rng.sample(tree.files, min(total // 2, len(tree.files))), [], [])
    for rel in burst.modified:
        with open(tree.write_path(rel), "a") as f:
            f.write(f"# burst {tag}\n")
    for i in range(total - len(burst.modified)):
        if i % 50 == 0:
            new_dir = os.path.join(rng.choice(tree.dirs), f"burst_{tag}_{i // 50}")
            os.mkdir(tree.write_path(new_dir))
            burst.new_dirs.append(new_dir)
        rel = os.path.join(new_dir, f"new{i}.py")
        with open(tree.write_path(rel), "w") as f:
            f.write(_MODULE.format(n=i))
        burst.created.append(rel)
    return burst
