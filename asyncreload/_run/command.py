"""The command, as the restart loop starts it: checked before the watcher's first sweep, each
start given the changes that caused it in its environment, and the exit status of a start that
failed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence

import anyio

from .._bytecode import purge_stale_bytecode
from .._exceptions import (
    CommandError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ConfigError,
)
from .._watch import ChangeBatch
from .process import ManagedProcess

__all__ = [
    "CHANGES_LIMIT",
    "DirectoryGone",
    "argv_of",
    "changes_env",
    "check_command",
    "start",
    "start_failure_status",
    "words_of",
]

CHANGES_LIMIT = 64 * 1024
"""Bytes of JSON at most in ``ASYNCRELOAD_CHANGES``: Linux refuses to start a program with an
environment string over 128 KiB, and a ``git checkout`` can change thousands of files."""
_CLEAR = "\x1b[H\x1b[2J\x1b[3J"
"""Cursor home, clear the screen, clear the scrollback (xterm and most others)."""


def words_of(command: Sequence[str] | str, *, shell: bool) -> list[str]:
    """The command's words: a string is split as a shell would (with ``shell``: one script).

    >>> words_of("make 'a b'", shell=False), words_of("make && ./server", shell=True)
    (['make', 'a b'], ['make && ./server'])
    """
    if isinstance(command, str):
        command = [command] if shell else shlex.split(command)
    if not command:
        raise ConfigError("no command to run")
    return list(command)


def argv_of(words: list[str], *, shell: bool) -> list[str]:
    """What is executed for the command's ``words``: themselves, or with ``shell`` one script.

    Several words make one script, joined with spaces as ssh does: each word keeps its shell
    syntax (``make '&&' ./server``). Quoting each word instead would make ``shell`` mean nothing
    for them. The log line shows this argv, so it says what runs.
    """
    return ["/bin/sh", "-c", " ".join(words)] if shell else words


def changes_env(batch: ChangeBatch, limit: int = CHANGES_LIMIT) -> dict[str, str]:
    """``ASYNCRELOAD_CHANGES`` for a batch: a JSON list, cut to ``limit`` bytes if need be.

    When the list is cut, ``ASYNCRELOAD_CHANGES_TRUNCATED=1`` says so.

    >>> from asyncreload import Change, ChangeKind, Source
    >>> changes_env((Change(ChangeKind.ADDED, "/a", Source.EVENTS),))
    {'ASYNCRELOAD_CHANGES': '[{"change":"added","path":"/a","source":"events"}]'}
    """
    items: list[str] = []
    size = 2
    for change in batch:
        item = json.dumps(change.to_json(), separators=(",", ":"))
        size += len(item) + 1
        if size > limit:
            return {
                "ASYNCRELOAD_CHANGES": "[" + ",".join(items) + "]",
                "ASYNCRELOAD_CHANGES_TRUNCATED": "1",
            }
        items.append(item)
    return {"ASYNCRELOAD_CHANGES": "[" + ",".join(items) + "]"}


def check_command(name: str, *, env: Mapping[str, str], cwd: str) -> None:
    """Raise CommandNotFoundError/CommandNotExecutableError now rather than after the watcher's
    first sweep (which may take a while on a big tree)."""
    if "/" in name:
        path = os.path.join(cwd, name)
        if not os.path.exists(path):
            raise CommandNotFoundError(f"command not found: {name}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise CommandNotExecutableError(f"command not executable: {name}")
        return
    search = env.get("PATH", os.defpath)
    if shutil.which(name, path=search) is not None:
        return
    if shutil.which(name, mode=os.F_OK, path=search) is not None:
        raise CommandNotExecutableError(f"command not executable: {name}")
    raise CommandNotFoundError(f"command not found: {name}")


class DirectoryGone(CommandError):
    """The command's working directory is gone: not the command's failure, and it passes."""


def start_failure_status(failure: CommandError) -> int:
    """The exit status a shell gives a command it can't run: 126 or 127."""
    return 126 if isinstance(failure, CommandNotExecutableError) else 127


async def start(
    proc: ManagedProcess,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str,
    batch: ChangeBatch,
    restart: int,
    clear: bool,
) -> int:
    """Start the command in ``cwd`` as its start number ``restart`` (0: the first), told of the
    changes in ``batch``; ``clear``: clear the screen first. Returns its PID; raises
    :class:`CommandError` when it can't be started."""
    env = dict(os.environ if env is None else env)
    env.update(changes_env(batch))
    env["ASYNCRELOAD_RESTART"] = str(restart)
    # A Python command would otherwise import a module edited within the same second at the
    # same size as its stale cached bytecode (see _bytecode).
    await anyio.to_thread.run_sync(purge_stale_bytecode, [c.path for c in batch])
    if clear:
        sys.stdout.write(_CLEAR)
        sys.stdout.flush()
    return await proc.start(argv, env=env, cwd=cwd)
