"""tox's inline plugin: every supported Python that is installed gets tested, on PATH or not.

tox finds interpreters on PATH only, and pyenv puts there just the versions it is told to (its
shims answer "command not found" for the others), so `python3 -m tox` skipped them. This adds
each supported version that pyenv or uv installed to tox's `--discover` list (what the command
line gives stays first); tox still skips a version that is not installed anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tox.plugin import impl

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
"""The versions of tox.ini's env_list (py310 ... py313)."""


def _release(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name)[:3])


def installed() -> list[str]:
    """The newest pyenv or uv installation of each supported version."""
    home = Path.home()
    places = [
        (Path(os.environ.get("PYENV_ROOT", home / ".pyenv")) / "versions", "{v}.*"),
        (Path(os.environ.get("UV_PYTHON_INSTALL_DIR", home / ".local/share/uv/python")),
         "cpython-{v}.*"),
    ]  # fmt: skip
    found = []
    for version in SUPPORTED:
        for root, pattern in places:
            # A release only (3.12.1), not a pre-release or a free-threaded build.
            pythons = [
                p for p in root.glob(f"{pattern.format(v=version)}/bin/python{version}")
                if re.fullmatch(r"(cpython-)?\d+\.\d+\.\d+(-[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+)?",
                                p.parent.parent.name)
            ]  # fmt: skip
            if pythons:
                found.append(str(max(pythons, key=_release)))
                break
    return found


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    state.conf.options.discover = [*state.conf.options.discover, *installed()]
