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
# Integers that repeat across trials (a worker's pid, the second a result was made): one
# object per value, as for the strings above.
_SHARED_INTS = frozenset(("pid", "timestamp"))
_INTS: Dict[int, int] = {}


def _compact_result(result: Mapping[str, Any], trial_id: str) -> Dict[str, Any]:
    intern = sys.intern
    out: Dict[str, Any] = {}
    floats: Dict[float, float] = {}
    for key, value in result.items():
        if type(key) is str:
            key = intern(key)
            kind = type(value)
            if kind is str:
                if key in _INTERNED_VALUES:
                    value = intern(value)
                elif key == "trial_id" and value == trial_id:
                    value = trial_id
            elif kind is float and value:
                # Equal floats of one result (a first iteration's time_this_iter_s,
                # time_total_s and time_since_restore) share one object. (Not zeros:
                # 0.0 == -0.0.)
                value = floats.setdefault(value, value)
            elif kind is int and key in _SHARED_INTS:
                if len(_INTS) > 4096:
                    _INTS.clear()
                value = _INTS.setdefault(value, value)
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


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two dicts hold the same keys and values (False where values cannot say)."""
    if len(a) != len(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays, whose == is elementwise
        return False


class MetricAnalysis(Mapping[str, Mapping[str, Any]]):
    """``{metric: {"max": .., "min": .., "last": ..}}`` over a trial's numeric results.

    A read-only mapping, as Ray Tune's ``Trial.metric_analysis`` reads; stored compactly
    (one flat list of values per trial, the names' layout shared between trials) because
    every trial of an experiment keeps one.
    """

    __slots__ = ("_keys", "_layout", "_values")

    def __init__(self, stats: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
        self._keys, self._layout = _layout(())
        self._values: List[Any] = []  # a tuple once frozen
        for key, entry in (stats or {}).items():
            self._add(str(key), entry["max"], entry["min"], entry["last"])

    def _add(self, key: str, high: Any, low: Any, last: Any) -> None:
        self._keys, self._layout = _layout(self._keys + (sys.intern(key),))
        self._values = list(self._values) + [high, low, last]

    @classmethod
    def of_result(cls, result: Mapping[str, Any]) -> "MetricAnalysis":
        """The analysis of a single result (what a finished trial of one result keeps)."""
        analysis = cls()
        analysis.update(result)
        return analysis

    def _freeze(self) -> None:
        """Keep the values in a tuple of their exact size (a list keeps room to grow)."""
        self._values = tuple(self._values)  # type: ignore[assignment]

    def update(self, result: Mapping[str, Any]) -> None:
        """Fold one result in: every int or float value except booleans and NaN."""
        if type(self._values) is tuple:  # frozen when its trial ended; it goes on
            self._values = list(self._values)
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


class _ResultDict(dict):
    """A finished trial's last result, rebuilt from its packed form. Changing it changes
    the trial's last result, as changing a plain ``last_result`` dict would: the first
    change makes this dict the trial's (unless the trial's result changed meanwhile)."""

    __slots__ = ("_trial", "_values")

    def __init__(self, trial: "Trial", values: Tuple[Any, ...], items: Any) -> None:
        super().__init__(items)
        self._trial: Optional[Trial] = trial
        self._values = values

    def _adopt(self) -> None:
        trial, self._trial = self._trial, None
        if trial is not None and trial._result_values is self._values:
            trial.last_result = self

    def __setitem__(self, key: Any, value: Any) -> None:
        self._adopt()
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._adopt()
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._adopt()
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._adopt()
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self._adopt()
        return super().pop(*args)

    def popitem(self) -> Any:
        self._adopt()
        return super().popitem()

    def clear(self) -> None:
        self._adopt()
        super().clear()

    def __ior__(self, other: Any) -> "_ResultDict":
        self._adopt()
        return super().__ior__(other)

    def __reduce__(self):  # pickles (and deep-copies) as the plain dict it stands for
        return (dict, (dict(self),))


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
        params = dict(evaluated_params or {})
        # Most search spaces sample every key of a flat config: one dict serves both then.
        self.evaluated_params = config if type(config) is dict and _same(params, config) \
            else params
        self.placement_group_factory = placement_group_factory or PlacementGroupFactory(
            [{"CPU": 1}])
        self.experiment_path = experiment_path
        # The driver's copy (logs, error file): the same directory when storage is
        # local, a staging directory uploaded to remote storage otherwise.
        self.local_experiment_path = local_experiment_path or experiment_path
        self.dirname = dirname
        self._trial_name = trial_name or None  # None: the default, made when read
        self.status = TrialStatus.PENDING
        # A finished trial keeps its last result as a tuple of values whose keys' tuple
        # is shared with other trials (a dict of 14 keys is three times its size).
        self._last_result: Optional[Dict[str, Any]] = {}
        self._result_keys: Optional[Tuple[str, ...]] = None
        self._result_values: Optional[Tuple[Any, ...]] = None
        self._metric_analysis: Optional[MetricAnalysis] = MetricAnalysis()
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

    @property
    def trial_name(self) -> str:
        return self._trial_name or f"{self.trainable_name}_{self.trial_id}"

    @trial_name.setter
    def trial_name(self, name: str) -> None:
        self._trial_name = name

    @property
    def last_result(self) -> Dict[str, Any]:
        """The newest result (``{}`` before the first). A finished trial's is rebuilt
        on each read: change it by assigning a new dict."""
        values = self._result_values
        if values is None:
            return self._last_result  # type: ignore[return-value]
        return _ResultDict(self, values, zip(self._result_keys, values))  # type: ignore[arg-type]

    @last_result.setter
    def last_result(self, result: Dict[str, Any]) -> None:
        if self._metric_analysis is None:  # made from the result being replaced: keep it
            self._metric_analysis = self.metric_analysis
        self._last_result = result
        self._result_keys = self._result_values = None

    def _pack(self) -> None:
        """Keep the last result and the metric analysis compactly: the trial has ended."""
        result = self._last_result
        analysis = self._metric_analysis
        if analysis is None or result is None:
            return  # packed already
        if type(result) is dict and result:
            self._result_keys = _layout(tuple(result))[0]
            self._result_values = tuple(result.values())
            self._last_result = None
            if self.num_results == 1:  # its analysis is that of its one result: made on read
                again = MetricAnalysis.of_result(result)
                if again._keys == analysis._keys and again._values == list(analysis._values):
                    self._metric_analysis = None
                    return
        analysis._freeze()

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
        if status.is_finished:
            self._pack()

    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def metric_analysis(self) -> MetricAnalysis:
        """Max, min and last value of every numeric metric the trial reported."""
        analysis = self._metric_analysis
        if analysis is None:  # a finished trial of one result: that result's
            analysis = MetricAnalysis.of_result(self.last_result)
        return analysis

    @metric_analysis.setter
    def metric_analysis(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        self._metric_analysis = stats if isinstance(stats, MetricAnalysis) \
            else MetricAnalysis(stats)

    def update_last_result(self, result: Dict[str, Any]) -> None:
        """Keep ``result`` as the newest (a compact copy: keys interned) and fold it into
        :attr:`metric_analysis`."""
        self.last_result = _compact_result(result, self.trial_id)
        self.num_results += 1
        self._metric_analysis.update(result)  # type: ignore[union-attr]

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
