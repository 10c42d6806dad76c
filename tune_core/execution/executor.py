"""The executor interface: how the controller runs trials without knowing about Ray.

The controller asks an executor to start, pause and stop trials and polls it for
events. :class:`~tune_core.execution.ray_executor.RayExecutor` runs each trial in a
Ray actor inside a placement group; tests drive the controller with a fake one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Union

from tune_core.execution.placement_groups import PlacementGroupFactory

__all__ = [
    "Executor", "TrialLaunch", "TrialStarted", "TrialResults", "TrialFinished",
    "TrialFailed", "TrialPaused", "TrialStopped", "ExecutorEvent",
]


@dataclasses.dataclass(frozen=True)
class TrialLaunch:
    """Everything a worker needs to run one trial."""

    trial_id: str
    trial_name: str
    trial_dir: str                          # the trial directory on storage
    experiment_name: str
    experiment_path: str
    config: Dict[str, Any]
    resources: PlacementGroupFactory
    checkpoint_path: Optional[str] = None   # resume from this checkpoint (on storage)
    # Where checkpoints go (a tune_core.storage.StorageContext); None: the local disk,
    # and trial_dir is a local path.
    storage: Any = None
    sync_artifacts: bool = False            # upload the trial's working directory
    sync_artifacts_on_checkpoint: bool = True
    sync_timeout: float = 1800.0            # how long uploads are retried
    # Counters restored with the checkpoint, so training_iteration keeps counting.
    restored_iteration: int = 0
    restored_time_total: float = 0.0
    checkpoint_index: int = 0               # next checkpoint_%06d number to use
    checkpoint_frequency: int = 0           # class API: save every N iterations
    checkpoint_at_end: bool = False         # class API: save when the trial ends
    # Each report waits until the driver has decided on its result, so that a trial
    # never runs past a result it is paused or stopped at (for pausing schedulers).
    sync_results: bool = False


@dataclasses.dataclass(frozen=True)
class TrialStarted:
    trial_id: str
    node_ip: str = ""
    pid: int = 0


@dataclasses.dataclass(frozen=True)
class TrialResults:
    """One or more results, in the order the trial reported them.

    A result holding ``"checkpoint_dir_name"`` comes with a checkpoint the worker
    already wrote into the trial directory on storage.
    """

    trial_id: str
    results: List[Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class TrialFinished:
    """The trainable ended on its own (the function returned, or ``done``)."""

    trial_id: str


@dataclasses.dataclass(frozen=True)
class TrialFailed:
    """The trial failed: the trainable raised, or its worker died."""

    trial_id: str
    error: BaseException
    traceback_str: str = ""


@dataclasses.dataclass(frozen=True)
class TrialPaused:
    """The trial saved a checkpoint (or has none) and released its resources.

    ``checkpoint_iteration``/``checkpoint_time_total`` are the counters the
    checkpoint was saved at; the trial resumes counting from them.
    """

    trial_id: str
    checkpoint_path: Optional[str]
    checkpoint_iteration: int = 0
    checkpoint_time_total: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrialStopped:
    """A stop the controller asked for is done; the trial's resources are free.

    ``checkpoint_path`` is set when the trial saved one as it stopped
    (``checkpoint_at_end``), with the counters it was saved at.
    """

    trial_id: str
    checkpoint_path: Optional[str] = None
    checkpoint_iteration: int = 0
    checkpoint_time_total: float = 0.0


ExecutorEvent = Union[TrialStarted, TrialResults, TrialFinished, TrialFailed, TrialPaused,
                      TrialStopped]


class Executor:
    """Runs trials somewhere. All methods are called from the controller's thread.

    ``start_trial``, ``pause_trial`` and ``stop_trial`` return at once; what
    happens is reported later by :meth:`poll` as events. After ``stop_trial``
    the executor reports no more results for that trial after a stop (results
    already in flight are dropped); after a pause it reports the results the
    trial made before it saved its checkpoint. Either ends with exactly one
    ``TrialStopped``, ``TrialPaused`` or ``TrialFailed``.
    """

    def setup(self) -> None:
        pass

    def total_resources(self) -> Dict[str, float]:
        """Everything the cluster has, to tell a request that can never fit."""
        raise NotImplementedError

    def largest_node_resources(self) -> Sequence[Dict[str, float]]:
        """The resources of each node (a bundle must fit on one node)."""
        return [self.total_resources()]

    def can_start(self, resources: PlacementGroupFactory) -> bool:
        """Whether a trial of this shape could start now."""
        raise NotImplementedError

    def start_trial(self, launch: TrialLaunch) -> None:
        raise NotImplementedError

    def pause_trial(self, trial_id: str) -> None:
        raise NotImplementedError

    def stop_trial(self, trial_id: str) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> List[ExecutorEvent]:
        """Events ready now, waiting at most ``timeout`` seconds for the first one."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def debug_string(self) -> str:
        return ""
