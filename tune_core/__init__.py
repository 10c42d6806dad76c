"""tune_core: distributed hyperparameter tuning on Ray core, with Ray Tune's API.

Use it as ``import tune_core as tune``. Importing it is light: each public name's
module is imported when the name is first used, and Ray, pandas, pyarrow and torch
only when an experiment runs or results are read.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

# Each public name, and the module it comes from: imported on first use (PEP 562), so
# that a trial's worker process, which needs only `report` and the trainable machinery,
# does not import the tuner, the searchers or the progress reporter (tens of ms in
# every worker process).
_LAZY = {
    "Callback": "tune_core.callback",
    "Checkpoint": "tune_core.checkpoint",
    **dict.fromkeys(("CheckpointConfig", "FailureConfig", "RunConfig", "SyncConfig",
                     "TuneConfig"), "tune_core.config"),
    **dict.fromkeys(("SearchSpaceError", "TrialError", "TuneError"), "tune_core.error"),
    "PlacementGroupFactory": "tune_core.execution.placement_groups",
    "Trial": "tune_core.experiment.trial",
    "CLIReporter": "tune_core.progress_reporter",
    "Result": "tune_core.result",
    "ResultGrid": "tune_core.result_grid",
    **dict.fromkeys(("choice", "grid_search", "lograndint", "loguniform", "qlograndint",
                     "qloguniform", "qrandint", "qrandn", "quniform", "randint", "randn",
                     "sample_from", "uniform"), "tune_core.search.sample"),
    "Stopper": "tune_core.stopper",
    **dict.fromkeys(("Trainable", "TuneContext", "get_checkpoint", "get_context", "report",
                     "with_parameters", "with_resources"), "tune_core.trainable"),
    **dict.fromkeys(("Tuner", "release_workers"), "tune_core.tuner"),
}

if _TYPE_CHECKING:  # what type checkers and IDEs see
    from tune_core.callback import Callback
    from tune_core.checkpoint import Checkpoint
    from tune_core.config import (CheckpointConfig, FailureConfig, RunConfig, SyncConfig,
                                  TuneConfig)
    from tune_core.error import SearchSpaceError, TrialError, TuneError
    from tune_core.execution.placement_groups import PlacementGroupFactory
    from tune_core.experiment.trial import Trial
    from tune_core.progress_reporter import CLIReporter
    from tune_core.result import Result
    from tune_core.result_grid import ResultGrid
    from tune_core.search.sample import (
        choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint,
        qrandn, quniform, randint, randn, sample_from, uniform)
    from tune_core.stopper import Stopper
    from tune_core.trainable import (
        Trainable, TuneContext, get_checkpoint, get_context, report, with_parameters,
        with_resources)
    from tune_core.tuner import Tuner, release_workers


def __getattr__(name: str):
    import importlib.util

    module = _LAZY.get(name)
    if module is None:
        # A subpackage read as an attribute (``tune_core.search.sample``) is imported too.
        if not name.startswith("_") and importlib.util.find_spec(f"tune_core.{name}"):
            return importlib.import_module(f"tune_core.{name}")
        raise AttributeError(f"module 'tune_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads find it directly
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
