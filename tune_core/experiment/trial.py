"""The trial: one configuration being evaluated, as the controller tracks it."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import time
import uuid
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional

from tune_core.execution.placement_groups import PlacementGroupFactory

__all__ = ["Trial", "TrialStatus", "TrialSnapshot", "new_trial_id"]


class TrialStatus(str, enum.Enum):
    """A trial's lifecycle state (the strings are Ray Tune's)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


def new_trial_id(run_prefix: str, index: int) -> str:
    """``<5 hex run prefix>_<5 digit index>``, Ray Tune's shape, unique within an experiment."""
    return f"{run_prefix}_{index:05d}"


def new_run_prefix() -> str:
    return uuid.uuid4().hex[:5]


@dataclasses.dataclass(frozen=True)
class TrialSnapshot:
    """An immutable view of a trial handed to schedulers and searchers."""

    trial_id: str
    status: TrialStatus
    config: Mapping[str, Any]
    experiment_tag: str
    last_result: Mapping[str, Any]
    resources: PlacementGroupFactory
    has_checkpoint: bool
    num_failures: int
    checkpoint: Any = None  # the newest Checkpoint (immutable reference), or None


class Trial:
    """One trial as the controller tracks it. Callbacks receive this object.

    Only the controller mutates a trial. Public attributes mirror Ray Tune's
    ``Trial``: ``trial_id``, ``config``, ``status``, ``last_result``, ``path``
    (on storage), ``local_path`` (the driver's log directory), ``experiment_tag``,
    ``placement_group_factory``, ``checkpoint``, ``error_file``, ``num_failures``.
    """

    PENDING = TrialStatus.PENDING
    RUNNING = TrialStatus.RUNNING
    PAUSED = TrialStatus.PAUSED
    TERMINATED = TrialStatus.TERMINATED
    ERROR = TrialStatus.ERROR

    def __init__(
        self,
        trial_id: str,
        config: Dict[str, Any],
        *,
        trainable_name: str = "trainable",
        experiment_tag: str = "",
        evaluated_params: Optional[Dict[str, Any]] = None,
        placement_group_factory: Optional[PlacementGroupFactory] = None,
        experiment_path: str = "",
        dirname: str = "",
        trial_name: str = "",
        local_experiment_path: Optional[str] = None,
    ) -> None:
        self.trial_id = trial_id
        self.config = config
        self.trainable_name = trainable_name
        self.experiment_tag = experiment_tag
        self.evaluated_params = dict(evaluated_params or {})
        self.placement_group_factory = placement_group_factory or PlacementGroupFactory(
            [{"CPU": 1}])
        self.experiment_path = experiment_path
        # The driver's copy (logs, error file): the same directory when storage is
        # local, a staging directory uploaded to remote storage otherwise.
        self.local_experiment_path = local_experiment_path or experiment_path
        self.dirname = dirname
        self.trial_name = trial_name or f"{trainable_name}_{trial_id}"
        self.status = TrialStatus.PENDING
        self.last_result: Dict[str, Any] = {}
        self.metric_analysis: Dict[str, Dict[str, float]] = {}
        self.num_results = 0
        self.num_failures = 0
        self.error_file: Optional[str] = None
        self.error_msg: Optional[str] = None
        self.error: Optional[BaseException] = None
        self.checkpoint: Any = None  # the newest Checkpoint, or None
        # The checkpoints kept under CheckpointConfig (a CheckpointManager), or None.
        self.checkpoint_manager: Any = None
        self.start_time: Optional[float] = None
        self.end_time: Optional[float] = None
        self.node_ip: Optional[str] = None
        self.stop_requested = False
        # The iteration a (re)started trial continues from (0: from scratch); the
        # loggers drop rows after it, which the trial reports again. None before a start.
        self.resume_iteration: Optional[int] = None
        # Set when a scheduler restarted it from another trial's checkpoint: its logs
        # keep every row so far (see TuneController._restart_trial).
        self.keep_logs_on_restart = False

    # --- paths -------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The trial directory on storage (a path inside the storage filesystem)."""
        if not self.dirname:
            return ""
        return f"{self.experiment_path.rstrip('/')}/{self.dirname}"

    @property
    def local_path(self) -> str:
        """The driver's local trial directory (logs); ``path`` itself for local storage."""
        if not self.dirname:
            return ""
        return os.path.join(self.local_experiment_path, self.dirname)

    @property
    def storage_path(self) -> str:
        return self.path

    # --- state -------------------------------------------------------------------------------
    def set_status(self, status: TrialStatus) -> None:
        if status == TrialStatus.RUNNING and self.start_time is None:
            self.start_time = time.time()
        if status.is_finished:
            self.end_time = time.time()
        self.status = status

    def is_finished(self) -> bool:
        return self.status.is_finished

    def update_last_result(self, result: Dict[str, Any]) -> None:
        self.last_result = result
        self.num_results += 1
        for key, value in result.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            stats = self.metric_analysis.get(key)
            if stats is None:
                self.metric_analysis[key] = {"max": value, "min": value, "last": value}
            else:
                if value > stats["max"]:
                    stats["max"] = value
                if value < stats["min"]:
                    stats["min"] = value
                stats["last"] = value

    def snapshot(self) -> TrialSnapshot:
        return TrialSnapshot(
            trial_id=self.trial_id,
            status=self.status,
            config=MappingProxyType(self.config),
            experiment_tag=self.experiment_tag,
            last_result=MappingProxyType(self.last_result),
            resources=self.placement_group_factory,
            has_checkpoint=self.checkpoint is not None,
            num_failures=self.num_failures,
            checkpoint=self.checkpoint,
        )

    def __repr__(self) -> str:
        return self.trial_name

    def __str__(self) -> str:
        return self.trial_name
