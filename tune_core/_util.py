"""Small helpers shared across tune_core (private)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

__all__ = ["flatten_dict", "create_by_name"]


def flatten_dict(d: Mapping[Any, Any], delimiter: str = "/") -> Dict[Any, Any]:
    """Flattens nested dicts into one level, joining keys with ``delimiter``.

    ``{"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}`` becomes
    ``{"a/b": 1, "a/c/d": 2, "e": [1, 2]}``. Lists (and other values) are kept
    as they are, not flattened. An empty nested dict contributes no key. Nested
    keys are joined as strings; top-level keys are kept unchanged. The input is
    not modified; the output is always a new dict.

    Args:
        d: The dict to flatten.
        delimiter: The separator between the parts of a flattened key.

    Returns:
        A new, flat dict.
    """
    for value in d.values():
        if isinstance(value, dict):
            break
    else:  # the common case on the hot path: nothing nested, a plain copy will do
        return dict(d)
    out: Dict[Any, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            _flatten_into(out, value, f"{key}{delimiter}", delimiter)
        else:
            out[key] = value
    return out


def _flatten_into(out: Dict[Any, Any], d: Mapping[Any, Any], prefix: str,
                  delimiter: str) -> None:
    for key, value in d.items():
        if isinstance(value, dict):
            _flatten_into(out, value, f"{prefix}{key}{delimiter}", delimiter)
        else:
            out[f"{prefix}{key}"] = value


def create_by_name(function: str, keyword: str, imports: Mapping[str, str], name: Any,
                   kwargs: Dict[str, Any]) -> Any:
    """``cls(**kwargs)`` for the class ``imports[name]`` names (``"module:Class"``).

    Backs ``create_scheduler``/``create_searcher``: ``name`` is case-insensitive, Ray
    Tune's keyword spelling (``keyword="asha"`` in ``kwargs``) works too, and an unknown
    name's error lists the accepted ones. The module is imported only now.
    """
    import importlib

    if name is None and isinstance(kwargs.get(keyword), str):
        name = kwargs.pop(keyword)
    key = name.strip().lower() if isinstance(name, str) else None
    target = imports.get(key) if key else None
    if target is None:
        accepted = ", ".join(repr(n) for n in imports)
        raise ValueError(f"{function}(name={name!r}) is not valid: use one of {accepted}")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


_MALLOC_TRIM: Any = None


def release_freed_memory() -> None:
    """Hand the heap memory Python has freed back to the OS (glibc's ``malloc_trim``).

    An experiment's snapshots build and drop megabytes of text; glibc keeps that memory
    in the process for reuse, so the driver's resident size creeps up in steps that are
    not live data. Trimming after each snapshot (about 1 ms) keeps it close to what is
    live. A no-op where the C library is not glibc.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        try:
            import ctypes
            import sys

            if sys.platform.startswith("linux"):
                _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)
