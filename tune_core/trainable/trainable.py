"""The class API: subclass ``Trainable`` and implement ``setup`` and ``step``."""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
from typing import Any, Dict, Optional, Union

__all__ = ["Trainable"]

_DICT_CHECKPOINT_FILE = "_dict_checkpoint.pkl"


class Trainable:
    """Base class for class-based trainables (Ray Tune's ``Trainable`` API).

    Order of calls on one object::

        setup(config)                           once, from __init__
        load_checkpoint(checkpoint)             when resuming from a checkpoint
        step() -> dict                          repeatedly; each dict is one result
        save_checkpoint(checkpoint_dir)         when a checkpoint is due (dir exists, empty)
        reset_config(new_config) -> bool        only with reuse_actors=True, between trials
        cleanup()                               once, when the trial ends

    A result with ``done=True`` ends the trial. ``default_resource_request``
    may return the resources a trial needs for a given config.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None, logger_creator: Any = None,
                 storage: Any = None, **kwargs: Any) -> None:
        self.config: Dict[str, Any] = config if config is not None else {}
        info = kwargs.pop("_trial_info", None) or {}
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kwargs)}")
        self._trial_id = info.get("trial_id", "default")
        self._trial_name = info.get("trial_name", "default")
        self._trial_dir = info.get("trial_dir") or os.getcwd()
        self._iteration = 0
        self._time_total = 0.0
        self._session = None  # set by the worker that runs this object
        self.setup(copy.deepcopy(self.config))

    # --- to override -------------------------------------------------------------------------
    def setup(self, config: Dict[str, Any]) -> None:
        """Build whatever the trial needs (model, data) from ``config``."""

    def step(self) -> Dict[str, Any]:
        """Run one iteration of training and return its metrics."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def save_checkpoint(self, checkpoint_dir: str) -> Optional[Dict[str, Any]]:
        """Write the state to ``checkpoint_dir`` (or return a dict to be saved for you)."""
        raise NotImplementedError(
            f"{type(self).__name__} was asked for a checkpoint but does not implement "
            "save_checkpoint(checkpoint_dir)")

    def load_checkpoint(self, checkpoint: Union[str, Dict[str, Any]]) -> None:
        """Restore state from a directory written by ``save_checkpoint`` (or its dict)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement load_checkpoint(checkpoint) to resume")

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        """Reconfigure this object for a new trial; return True if that worked."""
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` acquired."""

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]) -> Any:
        """Resources for a trial with ``config``: a dict, a PlacementGroupFactory or None."""
        return None

    # --- read-only information ---------------------------------------------------------------
    @property
    def iteration(self) -> int:
        return self._iteration

    @property
    def training_iteration(self) -> int:
        return self._iteration

    @property
    def trial_id(self) -> str:
        return self._trial_id

    @property
    def trial_name(self) -> str:
        return self._trial_name

    @property
    def trial_dir(self) -> str:
        return self._trial_dir

    logdir = trial_dir

    # --- standalone use (a test or notebook driving the object directly) -------------------
    def train(self) -> Dict[str, Any]:
        """Run one ``step`` and return its result with the automatic fields added."""
        import time

        start = time.time()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict of metrics, got "
                            f"{type(result).__name__}: {result!r}")
        result = dict(result)
        self._iteration += 1
        elapsed = result.get("time_this_iter_s", time.time() - start)
        self._time_total += elapsed
        result.setdefault("done", False)
        result.setdefault("training_iteration", self._iteration)
        result.setdefault("time_this_iter_s", elapsed)
        result["time_total_s"] = self._time_total
        result["trial_id"] = self._trial_id
        return result

    def save(self, checkpoint_dir: Optional[str] = None) -> str:
        """Save a checkpoint into ``checkpoint_dir`` (a new temp dir if None); return the dir."""
        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint_")
        _save_into(self, checkpoint_dir)
        return checkpoint_dir

    def restore(self, checkpoint_path: str) -> None:
        _load_from(self, checkpoint_path)

    def stop(self) -> None:
        self.cleanup()


def _save_into(trainable: Trainable, checkpoint_dir: str) -> None:
    os.makedirs(checkpoint_dir, exist_ok=True)
    state = trainable.save_checkpoint(checkpoint_dir)
    if isinstance(state, dict):
        with open(os.path.join(checkpoint_dir, _DICT_CHECKPOINT_FILE), "wb") as f:
            pickle.dump(state, f)
    elif state is not None and not (isinstance(state, str) and os.path.exists(state)):
        raise TypeError(f"{type(trainable).__name__}.save_checkpoint() must write into "
                        "checkpoint_dir and return None, or return a dict; got "
                        f"{type(state).__name__}")
    with open(os.path.join(checkpoint_dir, ".tune_metadata"), "wb") as f:
        pickle.dump({"iteration": trainable._iteration, "time_total": trainable._time_total}, f)


def _load_from(trainable: Trainable, checkpoint_path: str) -> None:
    dict_file = os.path.join(checkpoint_path, _DICT_CHECKPOINT_FILE)
    if os.path.exists(dict_file):
        with open(dict_file, "rb") as f:
            trainable.load_checkpoint(pickle.load(f))
    else:
        trainable.load_checkpoint(checkpoint_path)
    meta = os.path.join(checkpoint_path, ".tune_metadata")
    if os.path.exists(meta):
        with open(meta, "rb") as f:
            info = pickle.load(f)
        trainable._iteration = info.get("iteration", trainable._iteration)
        trainable._time_total = info.get("time_total", trainable._time_total)
