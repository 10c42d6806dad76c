"""Trials as the controller tracks them."""

from tune_core.experiment.trial import Trial, TrialStatus

__all__ = ["Trial", "TrialStatus"]
