r"""The path rules the watcher compares and builds paths by: on POSIX samples, and on Windows's
(through ntpath, on any system): drives, shares (``\\server\share``), case that doesn't count."""

from __future__ import annotations

import ntpath
import posixpath

import pytest

from asyncreload._watch import paths
from asyncreload._watch.paths import (
    PathModule,
    absolute,
    below,
    filter_relpath,
    is_below,
    is_within,
    network_share,
)


@pytest.mark.parametrize(
    ("rules", "path", "parent", "within"),
    [
        (posixpath, "/p/app", "/p/app", True),
        (posixpath, "/p/app/m.py", "/p/app", True),
        (posixpath, "/p/app2", "/p/app", False),  # a shared prefix is not a parent
        (posixpath, "/p/App/m.py", "/p/app", False),  # case counts
        (posixpath, "/p", "/", True),
        (posixpath, "/", "/", True),
        (posixpath, "/p/app/m.py", "/p/app/", True),
        (posixpath, "C:\\proj\\app\\m.py", "C:\\proj\\app", False),  # "\" is part of a name
        (ntpath, "C:\\proj\\app", "C:\\proj\\app", True),
        (ntpath, "C:\\proj\\app\\m.py", "C:\\proj\\app", True),
        (ntpath, "C:\\proj\\app2", "C:\\proj\\app", False),
        (ntpath, "C:\\proj\\app2\\m.py", "C:\\proj\\app", False),
        (ntpath, "c:\\PROJ\\App\\m.py", "C:\\proj\\app", True),  # case doesn't count
        (ntpath, "C:\\proj\\app", "c:\\proj\\APP", True),
        (ntpath, "C:\\proj", "C:\\", True),
        (ntpath, "D:\\proj", "C:\\", False),
        (ntpath, "C:proj", "C:\\", False),  # drive-relative: below C:'s current directory
        (ntpath, "Z:\\code\\app", "Z:\\", True),
        (ntpath, "\\\\server\\share\\x", "\\\\server\\share", True),
        (ntpath, "\\\\server\\share\\x", "\\\\server\\share\\", True),
        (ntpath, "\\\\SERVER\\Share\\x", "\\\\server\\share", True),
        (ntpath, "\\\\server\\share2\\x", "\\\\server\\share", False),
        (ntpath, "\\\\server\\share\\x", "C:\\", False),
    ],
)
def test_what_lies_within_what(rules: PathModule, path: str, parent: str, within: bool) -> None:
    assert is_within(path, parent, rules) is within
    same = rules.normcase(path) == rules.normcase(parent)
    assert is_below(path, parent, rules) is (within and not same)


def test_below_is_never_the_directory_itself() -> None:
    assert not is_below("/", "/") and not is_below("/p", "/p") and is_below("/p", "/")
    assert not is_below("C:\\", "c:\\", ntpath) and not is_below("C:\\P", "c:\\p", ntpath)
    assert is_below("C:\\p", "C:\\", ntpath)


def test_entries_and_paths_as_the_filters_see_them() -> None:
    assert below("\\\\server\\share\\", ntpath) == below("\\\\server\\share", ntpath)
    assert below("\\\\server\\share", ntpath) == "\\\\server\\share\\"
    assert filter_relpath("/")("/src/m.py") == "src/m.py"
    assert filter_relpath("/p/")("/p/src/m.py") == "src/m.py"
    # The filters' globs are /-separated everywhere ("--exclude src/vendored").
    assert filter_relpath("C:\\", ntpath)("C:\\src\\m.py") == "src/m.py"
    assert filter_relpath("C:\\p", ntpath)("C:\\p\\src\\vendored") == "src/vendored"
    assert filter_relpath("\\\\nas\\code", ntpath)("\\\\nas\\code\\a\\b.py") == "a/b.py"


@pytest.mark.parametrize(
    ("rules", "cwd", "given", "made"),
    [
        (posixpath, "/work", "src/m.py", "/work/src/m.py"),
        (posixpath, "/work", "../x", "/x"),
        (posixpath, "/work", "/x/../y", "/y"),
        (ntpath, "C:\\work", "src\\m.py", "C:\\work\\src\\m.py"),
        (ntpath, "C:\\work", "src/m.py", "C:\\work\\src\\m.py"),
        (ntpath, "C:\\work", "..\\x", "C:\\x"),
        (ntpath, "C:\\work", "D:\\x\\..\\y", "D:\\y"),
        (ntpath, "C:\\work", "\\src", "C:\\src"),  # rooted: on the current drive
        (ntpath, "C:\\work", "C:src", "C:\\work\\src"),  # drive-relative, the current drive
        (ntpath, "\\\\nas\\code\\w", "src", "\\\\nas\\code\\w\\src"),
        (ntpath, "\\\\nas\\code\\w", "\\src", "\\\\nas\\code\\src"),
        (ntpath, "C:\\work", "\\\\nas\\code\\app", "\\\\nas\\code\\app"),
    ],
)
def test_absolute(
    rules: PathModule, cwd: str, given: str, made: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "current_directory", lambda: cwd)
    assert absolute(given, rules) == made


def test_a_path_relative_to_another_drive_is_left_to_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "D:src" is below D:'s own current directory, which only Windows knows (GetFullPathNameW).
    monkeypatch.setattr(paths, "current_directory", lambda: "C:\\work")
    assert absolute("D:src", ntpath) == ntpath.abspath("D:src")


@pytest.mark.parametrize(
    ("rules", "path", "share"),
    [
        (ntpath, "\\\\nas\\code\\app", "\\\\nas\\code"),
        (ntpath, "\\\\nas\\code", "\\\\nas\\code"),
        (ntpath, "C:\\app", None),
        (ntpath, "Z:\\app", None),  # a mapped drive: the mount table's (windows_mounts)
        (ntpath, "\\\\?\\C:\\app", None),  # device paths
        (ntpath, "\\\\.\\pipe\\x", None),
        (posixpath, "//nas/code/app", None),
    ],
)
def test_network_shares(rules: PathModule, path: str, share: str | None) -> None:
    assert network_share(path, rules) == share
