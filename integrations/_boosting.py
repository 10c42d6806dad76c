"""What the XGBoost and LightGBM callbacks share: their arguments, the choice of metrics,
reporting a round (with the booster as a checkpoint or without), and finding a saved
booster in a checkpoint. The libraries differ only in how they hand over a round's
evaluation results and in how a booster is saved and loaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from tune_core.checkpoint import Checkpoint

Metrics = Union[None, str, Sequence[str], Mapping[str, str]]
Postprocess = Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]


class RoundReporter:
    """The arguments of a ``TuneReportCheckpointCallback``, checked, and how it reports.

    Args:
        owner: the callback's class name, for error messages.
        library: "XGBoost" or "LightGBM", for error messages.
        example_files: model file names to suggest when ``filename`` is not one.
        example_metric: a metric name as the library's results spell it, and
        no_results_hint: what to pass to get results, both for a missing metric's error.
    """

    def __init__(self, owner: str, library: str, *, metrics: Metrics, filename: str,
                 frequency: int, checkpoint_at_end: bool, postprocess: Postprocess,
                 example_files: str, example_metric: str, no_results_hint: str) -> None:
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
            raise ValueError(f"{owner}(frequency={frequency!r}): use an int >= 0 (0: only "
                             f"at the end)")
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{owner}(filename={filename!r}): use a plain file name such as "
                             f"{example_files}")
        if postprocess is not None and not callable(postprocess):
            raise ValueError(f"{owner}(results_postprocessing_fn={postprocess!r})"
                             f": use a function of the result dict, or None")
        self.owner = owner
        self.metrics = _normalize_metrics(metrics, owner, library)
        self.filename = filename
        self.frequency = frequency
        self.checkpoint_at_end = bool(checkpoint_at_end)
        self.postprocess = postprocess
        self._library = library.lower()
        self._example_metric = example_metric
        self._no_results_hint = no_results_hint

    def result(self, flat: Dict[str, Any]) -> Dict[str, Any]:
        """The result to report from a round's flattened evaluation results: the chosen
        metrics (a missing one raises a ``KeyError`` listing those there are), renamed,
        then ``results_postprocessing_fn``."""
        out = dict(flat)
        if self.metrics is not None:
            pairs = (self.metrics.items() if isinstance(self.metrics, dict)
                     else ((m, m) for m in self.metrics))
            out = {}
            for report_name, name in pairs:
                if name not in flat:
                    raise KeyError(
                        f"{self.owner}: metric {name!r} is not among the evaluation results "
                        f"({', '.join(sorted(flat)) or 'none: ' + self._no_results_hint}); "
                        f"names are {self._example_metric}")
                out[report_name] = flat[name]
        return self.postprocess(out) if self.postprocess is not None else out

    def checkpoint_due(self, round_number: int) -> bool:
        """Whether round ``round_number`` (counted from 1) is one of every ``frequency``."""
        return bool(self.frequency) and round_number % self.frequency == 0

    def report(self, result: Dict[str, Any], model: Any = None) -> None:
        """Reports ``result``; with ``model``, its ``save_model(path)`` writes the checkpoint."""
        from tune_core.trainable.session import report

        if model is None:
            report(result)
            return
        with tempfile.TemporaryDirectory(prefix=f"{self._library}_checkpoint_") as directory:
            model.save_model(os.path.join(directory, self.filename))
            # report copies the directory into the trial's storage before it returns
            report(result, checkpoint=Checkpoint.from_directory(directory))


def _normalize_metrics(metrics: Metrics, owner: str,
                       library: str) -> Union[None, List[str], Dict[str, str]]:
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return [metrics]
    if isinstance(metrics, Mapping):
        return dict(metrics)
    names = list(metrics)
    if not all(isinstance(m, str) for m in names):
        raise ValueError(f"{owner}(metrics={metrics!r}): use None, a metric name, a list of "
                         f"names or a dict of {{name to report: {library} name}}")
    return names


@contextlib.contextmanager
def model_file(checkpoint: "Checkpoint | str | os.PathLike[str]",
               filename: str) -> Iterator[str]:
    """The path of ``filename`` in ``checkpoint`` (a ``Checkpoint``, local or remote, or a
    local directory), while the ``with`` block lasts; a missing file raises a
    ``FileNotFoundError`` that lists what the checkpoint holds."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_directory(checkpoint)
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{checkpoint!r} has no {filename!r} (it holds "
                                    f"{sorted(os.listdir(directory))}); pass the filename "
                                    f"the callback saved with")
        yield path
