"""``NoopStopper``: never stops anything."""

from __future__ import annotations

from typing import Any, Dict

from tune_core.stopper.stopper import Stopper

__all__ = ["NoopStopper"]


class NoopStopper(Stopper):
    """A stopper that never stops a trial or the experiment."""

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoopStopper()"
