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

Finished trials do not change any more, so they are written once, not in every
snapshot: each is appended to ``experiment_state-finished-<epoch>.jsonl`` (one JSON
object per line) and ``experiment_state-finished-<epoch>.pkl`` (one pickle after
another) when the first snapshot after its end is taken, and the two files above hold
only the unfinished trials. The JSON records how many bytes of each file belong to
its generation; a reader takes that prefix (anything after it was appended for a
snapshot that never completed). A snapshot then costs what changed, not what the
experiment has done so far. Use :func:`load_experiment_state` or
:func:`read_json_state` to read the whole state; trials come back in creation order.

A third file, ``tuner.pkl``, is written once at the start: the search space and
the configs (``Tuner.restore`` rebuilds the ``Tuner`` from it).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tune_core.checkpoint import Checkpoint
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.experiment.trial import Trial, TrialStatus

__all__ = ["ExperimentStateWriter", "load_experiment_state", "read_json_state",
           "read_experiment_json", "state_reader",
           "merge_finished", "trial_to_state", "trial_from_state", "STATE_FILE",
           "TUNER_FILE"]

STATE_FILE = "experiment_state.json"
TUNER_FILE = "tuner.pkl"
_PICKLE_PREFIX = "experiment_state-"
_FINISHED_PREFIX = "experiment_state-finished-"
FORMAT_VERSION = 2  # 2: finished trials in their own append-only files


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
        "metric_analysis": trial.metric_analysis.to_dict(),
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


def encode_finished(state: Dict[str, Any]) -> Tuple[bytes, bytes]:
    """A finished trial's state as its line of the JSON file and its pickle."""
    line = json.dumps(state, default=_default, allow_nan=True).encode() + b"\n"
    return line, _pickle(state)


