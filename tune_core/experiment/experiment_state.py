"""The experiment state on disk: what ``Tuner.restore`` needs and what the CLI reads.

Two files in the experiment directory, each replaced atomically:

* ``experiment_state.json``: trials (id, status, config, last result, checkpoint,
  failures, error) and counters, as JSON. Tools such as ``tune list-trials``
  read this and never unpickle anything.
* ``experiment_state-<generation>.pkl``: the same trials with their exact
  config objects, plus the search algorithm's and the scheduler's state
  (pickled). The JSON names the generation it belongs to; a new generation is
  written before the JSON that points at it, and the previous one is deleted
  only afterwards, so a crash at any moment leaves a consistent pair.

A third file, ``tuner.pkl``, is written once at the start: the search space and
the configs (``Tuner.restore`` rebuilds the ``Tuner`` from it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tune_core.checkpoint import Checkpoint
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.experiment.trial import Trial, TrialStatus

__all__ = ["ExperimentStateWriter", "load_experiment_state", "trial_to_state",
           "trial_from_state", "STATE_FILE", "TUNER_FILE"]

STATE_FILE = "experiment_state.json"
TUNER_FILE = "tuner.pkl"
_PICKLE_PREFIX = "experiment_state-"
FORMAT_VERSION = 1


def _json_safe(value: Any) -> Any:
    """A JSON rendering for display (the pickle keeps the exact objects)."""
    return json.loads(json.dumps(value, default=_default, allow_nan=True))


def _default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def trial_to_state(trial: Trial, counters: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Everything needed to re-create ``trial`` (paths relative to the experiment)."""
    checkpoint = None
    if trial.checkpoint is not None:
        prefix = trial.path.rstrip("/") + "/"
        checkpoint = trial.checkpoint.path[len(prefix):] \
            if trial.path and trial.checkpoint.path.startswith(prefix) \
            else trial.checkpoint.path
    manager = trial.checkpoint_manager
    return {
        "trial_id": trial.trial_id,
        "trial_name": trial.trial_name,
        "trainable_name": trial.trainable_name,
        "dirname": trial.dirname,
        "status": trial.status.value,
        "config": trial.config,
        "experiment_tag": trial.experiment_tag,
        "evaluated_params": trial.evaluated_params,
        "resources": {"bundles": trial.placement_group_factory.bundles,
                      "strategy": trial.placement_group_factory.strategy},
        "last_result": trial.last_result,
        "metric_analysis": trial.metric_analysis,
        "num_results": trial.num_results,
        "num_failures": trial.num_failures,
        "error_msg": trial.error_msg,
        "error_file": os.path.basename(trial.error_file) if trial.error_file else None,
        "checkpoint": checkpoint,
        "checkpoints": manager.to_state(trial.path) if manager is not None else [],
        "checkpoint_counters": dict(counters or {}),
        "start_time": trial.start_time,
        "end_time": trial.end_time,
    }


