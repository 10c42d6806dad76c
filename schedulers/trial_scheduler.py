"""Ray Tune's ``ray.tune.schedulers.trial_scheduler`` module path: the scheduler interface,
its decisions and FIFO (defined in ``tune_core.schedulers.trial_scheduler``)."""

from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision, TrialScheduler)

__all__ = ["TrialScheduler", "FIFOScheduler", "SchedulerDecision", "RestartTrial",
           "ChangeResources"]
