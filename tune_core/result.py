"""The outcome of one trial."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from tune_core.checkpoint import Checkpoint

__all__ = ["Result"]


@dataclasses.dataclass
class Result:
    """One trial's outcome (Ray Tune's ``Result``).

    Attributes:
        metrics: the trial's last result (with ``config`` and automatic fields).
        checkpoint: the newest checkpoint, or None.
        error: the trial's error (a ``TrialError`` carrying the user's traceback), or None.
        path: the trial directory.
        best_checkpoints: ``(checkpoint, metrics)`` pairs that are kept.
    """

    metrics: Optional[Dict[str, Any]]
    checkpoint: Optional[Checkpoint]
    error: Optional[BaseException]
    path: str
    best_checkpoints: List[Tuple[Checkpoint, Dict[str, Any]]] = dataclasses.field(
        default_factory=list)
    _metrics_dataframe: Any = dataclasses.field(default=None, repr=False)

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        return (self.metrics or {}).get("config")

    @property
    def metrics_dataframe(self) -> Any:
        """Every result of the trial as a pandas DataFrame (read from progress.csv)."""
        if self._metrics_dataframe is None:
            import pandas as pd

            csv = os.path.join(self.path, "progress.csv")
            if os.path.exists(csv) and os.path.getsize(csv) > 0:
                self._metrics_dataframe = pd.read_csv(csv)
            else:
                self._metrics_dataframe = pd.DataFrame()
        return self._metrics_dataframe

    def __repr__(self) -> str:
        shown = {k: v for k, v in (self.metrics or {}).items()
                 if k not in ("config",) and not isinstance(v, dict)}
        parts = [f"metrics={shown!r}", f"path={self.path!r}"]
        if self.checkpoint is not None:
            parts.append(f"checkpoint={self.checkpoint!r}")
        if self.error is not None:
            parts.append(f"error={type(self.error).__name__}")
        return f"Result({', '.join(parts)})"
