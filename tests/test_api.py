"""The public face: what ``asyncreload`` exports is deliberate, documented and importable."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import asyncreload
import asyncreload.filters


def test_all_is_exactly_the_public_api() -> None:
    public = {name for name in dir(asyncreload) if not name.startswith("_")}
    modules = {"filters", "cli"}  # submodules show up as attributes once imported
    assert set(asyncreload.__all__) - {"__version__"} == public - modules
    assert len(asyncreload.__all__) == len(set(asyncreload.__all__))


def test_every_public_name_has_a_docstring() -> None:
    for name in asyncreload.__all__:
        obj = getattr(asyncreload, name)
        if callable(obj) and not isinstance(obj, type(asyncreload.Source.STAT)):
            assert obj.__doc__, name


def test_errors_refine_the_builtins() -> None:
    assert issubclass(asyncreload.PathNotFoundError, FileNotFoundError)
    assert issubclass(asyncreload.ConfigError, ValueError)
    assert issubclass(asyncreload.CommandNotFoundError, FileNotFoundError)
    for name in asyncreload.__all__:
        obj = getattr(asyncreload, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, asyncreload.AsyncReloadError)


def keywords(fn: Callable[..., object]) -> dict[str, str]:
    """``fn``'s keyword-only parameters and their annotations, as written."""
    params = inspect.signature(fn).parameters.items()
    return {name: str(p.annotation) for name, p in params if p.kind is p.KEYWORD_ONLY}


def typed(options: type) -> dict[str, str]:
    """A TypedDict's keys and their annotations, as written."""
    return {n: str(getattr(t, "__forward_arg__", t)) for n, t in options.__annotations__.items()}


def variadic(fn: Callable[..., object]) -> list[str]:
    """The annotation of ``fn``'s ``**kwargs``, as written (none: empty)."""
    params = inspect.signature(fn).parameters.values()
    return [str(p.annotation) for p in params if p.kind is p.VAR_KEYWORD]


def test_the_typed_options_are_exactly_open_watchers_keywords() -> None:
    # awatch, ProcessRunner and ServeConfig.watcher forward WatcherOptions: a keyword
    # open_watcher gains must be typed there too (mypy then checks every caller).
    from asyncreload._watch import WatcherOptions

    assert typed(WatcherOptions) == keywords(asyncreload.open_watcher)
    for forwarder in (asyncreload.awatch, asyncreload.ProcessRunner):
        assert variadic(forwarder) == ["Unpack[WatcherOptions]"], forwarder


def test_run_process_takes_exactly_the_runners_keywords() -> None:
    # run_process forwards RunOptions to ProcessRunner: one signature, checked by mypy.
    from asyncreload._run.runner import RunOptions

    own, run = keywords(asyncreload.ProcessRunner), typed(RunOptions)
    assert set(run) == set(own) | set(keywords(asyncreload.open_watcher))
    assert {n: run[n] for n in own} == own
    assert variadic(asyncreload.run_process) == ["Unpack[RunOptions]"]


def test_the_options_table_is_the_watchers_keywords_and_every_front_end_takes_it() -> None:
    # One table (OPTIONS) makes the flags of watch, run and serve and the [tool.asyncreload]
    # keys: a keyword open_watcher gains without a row here is a keyword no user can set.
    import click

    from asyncreload._watch import ENVIRONMENT, OPTIONS, WatcherOptions
    from asyncreload.cli import cli
    from asyncreload.cli.pyproject import _KEYS

    assert {o.keyword for o in OPTIONS} == set(typed(WatcherOptions)) - {"path_filter"}
    commands = {name: cli.commands[name] for name in ("watch", "run", "serve")}
    for name, command in commands.items():
        flags = {f: p for p in command.params if isinstance(p, click.Option) for f in p.opts}
        for option in OPTIONS:
            if name == "serve" and not option.serve:
                assert option.flag not in flags, (name, option.flag)
                continue
            param = flags[option.flag]
            assert (param.name, param.help) == (option.name, option.help), (name, option.flag)
    assert {o.name for o in OPTIONS} <= set(_KEYS)
    assert {o.env for o in OPTIONS if o.env} <= set(ENVIRONMENT)
