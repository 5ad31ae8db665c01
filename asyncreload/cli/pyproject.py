"""``[tool.asyncreload]`` in the nearest ``pyproject.toml``: defaults for ``run`` and ``serve``.

The keys are the long options' names (``watch``, ``grace``, ``on-exit``, ``live-reload``, ...;
``_`` works as well as ``-``), plus ``command``. Each command takes the keys of its own options
and leaves the others' (``run`` has no ``live-reload``, ``serve`` no ``command``). The command
line overrides each of them, and the ``ASYNCRELOAD_*`` environment variables override the
watcher settings they name. Relative paths are relative to the directory of the
``pyproject.toml``::

    [tool.asyncreload]
    command = "python -m myapp"
    watch = ["src", "templates"]
    exclude = ["*.log"]
    grace = 2
    on-exit = "restart"
    live-reload = true

"The nearest" is the first ``pyproject.toml`` found going up from the current directory; if it
has no ``[tool.asyncreload]`` table there is no configuration (a parent's is not used).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
from click.core import ParameterSource

from .._exceptions import ConfigError
from .._watch import OPTIONS, QUANTITIES, absolute, current_directory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        tomllib = None

__all__ = ["RunConfig", "find_pyproject", "load_config", "with_config"]

log = logging.getLogger("asyncreload.config")

ENV_WINS = {o.name: o.env for o in OPTIONS if o.env is not None}
"""Settings for which an environment variable, when set, beats the file (it is usually set for a
reason the file can't know: a container, a CI job)."""


@dataclass(frozen=True)
class RunConfig:
    """The checked ``[tool.asyncreload]`` table: option name (as the CLI's parameter) -> value."""

    path: Path
    values: Mapping[str, Any] = field(default_factory=dict)

    def values_for(self, command: Command) -> dict[str, Any]:
        """The values that ``command`` takes."""
        return {k: v for k, v in self.values.items() if _FOR.get(k, command) == command}


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (default: the current directory)."""
    here = Path(absolute(os.fspath(start)) if start is not None else current_directory()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(
    start: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    needed: bool = True,
) -> RunConfig | None:
    """Read and check ``[tool.asyncreload]`` from the nearest ``pyproject.toml``, if any.

    Raises :class:`~asyncreload.ConfigError` for an unknown key or a value of the wrong type, and
    for a file that can't be read (not valid TOML, a ``tool`` that is not a table) when it is
    ``needed``; when it isn't (the command line says everything), such a file gets one warning and
    is ignored: a syntax error in another tool's table shouldn't stop ``run -- cmd``.
    """
    path = find_pyproject(start)
    if path is None:
        return None
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        if "[tool.asyncreload]" in path.read_text(errors="replace"):
            log.warning(
                "%s: [tool.asyncreload] ignored: reading it needs tomli on Python 3.10", path
            )
        return None
    tool = _read_tool(path, needed=needed)
    if tool is None:
        return None
    table = tool.get("asyncreload")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.asyncreload] must be a table")
    return RunConfig(path, check_table(table, path, os.environ if env is None else env))


def with_config(
    ctx: click.Context,
    opts: Mapping[str, Any],
    command: Command,
    *,
    needed: bool,
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``opts`` (a command's parameters) with ``[tool.asyncreload]``'s values for ``command``
    filled in where the command line gave none (``params``: key -> parameter, where they
    differ); ``command``'s own key is always taken."""
    values = dict(opts)
    config = load_config(needed=needed)
    if config is None:
        return values
    taken = config.values_for(command)
    for name, value in taken.items():
        param = (params or {}).get(name, name)
        if name == "command" or ctx.get_parameter_source(param) is ParameterSource.DEFAULT:
            values[param] = value
    log.debug("options from %s: %s", config.path, ", ".join(taken))
    return values


def _read_tool(path: Path, *, needed: bool) -> dict[str, Any] | None:
    """The document's ``tool`` table; None (after a warning) if it can't be read, not needed."""
    problem: object
    try:
        with path.open("rb") as f:
            tool = tomllib.load(f).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        problem = e
    else:
        if isinstance(tool, dict):
            return tool
        problem = "'tool' is not a table"  # `tool = 3`, or `[[tool]]`: an array of tables
    if needed:
        raise ConfigError(f"{path}: can't read it: {problem}")
    log.warning("%s: can't read it (%s); ignored", path, problem)
    return None


def check_table(table: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Check each key of the table; return them under the CLI's parameter names.

    >>> check_table({"on-exit": "restart", "watch": "src"}, Path("/p/pyproject.toml"), {})
    {'on_exit': 'restart', 'watch': ('/p/src',)}
    """
    base = path.parent
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        check = _KEYS.get(name)
        if check is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in _KEYS))
            raise ConfigError(f"{path}: [tool.asyncreload] has an unknown key {key!r} ({known})")
        if name in ENV_WINS and ENV_WINS[name] in env:
            continue
        try:
            values[name] = check(raw, base)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: [tool.asyncreload] {key}: {e}") from None
    return values


# -- one checker per kind of value ---------------------------------------------------------------


def _bool(raw: object, _: Path) -> bool:
    if not isinstance(raw, bool):
        raise TypeError("expected true or false")
    return raw


def _number(setting: str) -> Callable[[object, Path], float]:
    quantity = QUANTITIES[setting]

    def check(raw: object, _: Path) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise TypeError("expected a number")
        problem = quantity.problem(raw)  # TOML has nan and inf
        if problem is not None:
            raise ValueError(problem)
        return float(raw)

    return check


def _strings(raw: object, _: Path) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TypeError("expected a string or a list of strings")
    return tuple(items)


def _paths(raw: object, base: Path) -> tuple[str, ...]:
    return tuple(os.path.normpath(base / p) for p in _strings(raw, base))


def _port(raw: object, _: Path) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise TypeError("expected a port number, 1 to 65535")
    return raw


def _signal(raw: object, _: Path) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise TypeError('expected a signal name or number, e.g. "INT"')
    return str(raw)


def _on_exit(raw: object, _: Path) -> str:
    if raw not in ("wait", "restart", "exit"):
        raise ValueError('expected "wait", "restart" or "exit"')
    return str(raw)


def _command(raw: object, base: Path) -> str | tuple[str, ...]:
    # A string stays whole: it is split like a shell would, unless "shell = true" runs it as is.
    if isinstance(raw, str):
        shlex.split(raw)  # a ValueError for an unclosed quote
        return raw
    return _strings(raw, base)


_BY_KIND: dict[str, Callable[[object, Path], Any]] = {
    "paths": _paths,
    "flag": _bool,
    "negated flag": _bool,
    "globs": _strings,
}

_KEYS: dict[str, Callable[[object, Path], Any]] = {
    "command": _command,
    "watch": _paths,
    # The watcher's, under their flags' names.
    **{o.name: _number(o.keyword) if o.kind == "number" else _BY_KIND[o.kind] for o in OPTIONS},
    "signal": _signal,
    "grace": _number("grace"),
    "on_exit": _on_exit,
    "shell": _bool,
    "clear": _bool,
    "live_reload": _bool,
    "static_dir": _paths,
    "warm_imports": _bool,
    "live_reload_port": _port,
}

Command = Literal["run", "serve"]

_FOR: dict[str, Command] = {
    **dict.fromkeys(
        ["command", "watch", "signal", "grace", "on_exit", "shell", "clear", "live_reload_port"],
        "run",
    ),
    **{o.name: "run" for o in OPTIONS if not o.serve},
    **dict.fromkeys(["live_reload", "static_dir", "warm_imports"], "serve"),
}
"""The keys only one command takes; the others (the watcher's) are for both."""
