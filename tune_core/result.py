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
        path: the trial directory on storage (for remote storage a path inside
            :attr:`filesystem`, e.g. ``bucket/prefix/experiment/trial``).
        best_checkpoints: ``(checkpoint, metrics)`` of every checkpoint kept under
            ``CheckpointConfig``, by rank: the best (by ``checkpoint_score_attribute``,
            or else the newest) last.
        filesystem: the ``pyarrow.fs.FileSystem`` of ``path``; None is the local disk.
    """

    metrics: Optional[Dict[str, Any]]
    checkpoint: Optional[Checkpoint]
    error: Optional[BaseException]
    path: str
    best_checkpoints: List[Tuple[Checkpoint, Dict[str, Any]]] = dataclasses.field(
        default_factory=list)
    filesystem: Any = None
    _local_path: Optional[str] = dataclasses.field(default=None, repr=False)
    _metrics_dataframe: Any = dataclasses.field(default=None, repr=False)
    _config: Optional[Dict[str, Any]] = dataclasses.field(default=None, repr=False)

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """The config of the trial's last result; for a trial that reported nothing (it
        failed first), the config it was started with."""
        return (self.metrics or {}).get("config", self._config)

    @property
    def metrics_dataframe(self) -> Any:
        """Every result of the trial as a pandas DataFrame (read from progress.csv)."""
        if self._metrics_dataframe is None:
            import io

            import pandas as pd

            data = self._read("progress.csv")
            self._metrics_dataframe = pd.read_csv(io.BytesIO(data)) if data else \
                pd.DataFrame()
        return self._metrics_dataframe

    def _read(self, name: str) -> bytes:
        """A file of the trial directory: the driver's copy if there is one, else storage's."""
        for local in (self._local_path, None if self.filesystem is not None else self.path):
            if local and os.path.exists(os.path.join(local, name)):
                with open(os.path.join(local, name), "rb") as f:
                    return f.read()
        if self.filesystem is not None:
            from tune_core import storage

            try:
                return storage.read_bytes(self.filesystem, f"{self.path.rstrip('/')}/{name}")
            except FileNotFoundError:
                return b""
        return b""

    def __repr__(self) -> str:
        shown = {k: v for k, v in (self.metrics or {}).items()
                 if k not in ("config",) and not isinstance(v, dict)}
        parts = [f"metrics={shown!r}", f"path={self.path!r}"]
        if self.checkpoint is not None:
            parts.append(f"checkpoint={self.checkpoint!r}")
        if self.error is not None:
            parts.append(f"error={type(self.error).__name__}")
        return f"Result({', '.join(parts)})"
