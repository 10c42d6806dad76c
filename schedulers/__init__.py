"""Trial schedulers (Ray Tune's ``ray.tune.schedulers``).

The interface and the default FIFO scheduler live in ``tune_core`` and are re-exported here.
``create_scheduler(name, **kwargs)`` builds one by its Ray Tune name.
"""

from __future__ import annotations

import typing

from tune_core._util import create_by_name as _create_by_name
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision, TrialScheduler)

from schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from schedulers.hb_bohb import HyperBandForBOHB
from schedulers.hyperband import HyperBandScheduler
from schedulers.median_stopping_rule import MedianStoppingRule
from schedulers.moasha import MOASHA
from schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay
from schedulers.resource_changing_scheduler import ResourceChangingScheduler

__all__ = [
    "FIFOScheduler", "SchedulerDecision", "TrialScheduler", "RestartTrial", "ChangeResources",
    "AsyncHyperBandScheduler", "ASHAScheduler", "MedianStoppingRule", "MOASHA",
    "HyperBandScheduler", "HyperBandForBOHB",
    "PopulationBasedTraining", "PopulationBasedTrainingReplay", "ResourceChangingScheduler",
    "create_scheduler",
]

# Name -> "module:class", imported when asked for. One line per scheduler.
_SCHEDULER_IMPORTS = {
    "fifo": "tune_core.schedulers.trial_scheduler:FIFOScheduler",
    "async_hyperband": "schedulers.async_hyperband:AsyncHyperBandScheduler",
    "asha": "schedulers.async_hyperband:ASHAScheduler",
    "median_stopping_rule": "schedulers.median_stopping_rule:MedianStoppingRule",
    "moasha": "schedulers.moasha:MOASHA",
    "hyperband": "schedulers.hyperband:HyperBandScheduler",
    "hb_bohb": "schedulers.hb_bohb:HyperBandForBOHB",
    "pbt": "schedulers.pbt:PopulationBasedTraining",
    "pbt_replay": "schedulers.pbt:PopulationBasedTrainingReplay",
    "pb2": "schedulers.pb2:PB2",
    "resource_changing": "schedulers.resource_changing_scheduler:ResourceChangingScheduler",
}


def create_scheduler(name: typing.Optional[str] = None, **kwargs: typing.Any) -> TrialScheduler:
    """A scheduler by name, built with ``kwargs`` (Ray Tune's ``tune.create_scheduler``).

    Args:
        name: Ray Tune's name of the scheduler (``"fifo"``, ``"asha"``,
            ``"median_stopping_rule"``, ...; case-insensitive; an unknown name's error
            lists them all). Ray Tune's keyword spelling ``scheduler="asha"`` works too.
        **kwargs: The scheduler's own arguments.

    Raises:
        ValueError: ``name`` is not a known scheduler (the message lists them).

    Example::

        scheduler = create_scheduler("asha", metric="loss", mode="min", max_t=50)
    """
    return _create_by_name("create_scheduler", "scheduler", _SCHEDULER_IMPORTS, name, kwargs)
