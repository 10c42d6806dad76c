"""XGBoost callback that reports eval metrics and checkpoints the booster (Ray Tune's names).

::

    from integrations.xgboost import TuneReportCheckpointCallback

    def train_fn(config):
        xgboost.train(config, dtrain, num_boost_round=100, evals=[(dvalid, "eval")],
                      callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss"})])

    booster = TuneReportCheckpointCallback.get_model(result.checkpoint)

XGBoost is optional: install ``pip install 'tune-core[xgboost]'`` (``xgboost-cpu``, the
wheel without CUDA; ``xgboost`` works the same). It is imported when this module is,
never by ``import integrations``; without it, creating the callback raises an
ImportError that says what to install.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence

from integrations._boosting import Metrics, Postprocess, RoundReporter, model_file
from tune_core.checkpoint import Checkpoint

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback", "get_model"]

try:
    from xgboost.callback import TrainingCallback as _TrainingCallback
    _IMPORT_ERROR: Optional[ImportError] = None
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    _TrainingCallback = object  # type: ignore[assignment,misc]
    _IMPORT_ERROR = _exc

_DEFAULT_FILENAME = "model.ubj"  # UBJSON: XGBoost's own compact, portable model format


def _import_error(what: str) -> ImportError:
    return ImportError(f"{what} needs XGBoost: pip install 'tune-core[xgboost]' "
                       "(xgboost-cpu>=2.1, or xgboost)")


def _flatten(evals_log: Mapping[str, Mapping[str, Sequence[Any]]]) -> Dict[str, Any]:
    """``{"eval": {"logloss": [.., x]}}`` to ``{"eval-logloss": x}`` (the newest round).

    ``xgboost.cv`` logs ``(mean, std)`` pairs: they become ``<name>-mean`` and ``<name>-std``.
    """
    out: Dict[str, Any] = {}
    for data_name, metrics in evals_log.items():
        for metric_name, history in metrics.items():
            if not history:
                continue
            key, value = f"{data_name}-{metric_name}", history[-1]
            if isinstance(value, (tuple, list)) and len(value) == 2:
                out[f"{key}-mean"], out[f"{key}-std"] = float(value[0]), float(value[1])
            else:
                out[key] = float(value)
    return out


class TuneReportCheckpointCallback(_TrainingCallback):  # type: ignore[misc,valid-type]
    """Reports XGBoost's evaluation results after each boosting round; checkpoints the booster.

    One result per boosting round, named ``"<eval name>-<metric>"`` as XGBoost logs
    them (``evals=[(dvalid, "eval")]`` with ``eval_metric="logloss"`` gives
    ``"eval-logloss"``). With ``checkpoint_at_end`` the last round's result carries the
    final booster: that result is reported when training ends, so each result is one
    round behind while training goes on.

    Args:
        metrics: None reports every evaluation result; a name or list of names reports
            those; a dict ``{name to report: XGBoost name}`` renames them. A name that is
            not among the results raises a ``KeyError`` listing the ones there are.
        filename: the model file inside each checkpoint (``.ubj`` UBJSON by default;
            ``.json`` also works).
        frequency: checkpoint every ``frequency`` rounds (rounds ``frequency``,
            ``2 * frequency``, ...); 0 (the default, as in Ray Tune) only at the end.
        checkpoint_at_end: also checkpoint the final booster.
        results_postprocessing_fn: called with each result dict before it is reported;
            returns the dict to report.

    With ``xgboost.cv`` the results are the folds' means and standard deviations
    (``"test-logloss-mean"``, ``"test-logloss-std"``), and there are no checkpoints:
    ``cv`` keeps no single booster to save.
    """

    def __init__(self, metrics: Metrics = None, filename: str = _DEFAULT_FILENAME,
                 frequency: int = 0, checkpoint_at_end: bool = True,
                 results_postprocessing_fn: Postprocess = None) -> None:
        name = type(self).__name__
        if _IMPORT_ERROR is not None:
            raise _import_error(name) from _IMPORT_ERROR
        self._rounds = RoundReporter(
            name, "XGBoost", metrics=metrics, filename=filename, frequency=frequency,
            checkpoint_at_end=checkpoint_at_end, postprocess=results_postprocessing_fn,
            example_files="'model.ubj' or 'model.json'",
            example_metric="'<eval name>-<metric>', e.g. 'eval-logloss'",
            no_results_hint="pass evals=[...]")
        self._pending: Optional[Dict[str, Any]] = None  # last round's result, not yet sent

    @classmethod
    def get_model(cls, checkpoint: Checkpoint, filename: str = _DEFAULT_FILENAME) -> Any:
        """The ``xgboost.Booster`` in a checkpoint this callback reported."""
        return get_model(checkpoint, filename)

    # --- XGBoost's TrainingCallback hooks ----------------------------------------------------
    def before_training(self, model: Any) -> Any:
        self._pending = None
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self._flush()  # the previous round's result, now that it is not the last
        rounds = self._rounds
        result = rounds.result(_flatten(evals_log))
        if rounds.checkpoint_due(epoch + 1):
            self._report(result, model)
        elif rounds.checkpoint_at_end:
            self._pending = result  # reported with the checkpoint if this is the last round
        else:
            self._report(result, None)
        return False  # never stops training itself

    def after_training(self, model: Any) -> Any:
        if self._pending is not None:
            result, self._pending = self._pending, None
            self._report(result, model)
        return model

    # -----------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._pending is not None:
            result, self._pending = self._pending, None
            self._report(result, None)

    def _report(self, result: Dict[str, Any], model: Any) -> None:
        # xgboost.cv hands callbacks its folds packed together, which cannot be saved:
        # there is no single booster to checkpoint, so its results come without one.
        if model is not None and not callable(getattr(model, "save_model", None)):
            model = None
        self._rounds.report(result, model)


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports XGBoost's evaluation results after each boosting round, without checkpoints.

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
    """Load the ``xgboost.Booster`` that :class:`TuneReportCheckpointCallback` saved.

    Args:
        checkpoint: a ``tune_core.Checkpoint`` (local or remote) or a local directory.
        filename: the ``filename`` the callback was created with.
    """
    try:
        import xgboost
    except ImportError as exc:
        raise _import_error("get_model") from exc
    with model_file(checkpoint, filename) as path:
        booster = xgboost.Booster()
        booster.load_model(path)
    return booster
