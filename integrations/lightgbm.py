"""LightGBM callback that reports eval metrics and checkpoints the booster (Ray Tune's names).

::

    from integrations.lightgbm import TuneReportCheckpointCallback

    def train_fn(config):
        lightgbm.train(config, dtrain, num_boost_round=100, valid_sets=[dvalid],
                       valid_names=["eval"],
                       callbacks=[TuneReportCheckpointCallback({"loss": "eval-binary_logloss"})])

    booster = TuneReportCheckpointCallback.get_model(result.checkpoint)

LightGBM is optional: install ``pip install 'tune-core[lightgbm]'``. It is imported
when the callback is created or a model loaded, never by ``import integrations``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from integrations._boosting import Metrics, Postprocess, RoundReporter, model_file
from tune_core.checkpoint import Checkpoint

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback", "get_model"]

_DEFAULT_FILENAME = "model.txt"  # LightGBM's text model format


def _import_lightgbm(what: str) -> Any:
    try:
        import lightgbm
    except ImportError as exc:
        raise ImportError(f"{what} needs LightGBM: pip install 'tune-core[lightgbm]' "
                          "(lightgbm>=4)") from exc
    return lightgbm


def _flatten(evaluation_result_list: Optional[Sequence[Any]]) -> Dict[str, Any]:
    """LightGBM's evaluation results as ``{"<dataset>-<metric>": value}``.

    ``lightgbm.cv`` results (which carry a standard deviation) become
    ``<dataset>-<metric>-mean`` and ``<dataset>-<metric>-stdv``, the names LightGBM's
    ``record_evaluation`` uses.
    """
    out: Dict[str, Any] = {}
    for entry in evaluation_result_list or ():
        # a tuple before LightGBM 4.7, a NamedTuple (indexable the same way) since
        dataset, metric, value = entry[0], entry[1], entry[2]
        std = entry[4] if len(entry) > 4 else None
        if std is None:
            out[f"{dataset}-{metric}"] = float(value)
        else:
            out[f"{dataset}-{metric}-mean"] = float(value)
            out[f"{dataset}-{metric}-stdv"] = float(std)
    return out


class TuneReportCheckpointCallback:
    """Reports LightGBM's evaluation results after each boosting round; checkpoints the booster.

    One result per boosting round, named ``"<valid name>-<metric>"``
    (``valid_sets=[dvalid], valid_names=["eval"]`` with ``metric="binary_logloss"``
    gives ``"eval-binary_logloss"``).

    LightGBM's ``early_stopping`` callback ends training by raising, so the round it
    stops at is not known to be the last: with early stopping, use ``frequency`` to
    keep checkpoints along the way.

    Args:
        metrics: None reports every evaluation result; a name or list of names reports
            those; a dict ``{name to report: LightGBM name}`` renames them. A name that
            is not among the results raises a ``KeyError`` listing the ones there are.
        filename: the model file inside each checkpoint (LightGBM's text format).
        frequency: checkpoint every ``frequency`` rounds (rounds ``frequency``,
            ``2 * frequency``, ...); 0 (the default, as in Ray Tune) only at the end.
        checkpoint_at_end: also checkpoint the booster after the last round.
        results_postprocessing_fn: called with each result dict before it is reported;
            returns the dict to report.
    """

    def __init__(self, metrics: Metrics = None, filename: str = _DEFAULT_FILENAME,
                 frequency: int = 0, checkpoint_at_end: bool = True,
                 results_postprocessing_fn: Postprocess = None) -> None:
        name = type(self).__name__
        _import_lightgbm(name)
        self._rounds = RoundReporter(
            name, "LightGBM", metrics=metrics, filename=filename, frequency=frequency,
            checkpoint_at_end=checkpoint_at_end, postprocess=results_postprocessing_fn,
            example_files="'model.txt'",
            example_metric="'<valid name>-<metric>', e.g. 'eval-binary_logloss'",
            no_results_hint="pass valid_sets=[...]")

    @classmethod
    def get_model(cls, checkpoint: Checkpoint, filename: str = _DEFAULT_FILENAME) -> Any:
        """The ``lightgbm.Booster`` in a checkpoint this callback reported."""
        return get_model(checkpoint, filename)

    def __call__(self, env: Any) -> None:
        """LightGBM's callback protocol: called after each boosting round."""
        rounds = self._rounds
        result = rounds.result(_flatten(env.evaluation_result_list))
        last = env.iteration == env.end_iteration - 1
        # lightgbm.cv hands a CVBooster: its save_model writes all its folds' boosters
        if (rounds.checkpoint_at_end and last) or rounds.checkpoint_due(env.iteration + 1):
            rounds.report(result, env.model)
        else:
            rounds.report(result, None)


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports LightGBM's evaluation results after each boosting round, without checkpoints.

    Args:
        metrics: as for :class:`TuneReportCheckpointCallback`.
        results_postprocessing_fn: as for :class:`TuneReportCheckpointCallback`.
    """

    def __init__(self, metrics: Metrics = None,
                 results_postprocessing_fn: Postprocess = None) -> None:
        super().__init__(metrics=metrics, frequency=0, checkpoint_at_end=False,
                         results_postprocessing_fn=results_postprocessing_fn)


def get_model(checkpoint: "Checkpoint | str | os.PathLike[str]",
              filename: str = _DEFAULT_FILENAME) -> Any:
    """Load the ``lightgbm.Booster`` that :class:`TuneReportCheckpointCallback` saved.

    Args:
        checkpoint: a ``tune_core.Checkpoint`` (local or remote) or a local directory.
        filename: the ``filename`` the callback was created with.
    """
    lightgbm = _import_lightgbm("get_model")
    with model_file(checkpoint, filename) as path:
        return lightgbm.Booster(model_file=path)
