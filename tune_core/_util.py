"""Small helpers shared across tune_core (private)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

__all__ = ["flatten_dict"]


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