def trial_from_state(state: Dict[str, Any], experiment_path: str,
                     local_experiment_path: Optional[str] = None, filesystem: Any = None,
                     checkpoint_manager: Any = None) -> Tuple[Trial, Dict[str, float]]:
    """The trial saved as ``state``, its directory under ``experiment_path`` on storage
    (``filesystem``; None is the local disk) and its logs under ``local_experiment_path``."""
    res = state.get("resources") or {"bundles": [{"CPU": 1}], "strategy": "PACK"}
    trial = Trial(state["trial_id"], state["config"], trainable_name=state["trainable_name"],
                  experiment_tag=state.get("experiment_tag", ""),
                  evaluated_params=state.get("evaluated_params") or {},
                  placement_group_factory=PlacementGroupFactory(res["bundles"],
                                                                strategy=res["strategy"]),
                  experiment_path=experiment_path, dirname=state["dirname"],
                  trial_name=state.get("trial_name", ""),
                  local_experiment_path=local_experiment_path)
    trial.status = TrialStatus(state["status"])
    trial.last_result = dict(state.get("last_result") or {})
    trial.metric_analysis = dict(state.get("metric_analysis") or {})
    trial.num_results = int(state.get("num_results", 0))
    trial.num_failures = int(state.get("num_failures", 0))
    trial.error_msg = state.get("error_msg")
    if trial.status == TrialStatus.ERROR:
        from tune_core.error import TrialError

        msg = (trial.error_msg or "").strip().splitlines()
        trial.error = TrialError(msg[-1] if msg else "the trial failed",
                                 trial_id=trial.trial_id, traceback_str=trial.error_msg or "")
    if state.get("error_file"):
        trial.error_file = os.path.join(trial.local_path, state["error_file"])
    if state.get("checkpoint"):
        path = state["checkpoint"]
        trial.checkpoint = Checkpoint(path if os.path.isabs(path) or "://" in path
                                      else f"{trial.path}/{path}", filesystem=filesystem)
    if checkpoint_manager is not None:
        checkpoint_manager.load_state(state.get("checkpoints") or [], trial.path)
        if trial.checkpoint is not None and not checkpoint_manager.checkpoints:
            checkpoint_manager.load_state([{"path": trial.checkpoint.path}], "")
        trial.checkpoint_manager = checkpoint_manager
    trial.start_time = state.get("start_time")
    trial.end_time = state.get("end_time")
    return trial, dict(state.get("checkpoint_counters") or {})


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ExperimentStateWriter:
    """Writes the experiment state into ``experiment_dir``, keeping to a time budget.

    ``due()`` says whether a write is due: when something changed and the time
    since the last write is at least ``1 / budget`` times what that write took
    (so writing costs at most ``budget`` of the driver's time), and at least
    ``min_interval_s`` apart. ``write(..., force=True)`` writes regardless (at the
    end, on SIGINT).

    Args:
        experiment_dir: a local directory.
        on_written: called with the names of the files written (to upload them).
    """

    def __init__(self, experiment_dir: str, *, budget: float = 0.03,
                 min_interval_s: float = 0.5,
                 on_written: Optional[Callable[[List[str], List[str]], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.experiment_dir = experiment_dir
        self._budget = budget
        self._min_interval = min_interval_s
        self._on_written = on_written
        self._clock = clock
        self._last_write = -float("inf")
        self._last_cost = 0.0
        self.generation = 0
        self.total_write_time = 0.0
        self.num_writes = 0
        self._started = clock()

    def due(self) -> bool:
        wait = max(self._min_interval, self._last_cost / self._budget)
        return self._clock() - self._last_write >= wait

    def write(self, json_state: Dict[str, Any], pickled: bytes,
              prepared_s: float = 0.0) -> None:
        """Write a new generation; ``prepared_s`` is what building the state took, counted
        in the cost that spaces the writes (so the whole snapshot keeps to the budget)."""
        start = self._clock() - prepared_s
        self.generation += 1
        gen = self.generation
        json_state = dict(json_state, generation=gen, format_version=FORMAT_VERSION,
                          timestamp=time.time())
        os.makedirs(self.experiment_dir, exist_ok=True)
        pkl_name = f"{_PICKLE_PREFIX}{gen:06d}.pkl"
        _write_atomically(os.path.join(self.experiment_dir, pkl_name), pickled)
        data = json.dumps(json_state, default=_default, allow_nan=True).encode()
        _write_atomically(os.path.join(self.experiment_dir, STATE_FILE), data)
        removed = []
        for name in os.listdir(self.experiment_dir):
            if name.startswith(_PICKLE_PREFIX) and name.endswith(".pkl") and name != pkl_name:
                try:
                    os.remove(os.path.join(self.experiment_dir, name))
                    removed.append(name)
                except OSError:
                    pass
        end = self._clock()
        self._last_cost = end - start
        self._last_write = end
        self.total_write_time += self._last_cost
        self.num_writes += 1
        if self._on_written is not None:
            self._on_written([pkl_name, STATE_FILE], removed)


def load_experiment_state(experiment_dir: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The JSON state and the unpickled state of the experiment in ``experiment_dir``."""
    import cloudpickle

    path = os.path.join(experiment_dir, STATE_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{experiment_dir!r} holds no experiment state ({STATE_FILE} is missing); pass "
            "the directory of one experiment, e.g. ~/tune_results/<experiment name>")
    with open(path, "rb") as f:
        json_state = json.loads(f.read())
    gen = int(json_state["generation"])
    with open(os.path.join(experiment_dir, f"{_PICKLE_PREFIX}{gen:06d}.pkl"), "rb") as f:
        state = cloudpickle.loads(f.read())
    return json_state, state
