"""Trial scheduler interface and the default FIFO scheduler."""

from tune_core.schedulers.trial_scheduler import FIFOScheduler, SchedulerDecision, TrialScheduler

__all__ = ["TrialScheduler", "FIFOScheduler", "SchedulerDecision"]
