"""Trial schedulers (Ray Tune's ``ray.tune.schedulers``).

The interface and the default FIFO scheduler live in ``tune_core`` and are re-exported here.
"""

from tune_core.schedulers.trial_scheduler import FIFOScheduler, SchedulerDecision, TrialScheduler

__all__ = ["FIFOScheduler", "SchedulerDecision", "TrialScheduler"]
