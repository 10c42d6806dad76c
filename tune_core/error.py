"""Exceptions raised by tune_core."""

from __future__ import annotations

__all__ = ["TuneError", "TrialError", "SearchSpaceError"]


class TuneError(Exception):
    """Raised for a problem with the experiment itself (bad settings, failed trials)."""


class SearchSpaceError(TuneError, ValueError):
    """A search space is malformed; the message names the parameter path."""


class TrialError(TuneError):
    """A trial's trainable raised; carries the user's own traceback as text.

    Attributes:
        trial_id: the trial that failed.
        traceback_str: the traceback formatted in the worker process, including
            the user's own frames.
        cause_type: the name of the user's exception class.
    """

    def __init__(self, message: str, *, trial_id: str = "", traceback_str: str = "",
                 cause_type: str = "") -> None:
        super().__init__(message)
        self.trial_id = trial_id
        self.traceback_str = traceback_str
        self.cause_type = cause_type

    def __str__(self) -> str:  # the user's traceback is the useful part
        base = super().__str__()
        if self.traceback_str and self.traceback_str not in base:
            return f"{base}\n{self.traceback_str}"
        return base

    def __reduce__(self):
        return (_rebuild_trial_error, (self.args[0] if self.args else "", self.trial_id,
                                       self.traceback_str, self.cause_type))


def _rebuild_trial_error(message, trial_id, traceback_str, cause_type):
    return TrialError(message, trial_id=trial_id, traceback_str=traceback_str,
                      cause_type=cause_type)