def _pickle(value: Any) -> bytes:
    """``cloudpickle.dumps(value)``, the fast way where that is the same thing.

    The standard pickler is several times faster, and its output is the same except
    for what cloudpickle stores by value: classes and functions of ``__main__`` (a
    config value of an enum defined in the user's script, say), which a process with
    another ``__main__`` could not load by reference. Those (and anything the standard
    pickler refuses, such as lambdas) go to cloudpickle.
    """
    try:
        data = pickle.dumps(value, protocol=pickle.DEFAULT_PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    import cloudpickle

    return cloudpickle.dumps(value)


def finished_files(json_state: Dict[str, Any]) -> List[Tuple[str, int]]:
    """The finished-trial files ``json_state`` refers to, each with the bytes it uses."""
    info = json_state.get("finished_trials")
    if not info:
        return []
    return [(info["json_file"], int(info["json_bytes"])),
            (info["pickle_file"], int(info["pickle_bytes"]))]


def merge_finished(live: List[Dict[str, Any]], finished: List[Dict[str, Any]]
                   ) -> List[Dict[str, Any]]:
    """All trials in creation order; a trial that is in both (it ran again after it had
    ended) is taken from ``live``, and a later line beats an earlier one."""
    by_id: Dict[Any, Dict[str, Any]] = {}
    for state in finished:
        by_id[state.get("trial_id", id(state))] = state
    for state in live:
        by_id[state.get("trial_id", id(state))] = state
    trials = list(by_id.values())
    if any("order" in t for t in trials):
        trials.sort(key=lambda t: t.get("order", -1))
    return trials


def read_json_state(read: Callable[[str], Optional[bytes]], data: Optional[bytes] = None
                    ) -> Dict[str, Any]:
    """The JSON state with every trial, finished ones included, given ``read(name)``
    (a file of the experiment directory, or None if missing) and optionally the
    bytes of ``experiment_state.json`` already read."""
    if data is None:
        data = read(STATE_FILE)
        if data is None:
            raise FileNotFoundError(STATE_FILE)
    state = json.loads(data)
    files = finished_files(state)
    if files:
        data = _prefix(read, *files[0])
        finished = [json.loads(line) for line in data.splitlines() if line.strip()]
        state["trials"] = merge_finished(state.get("trials") or [], finished)
    return state


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
        # Numbering continues after a previous run's state in this directory (a
        # restored experiment), so no file of that state is ever overwritten.
        self.generation = _existing_generation(experiment_dir)
        self.total_write_time = 0.0
        self.num_writes = 0
        self._started = clock()
        # This writer's finished-trial files and how much of them is committed.
        self._finished_names: Optional[Tuple[str, str]] = None
        self._finished_bytes = [0, 0]
        self._finished_count = 0

    def due(self) -> bool:
        wait = max(self._min_interval, self._last_cost / self._budget)
        return self._clock() - self._last_write >= wait

    def write(self, json_state: Dict[str, Any], pickled: bytes,
              prepared_s: float = 0.0,
              finished: Sequence[Tuple[bytes, bytes]] = ()) -> None:
        """Write a new generation; ``prepared_s`` is what building the state took, counted
        in the cost that spaces the writes (so the whole snapshot keeps to the budget).

        ``finished``: the trials that ended since the last write, each as
        :func:`encode_finished` renders it; they are appended to the finished-trial
        files, and ``json_state``/``pickled`` hold the other trials only.
        """
        start = self._clock() - prepared_s
        self.generation += 1
        gen = self.generation
        os.makedirs(self.experiment_dir, exist_ok=True)
        if self._finished_names is None:
            self._finished_names = (f"{_FINISHED_PREFIX}{gen:06d}.jsonl",
                                    f"{_FINISHED_PREFIX}{gen:06d}.pkl")
        names = self._finished_names
        sizes = list(self._finished_bytes)
        if finished or not self.num_writes:
            for k in (0, 1):
                sizes[k] = _append_at(os.path.join(self.experiment_dir, names[k]),
                                      sizes[k], [rec[k] for rec in finished])
        count = self._finished_count + len(finished)
        json_state = dict(json_state, generation=gen, format_version=FORMAT_VERSION,
                          timestamp=time.time(),
                          finished_trials={"json_file": names[0], "json_bytes": sizes[0],
                                           "pickle_file": names[1], "pickle_bytes": sizes[1],
                                           "count": count})
        pkl_name = f"{_PICKLE_PREFIX}{gen:06d}.pkl"
        _write_atomically(os.path.join(self.experiment_dir, pkl_name), pickled)
        data = json.dumps(json_state, default=_default, allow_nan=True).encode()
        _write_atomically(os.path.join(self.experiment_dir, STATE_FILE), data)
        self._finished_bytes, self._finished_count = sizes, count
        removed = []
        for name in os.listdir(self.experiment_dir):
            if name.startswith(_PICKLE_PREFIX) and name != pkl_name and name not in names \
                    and (name.endswith(".pkl") or name.endswith(".jsonl")):
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
            self._on_written([*names, pkl_name, STATE_FILE], removed)


def _append_at(path: str, offset: int, chunks: List[bytes]) -> int:
    """Write ``chunks`` into ``path`` from ``offset`` on (dropping whatever an unfinished
    earlier attempt left after it), durably; the new size."""
    with open(path, "r+b" if os.path.exists(path) else "w+b") as f:
        f.seek(offset)
        f.truncate()
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _existing_generation(experiment_dir: str) -> int:
    try:
        with open(os.path.join(experiment_dir, STATE_FILE), "rb") as f:
            return int(json.loads(f.read()).get("generation", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def state_reader(experiment_dir: str, filesystem: Any = None
                 ) -> Callable[[str], Optional[bytes]]:
    """``read(name)``: a file of the experiment directory ``experiment_dir`` (a local path,
    or a path inside ``filesystem``), or None if there is none."""
    if filesystem is None:
        def read(name: str) -> Optional[bytes]:
            try:
                with open(os.path.join(experiment_dir, name), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        return read
    import posixpath

    from tune_core import storage

    def read_remote(name: str) -> Optional[bytes]:
        try:
            return storage.read_bytes(filesystem, posixpath.join(experiment_dir, name))
        except FileNotFoundError:
            return None
    return read_remote


def _prefix(read: Callable[[str], Optional[bytes]], name: str, size: int) -> bytes:
    """The first ``size`` bytes of the finished-trial file ``name`` (the ones a state
    counts as its own)."""
    raw = read(name)
    if raw is None or len(raw) < size:
        raise ValueError(f"{name} is missing or shorter than {STATE_FILE} says "
                         f"({size} bytes)")
    return raw[:size]


def read_experiment_json(experiment_dir: str, filesystem: Any = None) -> Dict[str, Any]:
    """``experiment_state.json`` of the experiment in ``experiment_dir`` (a local path, or
    a path inside ``filesystem``), with every trial in it: what tools outside the
    engine read."""
    return read_json_state(state_reader(experiment_dir, filesystem))


def load_experiment_state(experiment_dir: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The JSON state and the unpickled state of the experiment in ``experiment_dir``,
    each with all its trials (finished ones included) in creation order."""
    import pickle

    import cloudpickle  # noqa: F401  (the pickles may need it)

    path = os.path.join(experiment_dir, STATE_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{experiment_dir!r} holds no experiment state ({STATE_FILE} is missing); pass "
            "the directory of one experiment, e.g. ~/tune_results/<experiment name>")
    read = state_reader(experiment_dir)
    json_state = read_json_state(read)
    gen = int(json_state["generation"])
    with open(os.path.join(experiment_dir, f"{_PICKLE_PREFIX}{gen:06d}.pkl"), "rb") as f:
        state = pickle.loads(f.read())
    files = finished_files(json_state)
    if files:
        data = _prefix(read, *files[1])
        size = len(data)
        stream = io.BytesIO(data)
        finished = []
        while stream.tell() < size:
            finished.append(pickle.load(stream))
        state["trials"] = merge_finished(state.get("trials") or [], finished)
    return json_state, state
