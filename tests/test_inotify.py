"""The kernel interface: the event parser (pure) and the bindings, against the real kernel."""

from __future__ import annotations

import errno
import os
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncreload._watch.events.inotify_bindings import (
    IN_CREATE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Event,
    add_watch,
    init,
    limit_message,
    parse,
    read_events,
    rm_watch,
)

HEADER = struct.Struct("iIII")


def record(wd: int, mask: int, name: bytes = b"", cookie: int = 0, pad_to: int = 16) -> bytes:
    """One ``struct inotify_event`` as the kernel writes it: the name NUL-padded."""
    if not name:
        return HEADER.pack(wd, mask, cookie, 0)
    size = -(-(len(name) + 1) // pad_to) * pad_to
    return HEADER.pack(wd, mask, cookie, size) + name.ljust(size, b"\0")


def test_parse_reads_named_nameless_and_overflow_records() -> None:
    data = (
        record(1, IN_CREATE, b"app.py")
        + record(2, IN_DELETE_SELF)
        + record(1, IN_MOVED_FROM | IN_ISDIR, b"pkg", cookie=7)
        + record(-1, IN_Q_OVERFLOW)
        + record(1, IN_MOVED_TO | IN_ISDIR, b"pkg2", cookie=7)
    )
    assert parse(data) == [
        Event(1, IN_CREATE, 0, "app.py"),
        Event(2, IN_DELETE_SELF, 0, ""),
        Event(1, IN_MOVED_FROM | IN_ISDIR, 7, "pkg"),
        Event(-1, IN_Q_OVERFLOW, 0, ""),
        Event(1, IN_MOVED_TO | IN_ISDIR, 7, "pkg2"),
    ]


def test_parse_strips_all_the_padding_and_keeps_odd_bytes() -> None:
    # A name of exactly 15 bytes plus its NUL fills 16; one of 16 needs 32. Names are bytes on
    # Linux: one that is not UTF-8 decodes as os.scandir decodes it.
    names = [b"a" * 15, b"b" * 16, b"caf\xe9.py"]
    data = b"".join(record(3, IN_MODIFY, n) for n in names)
    assert [e.name for e in parse(data)] == [os.fsdecode(n) for n in names]
    assert len(record(3, IN_MODIFY, b"b" * 16)) == HEADER.size + 32


def test_parse_rejects_a_truncated_buffer() -> None:
    data = record(1, IN_CREATE, b"app.py")
    with pytest.raises(ValueError, match="truncated"):
        parse(data + data[:10])
    with pytest.raises(ValueError, match="past the end"):
        parse(data[:-3])
    assert parse(b"") == []


@given(
    st.lists(
        st.tuples(
            st.integers(-1, 2**31 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x").replace(b"/", b"y")),
            st.sampled_from([1, 4, 16]),
        ),
        max_size=20,
    )
)
def test_parse_round_trips_any_records(
    records: list[tuple[int, int, int, bytes, int]],
) -> None:
    data = b"".join(record(wd, mask, name, cookie, pad) for wd, mask, cookie, name, pad in records)
    assert parse(data) == [
        Event(wd, mask, cookie, os.fsdecode(name)) for wd, mask, cookie, name, _ in records
    ]


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


@linux_only
def test_bindings_against_the_kernel(tmp_path: Path) -> None:
    fd = init()
    try:
        assert read_events(fd) == []  # non-blocking: nothing queued is no wait
        wd = add_watch(fd, str(tmp_path), IN_CREATE | IN_ONLYDIR)
        assert add_watch(fd, str(tmp_path), IN_CREATE | IN_ONLYDIR) == wd  # same inode
        (tmp_path / "new.py").write_text("x")
        assert read_events(fd) == [Event(wd, IN_CREATE, 0, "new.py")]

        with pytest.raises(FileNotFoundError) as missing:
            add_watch(fd, str(tmp_path / "nope"), IN_CREATE)
        assert missing.value.filename == str(tmp_path / "nope")
        with pytest.raises(NotADirectoryError):
            add_watch(fd, str(tmp_path / "new.py"), IN_CREATE | IN_ONLYDIR)

        rm_watch(fd, wd)
        assert read_events(fd) == [Event(wd, IN_IGNORED, 0, "")]
        rm_watch(fd, wd)  # already gone: no error
    finally:
        os.close(fd)


def test_limit_messages_name_the_sysctl_to_raise() -> None:
    assert "fs.inotify.max_user_watches=" in limit_message()
    assert "fs.inotify.max_user_watches=" in limit_message(OSError(errno.ENOSPC, "full"))
    assert "fs.inotify.max_user_instances=" in limit_message(OSError(errno.EMFILE, "too many"))
