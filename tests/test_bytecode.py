"""Stale bytecode is removed for the .py files that changed, and only for them."""

from __future__ import annotations

import py_compile
from pathlib import Path

from asyncreload._bytecode import purge_stale_bytecode


def test_purges_the_changed_modules_cached_bytecode_only(tmp_path: Path) -> None:
    for name in ("app.py", "other.py"):
        (tmp_path / name).write_text("x = 1\n")
        py_compile.compile(str(tmp_path / name))
    cached = sorted(p.name for p in (tmp_path / "__pycache__").iterdir())
    assert len(cached) == 2
    assert purge_stale_bytecode([str(tmp_path / "app.py"), str(tmp_path / "style.css")]) == 1
    left = [p.name for p in (tmp_path / "__pycache__").iterdir()]
    assert len(left) == 1
    assert left[0].startswith("other.")
