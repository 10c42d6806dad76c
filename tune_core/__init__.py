"""tune_core: distributed hyperparameter tuning on Ray core, with Ray Tune's API.

Use it as ``import tune_core as tune``. Importing it is light: Ray, pandas,
pyarrow and torch are loaded only when an experiment runs or results are read.
"""

from tune_core.callback import Callback
from tune_core.checkpoint import Checkpoint
from tune_core.config import CheckpointConfig, FailureConfig, RunConfig, SyncConfig, TuneConfig
from tune_core.error import SearchSpaceError, TrialError, TuneError
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.experiment.trial import Trial
from tune_core.progress_reporter import CLIReporter
from tune_core.result import Result
from tune_core.result_grid import ResultGrid
from tune_core.search.sample import (
    choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint, qrandn,
    quniform, randint, randn, sample_from, uniform)
from tune_core.stopper import Stopper
from tune_core.trainable import (
    Trainable, TuneContext, get_checkpoint, get_context, report, with_parameters,
    with_resources)
from tune_core.tuner import Tuner, release_workers

__version__ = "0.1.0"


def create_scheduler(name: str, **kwargs):
    """A trial scheduler by its Ray Tune name, e.g. ``create_scheduler("asha", max_t=50)``.

    See ``schedulers.create_scheduler`` for the names (imported on first use).
    """
    from schedulers import create_scheduler as create

    return create(name, **kwargs)


def create_searcher(name: str, **kwargs):
    """A search algorithm by its Ray Tune name, e.g. ``create_searcher("optuna", seed=0)``.

    See ``searchers.create_searcher`` for the names (imported on first use).
    """
    from searchers import create_searcher as create

    return create(name, **kwargs)


__all__ = [
    # running
    "Tuner", "release_workers", "TuneConfig", "RunConfig", "CheckpointConfig",
    "FailureConfig", "SyncConfig",
    # trainables
    "Trainable", "report", "get_checkpoint", "get_context", "TuneContext", "Checkpoint",
    "with_parameters", "with_resources", "PlacementGroupFactory",
    # search spaces
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn", "randint",
    "qrandint", "lograndint", "qlograndint", "choice", "sample_from", "grid_search",
    # schedulers and searchers
    "create_scheduler", "create_searcher",
    # results and hooks
    "Result", "ResultGrid", "Trial", "Callback", "Stopper", "CLIReporter",
    # errors
    "TuneError", "TrialError", "SearchSpaceError",
]
