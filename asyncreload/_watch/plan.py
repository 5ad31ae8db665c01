"""Who watches what: the watched roots cut into targets, each with one backend and a reason.

Pure: given roots, the mount table and the user's overrides, :func:`plan` returns the targets
(paths spelled by the rules of :mod:`.paths`; ``paths=ntpath`` gives Windows's). A local tree
with a FUSE mount three levels down becomes two targets: the tree, watched by events with the
mount excluded, and the mount, polled. Overrides win over the mount table, and the most specific
one (the deepest path) wins over the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._exceptions import WatchPathError
from .._types import Backend
from .mounts import Mount, mount_poll_reason, share_mount
from .paths import PathModule, is_below, is_within, network_share
from .walk import is_pseudo

__all__ = ["Target", "plan"]


@dataclass(frozen=True)
class Target:
    """A directory (or file) watched one way, minus the nested targets watched the other way."""

    path: str
    backend: Backend
    reason: str
    """Why this backend, for ``asyncreload explain`` and the logs."""
    fstype: str | None = None
    excludes: tuple[str, ...] = field(default=())
    """Nested paths the source must not walk into: they belong to other targets."""
    root: str = ""
    """The watched root this target came from (filters match relative to it)."""
    mount: Mount | None = None
    """The mount the target's path lies on (None: not in the mount table, or no table here)."""


def _mount_at(path: str, mounts: Sequence[Mount], paths: PathModule) -> Mount | None:
    # The deepest mount point containing path; for mounts stacked on one point the last wins,
    # as in the kernel's table.
    best: Mount | None = None
    for m in mounts:
        if is_within(path, m.mount_point, paths) and (
            best is None or len(m.mount_point) >= len(best.mount_point)
        ):
            best = m
    if best is None and (share := network_share(path, paths)) is not None:
        best = share_mount(share)  # Windows lists drive letters only: Z:\ is, \\nas\code isn't
    return best


def _decide(
    path: str,
    mounts: Sequence[Mount],
    overrides: dict[str, Backend],
    force_polling: bool,
    paths: PathModule,
) -> tuple[Backend, str, Mount | None]:
    mount = _mount_at(path, mounts, paths)
    owner = max((p for p in overrides if is_within(path, p, paths)), key=len, default=None)
    if owner is not None:
        backend = overrides[owner]
        flag = "--poll" if backend is Backend.STAT else "--events"
        return backend, f"override: {flag} {owner}", mount
    if force_polling:
        return Backend.STAT, "override: force polling everywhere", mount
    if mount is None:
        return Backend.EVENTS, "no mount table here: kernel events", None
    why = mount_poll_reason(mount)
    if why is not None:
        return (
            Backend.STAT,
            f"{why} mount at {mount.mount_point}: changes made on its far side raise no events",
            mount,
        )
    return Backend.EVENTS, f"local file system ({mount.fstype}): kernel events", mount


def _dedupe_roots(roots: Iterable[str], paths: PathModule) -> list[str]:
    kept: list[str] = []
    for root in sorted(set(roots), key=len):
        if not any(is_within(root, k, paths) for k in kept):
            kept.append(root)
    return sorted(kept)


def plan(
    roots: Iterable[str],
    mounts: Sequence[Mount],
    *,
    poll: Iterable[str] = (),
    events: Iterable[str] = (),
    force_polling: bool = False,
    paths: PathModule = os.path,
) -> list[Target]:
    """Cut ``roots`` into targets. All paths must be absolute and normalised (``realpath``).

    A root that lies inside another root is covered by it and gets no target of its own.
    Raises :class:`WatchPathError` for a root on a pseudo file system (``/proc``, ``/sys``).
    """
    overrides: dict[str, Backend] = dict.fromkeys(poll, Backend.STAT)
    # --events over --poll for the very same path would be a contradiction; the later flag in
    # the CLI can't be known here, so the explicit "events" wins (it's the rarer, deliberate one).
    overrides.update(dict.fromkeys(events, Backend.EVENTS))
    targets: list[Target] = []
    for root in _dedupe_roots(roots, paths):
        # Every place inside the root where the answer may change: nested mounts and overrides.
        boundaries = sorted(
            {m.mount_point for m in mounts if is_below(m.mount_point, root, paths)}
            | {p for p in overrides if is_below(p, root, paths)},
            key=lambda p: (p.count(paths.sep), p),
        )
        decided = {root: _decide(root, mounts, overrides, force_polling, paths)}
        root_mount = decided[root][2]
        fstype = root_mount.fstype if root_mount else None
        if fstype is not None and is_pseudo(fstype):
            raise WatchPathError(
                f"{root} is on {fstype}, a pseudo file system: its files are the kernel's state, "
                "not files that are edited; not watched"
            )
        starts = [root]  # paths that begin a target
        for b in boundaries:
            decided[b] = _decide(b, mounts, overrides, force_polling, paths)
            # The region b sits in is the one of its deepest enclosing boundary (or the root).
            enclosing = max((p for p in decided if is_below(b, p, paths)), key=len)
            if decided[b][0] is not decided[enclosing][0]:
                starts.append(b)
        for start in starts:
            backend, reason, mount = decided[start]
            nested = tuple(
                s for s in starts if is_below(s, start, paths)
                and not any(is_below(s, o, paths) and is_below(o, start, paths) for o in starts)
            )  # fmt: skip
            fstype = mount.fstype if mount else None
            targets.append(Target(start, backend, reason, fstype, nested, root, mount))
    return targets


GONE = "moved or deleted"
"""Why an event source hands its target to the poller when the target itself went away. The
poller then starts from nothing: what is there at its first sweep was made after the deletion."""
