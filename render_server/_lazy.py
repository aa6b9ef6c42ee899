"""Lazy package exports: ``import render_server.<package>`` stays cheap (no torch) and a missing optional
dependency fails at first use, with the real ImportError, rather than at package import."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves ``name`` from the submodule ``exports[name]`` of ``package``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f".{exports[name]}", package), name)

    return __getattr__
