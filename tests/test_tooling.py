"""The development tooling: the README's test command tests every supported Python installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(importlib.util.find_spec("tox") is None, reason="tox is not installed here")
def test_tox_finds_every_supported_python_that_pyenv_or_uv_installed(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import toxfile
    finally:
        sys.path.remove(str(ROOT))
    found = toxfile.installed()
    if not found:
        pytest.skip("no pyenv or uv installation of a supported Python here")
    envs = {f"py{Path(p).name.removeprefix('python').replace('.', '')}": p for p in found}
    shown = subprocess.run(
        [sys.executable, "-m", "tox", "config", "-e", ",".join(envs), "-k", "py_dot_ver",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    for env in envs:
        assert f"[testenv:{env}]\npy_dot_ver = {env[2]}.{env[3:]}\n" in shown, shown
