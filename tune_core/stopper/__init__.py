"""Stoppers: decide when a trial, or the whole experiment, stops (Ray Tune's names).

Pass one as ``RunConfig(stop=...)``; a dict of thresholds or a function work too.
"""

from tune_core.stopper.experiment_plateau import ExperimentPlateauStopper
from tune_core.stopper.function_stopper import FunctionStopper
from tune_core.stopper.maximum_iteration import MaximumIterationStopper
from tune_core.stopper.noop import NoopStopper
from tune_core.stopper.stopper import CombinedStopper, Stopper
from tune_core.stopper.timeout import TimeoutStopper
from tune_core.stopper.trial_plateau import TrialPlateauStopper

__all__ = [
    "Stopper",
    "CombinedStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
    "ExperimentPlateauStopper",
]
