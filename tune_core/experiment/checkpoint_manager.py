"""Which of a trial's checkpoints to keep (``CheckpointConfig`` retention).

Pure bookkeeping: :meth:`CheckpointManager.register` takes a new checkpoint and
returns the paths that are no longer kept; the controller has them deleted once a
state that does not reference them is safe.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["CheckpointManager", "TrackedCheckpoint"]


def _lookup(result: Dict[str, Any], attr: str) -> Any:
    """``result[attr]``, where ``attr`` may name a nested key as ``a/b``."""
    if attr in result:
        return result[attr]
    value: Any = result
    for part in attr.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class TrackedCheckpoint:
    """A kept checkpoint: where it is, the metrics it was reported with, its order."""

    __slots__ = ("path", "metrics", "order")

    def __init__(self, path: str, metrics: Dict[str, Any], order: int) -> None:
        self.path = path
        self.metrics = metrics
        self.order = order

    def __repr__(self) -> str:
        return f"TrackedCheckpoint({self.path!r}, order={self.order})"


class CheckpointManager:
    """The checkpoints one trial keeps.

    Args:
        num_to_keep: how many to keep; None keeps all. The newest checkpoint is kept
            in addition when it is not among the best (a trial resumes from it).
        score_attribute: the result key ranking checkpoints; None ranks by recency.
        score_order: ``"max"`` (higher is better) or ``"min"``.
    """

    def __init__(self, num_to_keep: Optional[int] = None,
                 score_attribute: Optional[str] = None, score_order: str = "max") -> None:
        self.num_to_keep = num_to_keep
        self.score_attribute = score_attribute
        self.score_order = score_order
        self.checkpoints: List[TrackedCheckpoint] = []   # in the order they were saved
        self._next_order = 0

    def _priority(self, cp: TrackedCheckpoint) -> Tuple[float, int]:
        """Higher is kept longer; ties (and no score) go to the newer checkpoint."""
        if self.score_attribute is None:
            return (0.0, cp.order)
        value = _lookup(cp.metrics, self.score_attribute)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and math.isnan(value)):
            return (-math.inf, cp.order)  # no usable score: dropped first
        return (float(value) if self.score_order == "max" else -float(value), cp.order)

    def register(self, path: str, metrics: Dict[str, Any]) -> List[str]:
        """Track a new (the newest) checkpoint; returns the paths no longer kept."""
        # The same path again (a trial retried from an earlier checkpoint rewrote it)
        # replaces the old entry.
        self.checkpoints = [cp for cp in self.checkpoints if cp.path != path]
        newest = TrackedCheckpoint(path, metrics, self._next_order)
        self._next_order += 1
        self.checkpoints.append(newest)
        if self.num_to_keep is None or len(self.checkpoints) <= self.num_to_keep:
            return []
        ranked = sorted(self.checkpoints, key=self._priority, reverse=True)
        keep = {id(cp) for cp in ranked[:self.num_to_keep]}
        keep.add(id(newest))
        dropped = [cp.path for cp in self.checkpoints if id(cp) not in keep]
        self.checkpoints = [cp for cp in self.checkpoints if id(cp) in keep]
        return dropped

    def best_checkpoints(self) -> List[TrackedCheckpoint]:
        """The kept checkpoints by priority: the best (or, without a score, newest) last."""
        return sorted(self.checkpoints, key=self._priority)

    # --- saved with the experiment state ------------------------------------------------------
    def to_state(self, relative_to: str) -> List[Dict[str, Any]]:
        """The kept checkpoints with the metrics that rank them (paths relative)."""
        keys = {"training_iteration", "time_total_s"}
        if self.score_attribute:
            keys.add(self.score_attribute)
        out = []
        for cp in self.checkpoints:
            path = cp.path
            if relative_to and path.startswith(relative_to.rstrip("/") + "/"):
                path = path[len(relative_to.rstrip("/")) + 1:]
            metrics = {k: v for k in keys if (v := _lookup(cp.metrics, k)) is not None}
            out.append({"path": path, "metrics": metrics})
        return out

    def load_state(self, entries: List[Dict[str, Any]], base: str) -> None:
        self.checkpoints = []
        for entry in entries or []:
            path = entry["path"]
            if base and not path.startswith("/") and "://" not in path:
                path = f"{base.rstrip('/')}/{path}"
            self.checkpoints.append(TrackedCheckpoint(path, dict(entry.get("metrics") or {}),
                                                      self._next_order))
            self._next_order += 1
