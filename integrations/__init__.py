"""Adapters to ML libraries and experiment trackers.

Each adapter is imported on first use (``integrations.MLflowLoggerCallback`` or
``from integrations.mlflow import MLflowLoggerCallback``), so importing this
package never imports the libraries they wrap.

The framework adapters are modules of their own, as in Ray Tune, because their
callbacks share Ray Tune's names (``TuneReportCheckpointCallback``):
``integrations.torch`` (``save_checkpoint``, ``load_checkpoint``, ``get_device``),
``integrations.lightning``, ``integrations.xgboost`` and ``integrations.lightgbm``.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

__all__ = ["MLflowLoggerCallback"]

# public name -> the module that defines it
_LAZY = {"MLflowLoggerCallback": "integrations.mlflow"}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'integrations' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> _typing.List[str]:
    return sorted(set(globals()) | set(__all__))
