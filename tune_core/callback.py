"""Callbacks: hooks the controller calls as an experiment runs (Ray Tune's names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["Callback"]


class Callback:
    """Base class for experiment callbacks. Every hook does nothing by default.

    Order of calls, for one experiment::

        setup(stop, num_samples, total_num_samples)        once, before any trial
        on_step_begin / on_step_end                        around each controller step
        on_trial_start                                     a trial's worker is running it
        on_trial_result                                    for each result, after the stopper,
                                                           scheduler and searcher saw it
        on_trial_save / on_checkpoint                      a checkpoint was recorded
        on_trial_recover                                   a failed trial will be retried
        on_trial_error                                     a trial failed for good (ERROR)
        on_trial_complete                                  a trial ended normally (TERMINATED)
        on_experiment_end                                  once, after the last trial

    ``iteration`` is the controller's step counter and ``trials`` the list of all
    trials; both are passed as keywords, so overrides may accept ``**info``.
    """

    def setup(self, stop: Optional[Any] = None, num_samples: Optional[int] = None,
              total_num_samples: Optional[int] = None, **info: Any) -> None:
        pass

    def on_step_begin(self, iteration: int, trials: List["Trial"], **info: Any) -> None:
        pass

    def on_step_end(self, iteration: int, trials: List["Trial"], **info: Any) -> None:
        pass

    def on_trial_start(self, iteration: int, trials: List["Trial"], trial: "Trial",
                       **info: Any) -> None:
        pass

    def on_trial_restore(self, iteration: int, trials: List["Trial"], trial: "Trial",
                         **info: Any) -> None:
        pass

    def on_trial_save(self, iteration: int, trials: List["Trial"], trial: "Trial",
                      **info: Any) -> None:
        pass

    def on_trial_result(self, iteration: int, trials: List["Trial"], trial: "Trial",
                        result: Dict[str, Any], **info: Any) -> None:
        pass

    def on_trial_complete(self, iteration: int, trials: List["Trial"], trial: "Trial",
                          **info: Any) -> None:
        pass

    def on_trial_recover(self, iteration: int, trials: List["Trial"], trial: "Trial",
                         **info: Any) -> None:
        pass

    def on_trial_error(self, iteration: int, trials: List["Trial"], trial: "Trial",
                       **info: Any) -> None:
        pass

    def on_checkpoint(self, iteration: int, trials: List["Trial"], trial: "Trial",
                      checkpoint: Any, **info: Any) -> None:
        pass

    def on_experiment_end(self, trials: List["Trial"], **info: Any) -> None:
        pass

    def get_state(self) -> Optional[Dict]:
        return None

    def set_state(self, state: Dict) -> None:
        pass


class CallbackList(Callback):
    """Fans each hook out to a list of callbacks, in order."""

    def __init__(self, callbacks: List[Callback]) -> None:
        self.callbacks = list(callbacks)

    def _each(self, name: str, **kwargs: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(**kwargs)

    def flush(self) -> None:
        """Ask callbacks that buffer files (the loggers) to write them out."""
        for cb in self.callbacks:
            flush = getattr(cb, "flush", None)
            if callable(flush):
                flush()

    def setup(self, **info: Any) -> None:
        self._each("setup", **info)

    def on_step_begin(self, **info: Any) -> None:
        self._each("on_step_begin", **info)

    def on_step_end(self, **info: Any) -> None:
        self._each("on_step_end", **info)

    def on_trial_start(self, **info: Any) -> None:
        self._each("on_trial_start", **info)

    def on_trial_restore(self, **info: Any) -> None:
        self._each("on_trial_restore", **info)

    def on_trial_save(self, **info: Any) -> None:
        self._each("on_trial_save", **info)

    def on_trial_result(self, **info: Any) -> None:
        self._each("on_trial_result", **info)

    def on_trial_complete(self, **info: Any) -> None:
        self._each("on_trial_complete", **info)

    def on_trial_recover(self, **info: Any) -> None:
        self._each("on_trial_recover", **info)

    def on_trial_error(self, **info: Any) -> None:
        self._each("on_trial_error", **info)

    def on_checkpoint(self, **info: Any) -> None:
        self._each("on_checkpoint", **info)

    def on_experiment_end(self, **info: Any) -> None:
        self._each("on_experiment_end", **info)
