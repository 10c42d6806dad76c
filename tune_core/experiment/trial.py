"""The trial: one configuration being evaluated, as the controller tracks it."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import sys
import time
import uuid
from types import MappingProxyType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from tune_core.execution.placement_groups import PlacementGroupFactory

__all__ = ["Trial", "TrialStatus", "TrialSnapshot", "MetricAnalysis", "new_trial_id"]

# Result keys, and values that repeat across trials (hostname, node IP), are interned: a
# result arrives from the worker with fresh copies of every string, and an experiment of
# 10,000 trials would otherwise keep 10,000 copies of each.
# (``date`` changes once a second: the trials that end within that second share it.)
_INTERNED_VALUES = frozenset(("hostname", "node_ip", "date"))


def _compact_result(result: Mapping[str, Any], trial_id: str) -> Dict[str, Any]:
    intern = sys.intern
    out: Dict[str, Any] = {}
    for key, value in result.items():
        if type(key) is str:
            key = intern(key)
            if type(value) is str:
                if key in _INTERNED_VALUES:
                    value = intern(value)
                elif key == "trial_id" and value == trial_id:
                    value = trial_id
        out[key] = value
    return out


# The metric names of a trial, in first-seen order, with each one's position: shared by all
# trials that report the same names (most experiments: one layout for every trial).
_LAYOUTS: Dict[Tuple[str, ...], Tuple[Tuple[str, ...], Dict[str, int]]] = {}


def _layout(keys: Tuple[str, ...]) -> Tuple[Tuple[str, ...], Dict[str, int]]:
    """The shared (names, positions) for ``keys``."""
    entry = _LAYOUTS.get(keys)
    if entry is None:
        if len(_LAYOUTS) > 10_000:  # names that never repeat: do not keep them all
            _LAYOUTS.clear()
        entry = _LAYOUTS[keys] = (keys, {k: i for i, k in enumerate(keys)})
    return entry


class MetricAnalysis(Mapping[str, Mapping[str, Any]]):
    """``{metric: {"max": .., "min": .., "last": ..}}`` over a trial's numeric results.

    A read-only mapping, as Ray Tune's ``Trial.metric_analysis`` reads; stored compactly
    (one flat list of values per trial, the names' layout shared between trials) because
    every trial of an experiment keeps one.
    """

    __slots__ = ("_keys", "_layout", "_values")

    def __init__(self, stats: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
        self._keys, self._layout = _layout(())
        self._values: List[Any] = []
        for key, entry in (stats or {}).items():
            self._add(str(key), entry["max"], entry["min"], entry["last"])

    def _add(self, key: str, high: Any, low: Any, last: Any) -> None:
        self._keys, self._layout = _layout(self._keys + (sys.intern(key),))
        self._values += (high, low, last)

    def update(self, result: Mapping[str, Any]) -> None:
        """Fold one result in: every int or float value except booleans and NaN."""
        layout, values = self._layout, self._values
        for key, value in result.items():
            if type(value) is bool or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            i = layout.get(key)
            if i is None:
                if not isinstance(key, str):
                    continue
                self._add(key, value, value, value)
                layout, values = self._layout, self._values
                continue
            i *= 3
            if value > values[i]:
                values[i] = value
            if value < values[i + 1]:
                values[i + 1] = value
            values[i + 2] = value

    def __getitem__(self, key: str) -> Dict[str, Any]:
        i = self._layout[key] * 3
        v = self._values
        return {"max": v[i], "min": v[i + 1], "last": v[i + 2]}

    def __contains__(self, key: object) -> bool:
        return key in self._layout

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        return {k: self[k] for k in self._keys}

    def __reduce__(self):
        return (MetricAnalysis, (self.to_dict(),))

    def __repr__(self) -> str:
        return repr(self.to_dict())


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
        self._metric_analysis = MetricAnalysis()
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
        # Set once the experiment state holds this trial as finished (written once).
        self.state_saved = False

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
        if not status.is_finished:
            self.state_saved = False  # it changes again: saved with each snapshot
        if status == TrialStatus.RUNNING and self.start_time is None:
            self.start_time = time.time()
        if status.is_finished:
            self.end_time = time.time()
        self.status = status

    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def metric_analysis(self) -> MetricAnalysis:
        """Max, min and last value of every numeric metric the trial reported."""
        return self._metric_analysis

    @metric_analysis.setter
    def metric_analysis(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        self._metric_analysis = stats if isinstance(stats, MetricAnalysis) \
            else MetricAnalysis(stats)

    def update_last_result(self, result: Dict[str, Any]) -> None:
        """Keep ``result`` as the newest (a compact copy: keys interned) and fold it into
        :attr:`metric_analysis`."""
        self.last_result = _compact_result(result, self.trial_id)
        self.num_results += 1
        self._metric_analysis.update(result)

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
