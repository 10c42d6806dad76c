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
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from tune_core.checkpoint import Checkpoint

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback", "get_model"]

try:
    from xgboost.callback import TrainingCallback as _TrainingCallback
    _IMPORT_ERROR: Optional[ImportError] = None
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    _TrainingCallback = object  # type: ignore[assignment,misc]
    _IMPORT_ERROR = _exc

_DEFAULT_FILENAME = "model.ubj"  # UBJSON: XGBoost's own compact, portable model format

Metrics = Union[None, str, Sequence[str], Mapping[str, str]]


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


def _select(flat: Dict[str, Any], metrics: Union[None, List[str], Dict[str, str]],
            owner: str) -> Dict[str, Any]:
    if metrics is None:
        return dict(flat)
    pairs = metrics.items() if isinstance(metrics, dict) else ((m, m) for m in metrics)
    out = {}
    for report_name, name in pairs:
        if name not in flat:
            raise KeyError(f"{owner}: metric {name!r} is not among the evaluation results "
                           f"({', '.join(sorted(flat)) or 'none: pass evals=[...]'}); names "
                           f"are '<eval name>-<metric>', e.g. 'eval-logloss'")
        out[report_name] = flat[name]
    return out


def _normalize_metrics(metrics: Metrics, owner: str) -> Union[None, List[str], Dict[str, str]]:
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return [metrics]
    if isinstance(metrics, Mapping):
        return dict(metrics)
    names = list(metrics)
    if not all(isinstance(m, str) for m in names):
        raise ValueError(f"{owner}(metrics={metrics!r}): use None, a metric name, a list of "
                         f"names or a dict of {{name to report: XGBoost name}}")
    return names


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
                 results_postprocessing_fn: Optional[
                     Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
        name = type(self).__name__
        if _IMPORT_ERROR is not None:
            raise _import_error(name) from _IMPORT_ERROR
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
            raise ValueError(f"{name}(frequency={frequency!r}): use an int >= 0 (0: only "
                             f"at the end)")
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{name}(filename={filename!r}): use a plain file name such as "
                             f"'model.ubj' or 'model.json'")
        if results_postprocessing_fn is not None and not callable(results_postprocessing_fn):
            raise ValueError(f"{name}(results_postprocessing_fn={results_postprocessing_fn!r})"
                             f": use a function of the result dict, or None")
        self._metrics = _normalize_metrics(metrics, name)
        self._filename = filename
        self._frequency = frequency
        self._checkpoint_at_end = bool(checkpoint_at_end)
        self._postprocess = results_postprocessing_fn
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
        result = _select(_flatten(evals_log), self._metrics, type(self).__name__)
        if self._postprocess is not None:
            result = self._postprocess(result)
        if self._frequency and (epoch + 1) % self._frequency == 0:
            self._report(result, model)
        elif self._checkpoint_at_end:
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
        from tune_core.trainable.session import report

        # xgboost.cv hands callbacks its folds packed together, which cannot be saved:
        # there is no single booster to checkpoint, so its results come without one.
        if model is None or not callable(getattr(model, "save_model", None)):
            report(result)
            return
        with tempfile.TemporaryDirectory(prefix="xgboost_checkpoint_") as directory:
            model.save_model(os.path.join(directory, self._filename))
            # report copies the directory into the trial's storage before it returns
            report(result, checkpoint=Checkpoint.from_directory(directory))


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports XGBoost's evaluation results after each boosting round, without checkpoints.

    Args:
        metrics: as for :class:`TuneReportCheckpointCallback`.
        results_postprocessing_fn: as for :class:`TuneReportCheckpointCallback`.
    """

    def __init__(self, metrics: Metrics = None, results_postprocessing_fn: Optional[
            Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
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
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_directory(checkpoint)
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{checkpoint!r} has no {filename!r} (it holds "
                                    f"{sorted(os.listdir(directory))}); pass the filename "
                                    f"the callback saved with")
        booster = xgboost.Booster()
        booster.load_model(path)
    return booster
