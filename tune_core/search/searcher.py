"""The interface of model-based search algorithms (Ray Tune's ``Searcher``)."""

from __future__ import annotations

import os
import pickle
from typing import Any, Dict, List, Optional

__all__ = ["Searcher"]


class Searcher:
    """Suggests configurations one trial at a time and learns from their results.

    Order of calls::

        set_search_properties(metric, mode, config)   once, unless given in the constructor
        suggest(trial_id) -> dict | None | Searcher.FINISHED
        on_trial_result(trial_id, result)              intermediate results (optional)
        on_trial_complete(trial_id, result, error)     once per suggested trial

    ``suggest`` returns None for "not now, ask again later" and ``FINISHED`` when
    it will never suggest again.
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f'{type(self).__name__}(mode={mode!r}): use "min" or "max"')
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> Optional[str]:
        return self._metric

    @property
    def mode(self) -> Optional[str]:
        return self._mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict[str, Any], **spec: Any) -> bool:
        """Take metric/mode (and the space) from the Tuner; False if already set differently."""
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        raise NotImplementedError

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not take evaluated points")

    def get_state(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        tmp = checkpoint_path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        self.save(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        files = sorted(f for f in os.listdir(checkpoint_dir)
                       if f.startswith("searcher-state-") and f.endswith(".pkl"))
        if not files:
            raise FileNotFoundError(f"No searcher state (searcher-state-*.pkl) in "
                                    f"{checkpoint_dir!r}")
        self.restore(os.path.join(checkpoint_dir, files[-1]))
