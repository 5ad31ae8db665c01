"""The public face: what ``asyncreload`` exports is deliberate, documented and importable."""

from __future__ import annotations

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
