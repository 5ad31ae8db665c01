"""The filter both sources share: default ignores, include and exclude globs."""

from __future__ import annotations

import pytest

from asyncreload import PathFilter, _platform


@pytest.mark.parametrize(
    "path",
    [
        ".git/index", ".hg/store/x", ".svn/entries", "src/__pycache__/m.cpython-311.pyc",
        "m.pyc", ".venv/lib/python3.11/site.py", "venv/bin/python", "node_modules/a/i.js",
        ".tox/py/log", ".mypy_cache/3.11/x.json", ".pytest_cache/v", ".ruff_cache/x",
        ".hypothesis/examples/x", ".idea/workspace.xml", ".vscode/settings.json",
        "src/.app.py.swp", "src/.app.py.swx", "src/app.py~", "src/.#app.py", "src/#app.py#",
        "src/app.py___jb_tmp___", "src/4913", ".coverage", ".coverage.host.123", ".DS_Store",
        "db.sqlite3", "data/app.sqlite", "app.db", "db.sqlite3-journal", "app.db-wal",
        "app.db-shm", "app.log", "logs/server.log",
    ],
)  # fmt: skip
def test_default_ignores(path: str) -> None:
    assert not PathFilter()(path)
    assert PathFilter(default_ignores=False)(path)


@pytest.mark.parametrize(
    "path", ["app.py", "src/pkg/module.py", "templates/index.html", "static/site.css",
             "pyproject.toml", ".env", "src/gitignore_helper.py", "docs/venv.md"],
)  # fmt: skip
def test_ordinary_project_files_are_reported(path: str) -> None:
    assert PathFilter()(path)


def test_exclude_names_prune_at_any_depth_and_paths_match_relative() -> None:
    f = PathFilter(exclude=["build", "*.log", "docs/_build"])
    assert not f("build/lib/x.py")
    assert not f("pkg/build/x.py")
    assert not f("server.log")
    assert not f("docs/_build/html/index.html")
    assert not f.walks("pkg/build")
    assert f("other/_build/x.html")  # a path glob is anchored at the watched root
    assert f("src/builder.py")


def test_include_narrows_files_but_not_directories() -> None:
    f = PathFilter(include=["*.py", "templates/*.html"])
    assert f("a/b/c.py")
    assert f("templates/index.html")
    assert not f("static/site.css")
    assert not f("index.html")
    assert f.walks("static")  # still walked: a .py may live below


def test_exclude_wins_over_include() -> None:
    f = PathFilter(include=["*.py"], exclude=["migrations"])
    assert not f("app/migrations/0001_initial.py")


def test_repr_names_the_settings() -> None:
    assert "exclude=['*.log']" in repr(PathFilter(exclude=["*.log"]))


def test_on_windows_a_backslash_in_a_glob_separates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths are written with "\" there; the filter sees relative paths "/"-separated (paths.py).
    monkeypatch.setattr(_platform, "WINDOWS", True)
    f = PathFilter(include=["src\\*.py", "*.toml"], exclude=["docs\\_build", "\\tmp\\"])
    assert f("src/m.py") and f("pyproject.toml")
    assert not f("lib/m.py")  # a path glob: src\*.py is below src only
    assert not f("docs/_build/index.toml") and not f.walks("docs/_build")
    assert not f.walks("tmp") and f.walks("src")
    assert f.include == ("src\\*.py", "*.toml")  # as given, for messages


def test_on_posix_a_backslash_in_a_glob_is_a_character_of_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_platform, "WINDOWS", False)
    f = PathFilter(include=["src\\*.py"], exclude=["a\\b"])
    assert not f("src/m.py")
    assert f("src\\m.py")  # one name with a backslash in it: a POSIX file may be called that
    assert not f.walks("a\\b") and f.walks("a/b")
