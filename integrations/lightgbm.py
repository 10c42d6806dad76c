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
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from tune_core.checkpoint import Checkpoint

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback", "get_model"]

_DEFAULT_FILENAME = "model.txt"  # LightGBM's text model format

Metrics = Union[None, str, Sequence[str], Mapping[str, str]]


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
                         f"names or a dict of {{name to report: LightGBM name}}")
    return names


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
                 results_postprocessing_fn: Optional[
                     Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
        name = type(self).__name__
        _import_lightgbm(name)
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
            raise ValueError(f"{name}(frequency={frequency!r}): use an int >= 0 (0: only "
                             f"at the end)")
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{name}(filename={filename!r}): use a plain file name such as "
                             f"'model.txt'")
        if results_postprocessing_fn is not None and not callable(results_postprocessing_fn):
            raise ValueError(f"{name}(results_postprocessing_fn={results_postprocessing_fn!r})"
                             f": use a function of the result dict, or None")
        self._metrics = _normalize_metrics(metrics, name)
        self._filename = filename
        self._frequency = frequency
        self._checkpoint_at_end = bool(checkpoint_at_end)
        self._postprocess = results_postprocessing_fn

    @classmethod
    def get_model(cls, checkpoint: Checkpoint, filename: str = _DEFAULT_FILENAME) -> Any:
        """The ``lightgbm.Booster`` in a checkpoint this callback reported."""
        return get_model(checkpoint, filename)

    def __call__(self, env: Any) -> None:
        """LightGBM's callback protocol: called after each boosting round."""
        flat = _flatten(env.evaluation_result_list)
        result = self._select(flat)
        if self._postprocess is not None:
            result = self._postprocess(result)
        last = env.iteration == env.end_iteration - 1
        if (self._checkpoint_at_end and last) or \
                (self._frequency and (env.iteration + 1) % self._frequency == 0):
            self._report(result, env.model)
        else:
            self._report(result, None)

    def _select(self, flat: Dict[str, Any]) -> Dict[str, Any]:
        if self._metrics is None:
            return flat
        pairs = (self._metrics.items() if isinstance(self._metrics, dict)
                 else ((m, m) for m in self._metrics))
        out = {}
        for report_name, name in pairs:
            if name not in flat:
                raise KeyError(
                    f"{type(self).__name__}: metric {name!r} is not among the evaluation "
                    f"results ({', '.join(sorted(flat)) or 'none: pass valid_sets=[...]'}); "
                    f"names are '<valid name>-<metric>', e.g. 'eval-binary_logloss'")
            out[report_name] = flat[name]
        return out

    def _report(self, result: Dict[str, Any], model: Any) -> None:
        from tune_core.trainable.session import report

        if model is None:
            report(result)
            return
        with tempfile.TemporaryDirectory(prefix="lightgbm_checkpoint_") as directory:
            # lightgbm.cv hands a CVBooster: save_model writes all its folds' boosters
            model.save_model(os.path.join(directory, self._filename))
            # report copies the directory into the trial's storage before it returns
            report(result, checkpoint=Checkpoint.from_directory(directory))


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports LightGBM's evaluation results after each boosting round, without checkpoints.

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
    """Load the ``lightgbm.Booster`` that :class:`TuneReportCheckpointCallback` saved.

    Args:
        checkpoint: a ``tune_core.Checkpoint`` (local or remote) or a local directory.
        filename: the ``filename`` the callback was created with.
    """
    lightgbm = _import_lightgbm("get_model")
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_directory(checkpoint)
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{checkpoint!r} has no {filename!r} (it holds "
                                    f"{sorted(os.listdir(directory))}); pass the filename "
                                    f"the callback saved with")
        return lightgbm.Booster(model_file=path)
