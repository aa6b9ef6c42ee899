"""Exceptions the engine raises for the worker to map onto job states (stdlib only, so jobs/ needs no torch)."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of the engine's domain errors."""


class RenderCancelled(EngineError):
    """`should_cancel()` returned True; raised before the next denoising step."""


class OutOfDeviceMemory(EngineError):
    """The device ran out of memory; the engine has already freed its caches."""


class InputError(EngineError, ValueError):
    """The job's inputs cannot be rendered (e.g. a pose the aligner cannot use); the message names the field."""
