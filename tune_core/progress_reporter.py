"""Console output: periodic status tables, per-trial lines and the final summary.

The controller drives one :class:`ProgressReporterCallback`. Users choose what it prints
with ``RunConfig(verbose=...)`` and, as in Ray Tune, can pass
``RunConfig(progress_reporter=CLIReporter(...))`` to pick columns, row limits and the
table interval.

What each verbosity prints (Ray Tune's meaning of the levels):

* ``0``: nothing at all from this module.
* ``1``: two lines when the experiment starts, a status table when it is due, and the
  final table and summary.
* ``2``: also one line per trial start, completion, retry and error (with the error's
  headline and the path of its ``error.txt``).
* ``3``: also one line per result, at most one per trial per second; the next line of
  that trial says how many were not shown.

When a status table is due (defaults; a ``CLIReporter``'s ``max_report_frequency``
replaces them):

* the first table 5 s after the start (sooner if the interval is shorter), so a run of a
  few seconds prints only its final summary and a long one shows life quickly;
* then every 30 s at verbose 1 and every 10 s at verbose 2 and 3 (the per-trial lines
  carry the detail in between);
* and only if something changed since the last table (a trial was added, changed state
  or reported). An identical table is never printed twice, nor repeated as the final
  table. This differs from Ray Tune, which reprints unchanged tables.

Checking whether a table is due costs O(1) per controller step; the trials are only
looked at once the interval has passed (then at most once a second until something
changed).
"""

from __future__ import annotations

import datetime
import heapq
import math
import numbers
import shutil
import sys
import time
from typing import (Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, TextIO, Tuple, Union)

from tune_core.callback import Callback
from tune_core.experiment.trial import Trial, TrialStatus

__all__ = ["ProgressReporter", "CLIReporter", "ProgressReporterCallback",
           "DEFAULT_TABLE_INTERVAL_S"]

#: Seconds between status tables by verbosity, when no reporter sets ``max_report_frequency``.
DEFAULT_TABLE_INTERVAL_S: Dict[int, float] = {1: 30.0, 2: 10.0, 3: 10.0}
# The first table comes this soon after the start (or after the interval, if shorter).
_FIRST_TABLE_AFTER_S = 5.0
# When a table is due but nothing changed, look again this often (not every step).
_RECHECK_S = 1.0
# At verbose 3, at most one result line per trial per this many seconds.
_RESULT_LINE_INTERVAL_S = 1.0
_TERMINAL_FALLBACK = (120, 40)

_S = TrialStatus
# Order of the counts and of the table's groups; PENDING last, as the least informative.
_STATUS_ORDER = (_S.RUNNING, _S.PAUSED, _S.TERMINATED, _S.ERROR, _S.PENDING)
# Who gets rows first when they are limited.
_FILL_ORDER = (_S.RUNNING, _S.TERMINATED, _S.ERROR, _S.PAUSED, _S.PENDING)

# Default metric columns and their short headers (Ray Tune's).
_DEFAULT_METRICS = (("training_iteration", "iter"), ("time_total_s", "total time (s)"))
# Fields the framework adds to every result: never guessed as user metrics.
_AUTO_RESULT_KEYS = frozenset({
    "training_iteration", "time_total_s", "time_this_iter_s", "timestamp", "date",
    "hostname", "node_ip", "pid", "trial_id", "experiment_id", "experiment_tag",
    "time_since_restore", "iterations_since_restore", "timesteps_since_restore", "done",
    "config", "should_checkpoint", "checkpoint_dir_name", "timesteps_total",
    "episodes_total", "warmup_time",
})

ColumnSpec = Union[None, Sequence[str], Mapping[str, str]]


# --- formatting helpers ------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fmt_value(value: Any) -> str:
    """Compact text for a table cell: floats with 5 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.5g}"
    return str(value)


def _fmt_duration(seconds: Optional[float]) -> str:
    """``H:MM:SS``."""
    if seconds is None or not _is_number(seconds) or math.isnan(seconds):
        return "?"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _fmt_dict(values: Mapping[str, Any], limit: int = 500) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            text = _fmt_dict(value, limit)
        elif _is_number(value) or isinstance(value, bool) or value is None:
            text = _fmt_value(value) if value is not None else "None"
        else:
            text = repr(value)
        parts.append(f"{key!r}: {text}")
    return _clip("{" + ", ".join(parts) + "}", limit)


def _clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending with ``...`` when cut."""
    if len(text) <= limit:
        return text
    if limit <= 3:
        return text[:limit]
    return text[:limit - 3] + "..."


def _clip_left(text: str, limit: int) -> str:
    """Cut from the left (``...hidden_size``): the end of a nested key is what tells."""
    if len(text) <= limit:
        return text
    if limit <= 3:
        return text[-limit:]
    return "..." + text[-(limit - 3):]


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    """``values[key]``, or the nested value for a ``"a/b"`` path; None when absent."""
    if key in values:
        return values[key]
    if "/" not in key:
        return None
    current: Any = values
    for part in key.split("/"):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _param_value(trial: Trial, key: str) -> Any:
    if key in trial.evaluated_params:
        return trial.evaluated_params[key]
    return _lookup(trial.config, key)


def _metric_value(trial: Trial, key: str) -> Any:
    return _lookup(trial.last_result, key) if trial.last_result else None


def _error_headline(trial: Trial) -> str:
    """The line of a trial's error a person reads first: the exception, not ``Traceback``."""
    text = trial.error_msg or ""
    if not text and trial.error is not None:
        text = f"{type(trial.error).__name__}: {trial.error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return lines[0]


def _count_by_status(trials: Iterable[Trial]) -> Dict[TrialStatus, int]:
    counts: Dict[TrialStatus, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return counts


def _fmt_counts(counts: Mapping[TrialStatus, int], sep: str) -> str:
    return sep.join(f"{counts[s]} {s}" for s in _STATUS_ORDER if counts.get(s))


def _better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than


def _best_trial(trials: Iterable[Trial], metric: Optional[str],
                mode: Optional[str]) -> Optional[Tuple[Trial, float]]:
    """The trial whose last result is best, with that value; None without metric/mode."""
    if not metric or mode not in ("min", "max"):
        return None
    best: Optional[Tuple[Trial, float]] = None
    for trial in trials:
        value = _metric_value(trial, metric)
        if not _is_number(value) or math.isnan(value):
            continue
        if best is None or _better(float(value), best[1], mode):  # type: ignore[arg-type]
            best = (trial, float(value))
    return best


def _fmt_used(amount: float) -> str:
    if amount == 0:
        return "0"
    return f"{amount:.1f}" if float(amount).is_integer() else f"{amount:.4g}"


def _resources_line(trials: Iterable[Trial], total: Optional[Mapping[str, float]]) -> str:
    """``Logical resource usage: 2.0/2 CPUs, 0/0 GPUs``: RUNNING trials against the cluster."""
    used: Dict[str, float] = {}
    for trial in trials:
        if trial.status is _S.RUNNING:
            for key, amount in trial.placement_group_factory.required_resources.items():
                used[key] = used.get(key, 0.0) + amount
    total = dict(total or {})

    def of(key: str) -> str:
        if not total:
            return "?"
        return _fmt_value(float(total.get(key, 0)))

    parts = [f"{_fmt_used(used.get('CPU', 0.0))}/{of('CPU')} CPUs",
             f"{_fmt_used(used.get('GPU', 0.0))}/{of('GPU')} GPUs"]
    for key in sorted(used):
        if key in ("CPU", "GPU", "memory", "object_store_memory") or used[key] <= 0:
            continue
        parts.append(f"{_fmt_used(used[key])}/{of(key)} {key}")
    return "Logical resource usage: " + ", ".join(parts)


def _progress_line(trials: Sequence[Trial], counts: Mapping[TrialStatus, int],
                   total_samples: Optional[int], elapsed: float,
                   time_budget_s: Optional[float]) -> str:
    """``Finished 30 of 100 trials (elapsed 0:01:23, time budget left 0:03:00)``."""
    finished = counts.get(_S.TERMINATED, 0) + counts.get(_S.ERROR, 0)
    of = str(total_samples) if total_samples is not None else "?"
    extra = f"elapsed {_fmt_duration(elapsed)}"
    if time_budget_s is not None:
        extra += f", time budget left {_fmt_duration(max(0.0, time_budget_s - elapsed))}"
    return f"Finished {finished} of {of} trials ({extra})"


def _terminal_width() -> int:
    return shutil.get_terminal_size(fallback=_TERMINAL_FALLBACK).columns


# --- column specifications ---------------------------------------------------------------------
def _column_spec(owner: str, name: str, spec: ColumnSpec) -> Optional[Dict[str, str]]:
    """A list or dict of columns to an ordered {key: header}; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in spec.items()):
            raise ValueError(f"{owner}: `{name}` as a dict must map column keys to display "
                             f"names (both strings); got {spec!r}.")
        return dict(spec)
    if isinstance(spec, str) or not isinstance(spec, (list, tuple)) or \
            not all(isinstance(k, str) and k for k in spec):
        raise ValueError(f"{owner}: `{name}` must be None, a list of keys or a dict of key "
                         f"to display name; got {spec!r}.")
    return {key: key for key in spec}


def _add_column(owner: str, columns: Dict[str, str], kind: str, key: str,
                representation: Optional[str]) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{owner}: the {kind} column must be a non-empty string; got {key!r}.")
    if key in columns:
        raise ValueError(f"{owner}: the {kind} column {key!r} is already shown.")
    columns[key] = representation or key


class _Column(NamedTuple):
    key: str
    header: str
    kind: str  # "name", "status", "param" or "metric"
    priority: int  # lower is kept first when the terminal is narrow


# --- reporters ---------------------------------------------------------------------------------
class ProgressReporter:
    """Base class for custom progress reporters (Ray Tune's interface).

    Pass an instance as ``RunConfig(progress_reporter=...)``. It replaces the periodic
    status tables: :meth:`should_report` is asked after every controller step (keep it
    cheap), and :meth:`report` is called when it says yes, and once more with
    ``done=True`` at the end. Per-trial lines (``verbose >= 2``) and the final summary
    still come from the framework.
    """

    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None,
              **kwargs: Any) -> None:
        """Called once before the first trial; does nothing by default.

        Args:
            start_time: when the experiment started (``time.time()``).
            total_samples: the number of trials, or None when unbounded.
            metric: the metric the experiment optimizes, if any.
            mode: ``"min"`` or ``"max"``, if known.
            **kwargs: further information, for forward compatibility.
        """

    def should_report(self, trials: List[Trial], done: bool = False) -> bool:
        """Whether :meth:`report` should be called now.

        Args:
            trials: all trials.
            done: True for the last call, at the end of the experiment.
        """
        raise NotImplementedError

    def report(self, trials: List[Trial], done: bool, *sys_info: str) -> None:
        """Show the progress of ``trials``.

        Args:
            trials: all trials.
            done: True for the last report.
            *sys_info: lines about the run (resource usage, trials finished).
        """
        raise NotImplementedError


class CLIReporter(ProgressReporter):
    """Options for the console's status table (Ray Tune's ``CLIReporter``).

    Pass it as ``RunConfig(progress_reporter=CLIReporter(...))``. The table has one row
    per trial: its name, status, the sampled parameters and metric columns. Rows are
    limited: running trials first, then the best finished ones (when ``metric`` and
    ``mode`` are known), errored, paused and pending ones, with a line counting the
    rest by state. Columns that do not fit the terminal are named in a line below.

    Args:
        metric_columns: metrics to show in addition to ``training_iteration``,
            ``time_total_s`` and the experiment's metric. A list of result keys (nested
            keys as ``"a/b"``) or a dict of key to display name. When None, up to
            ``infer_limit`` numeric metrics of the first result are shown.
        parameter_columns: parameters to show, as a list or a dict of key to display
            name. Keys are names of the sampled parameters (``"a/b"`` for nested ones)
            or any path in the config. Default: all sampled parameters.
        max_report_frequency: the least number of seconds between two tables. Tables
            are also never repeated when nothing changed.
        max_progress_rows: the most trial rows in a table (the rest is counted).
        max_error_rows: the most errored trials listed below a table.
        sort_by_metric: sort finished trials best first even when all rows fit.
        print_intermediate_tables: False shows only the final table; None or True
            show periodic tables at every verbosity above 0.
        metric: the metric that picks the current best trial. Defaults to
            ``TuneConfig(metric=...)``; when both are given the reporter's wins.
        mode: ``"min"`` or ``"max"`` for ``metric``.
        total_samples: the number of trials, shown as "Finished N of total".
            Set by the framework; kept for compatibility.
        max_column_length: longer cells and headers are cut to this many characters
            (trial names never are).
        infer_limit: how many metrics to guess when ``metric_columns`` is None.
    """

    def __init__(
        self,
        metric_columns: ColumnSpec = None,
        parameter_columns: ColumnSpec = None,
        max_report_frequency: float = 5,
        max_progress_rows: int = 20,
        max_error_rows: int = 20,
        sort_by_metric: bool = False,
        print_intermediate_tables: Optional[bool] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        *,
        total_samples: Optional[int] = None,
        max_column_length: int = 20,
        infer_limit: int = 3,
    ) -> None:
        owner = "CLIReporter"
        self._metric_columns = _column_spec(owner, "metric_columns", metric_columns)
        self._parameter_columns = _column_spec(owner, "parameter_columns", parameter_columns)
        if not _is_number(max_report_frequency) or math.isnan(max_report_frequency) or \
                max_report_frequency < 0:
            raise ValueError(f"{owner}: `max_report_frequency` must be a number of seconds "
                             f">= 0; got {max_report_frequency!r}.")
        for name, value, minimum in (("max_progress_rows", max_progress_rows, 1),
                                     ("max_error_rows", max_error_rows, 0),
                                     ("max_column_length", max_column_length, 4),
                                     ("infer_limit", infer_limit, 0)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or \
                    value < minimum:
                raise ValueError(f"{owner}: `{name}` must be an integer >= {minimum}; "
                                 f"got {value!r}.")
        if print_intermediate_tables not in (None, True, False):
            raise ValueError(f"{owner}: `print_intermediate_tables` must be None, True or "
                             f"False; got {print_intermediate_tables!r}.")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"{owner}: `metric` must be None or a non-empty string; "
                             f"got {metric!r}.")
        if mode not in (None, "min", "max"):
            raise ValueError(f'{owner}: `mode` must be "min", "max" or None; got {mode!r}.')
        if total_samples is not None and (not isinstance(total_samples, numbers.Integral)
                                          or total_samples < 0):
            raise ValueError(f"{owner}: `total_samples` must be None or an integer >= 0; "
                             f"got {total_samples!r}.")
        self.max_report_frequency = float(max_report_frequency)
        self.max_progress_rows = int(max_progress_rows)
        self.max_error_rows = int(max_error_rows)
        self.max_column_length = int(max_column_length)
        self.infer_limit = int(infer_limit)
        self.sort_by_metric = bool(sort_by_metric)
        self.print_intermediate_tables = print_intermediate_tables
        self._metric = metric
        self._mode = mode
        self._total_samples = total_samples
        self._experiment_name = ""
        self._experiment_path = ""
        self._time_budget_s: Optional[float] = None
        self._total_resources: Dict[str, float] = {}
        self._clock: Callable[[], float] = time.time
        self._start_time = time.time()
        self._last_report_time = float("-inf")

    # --- Ray Tune's configuration methods ----------------------------------------------------
    @property
    def metric(self) -> Optional[str]:
        """The metric that picks the best trial, if known."""
        return self._metric

    @property
    def mode(self) -> Optional[str]:
        """``"min"`` or ``"max"``, if known."""
        return self._mode

    def add_metric_column(self, metric: str, representation: Optional[str] = None) -> None:
        """Show one more metric.

        Args:
            metric: a result key (``"a/b"`` for a nested one).
            representation: the column's header; defaults to ``metric``.
        """
        if self._metric_columns is None:
            self._metric_columns = {}
        _add_column("CLIReporter.add_metric_column", self._metric_columns, "metric",
                    metric, representation)

    def add_parameter_column(self, parameter: str,
                             representation: Optional[str] = None) -> None:
        """Show one more parameter (from then on, only the listed parameters are shown).

        Args:
            parameter: a sampled parameter's name or a config path ``"a/b"``.
            representation: the column's header; defaults to ``parameter``.
        """
        if self._parameter_columns is None:
            self._parameter_columns = {}
        _add_column("CLIReporter.add_parameter_column", self._parameter_columns,
                    "parameter", parameter, representation)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str]) -> bool:
        """Fill in the experiment's metric and mode where the reporter has none.

        Unlike Ray Tune this never raises when both name a metric: the reporter's wins.
        """
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    def set_total_samples(self, total_samples: Optional[int]) -> None:
        """Set the number of trials shown as "Finished N of total"."""
        self._total_samples = total_samples

    def set_start_time(self, timestamp: Optional[float] = None) -> None:
        """Set when the experiment started, on this reporter's clock (now if None)."""
        self._start_time = self._clock() if timestamp is None else timestamp

    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None,
              **kwargs: Any) -> None:
        """Called by the framework before the first trial.

        Args:
            start_time: when the experiment started, on ``clock`` if one is given.
            total_samples: the number of trials, or None when unbounded.
            metric: the experiment's metric (used if the reporter has none).
            mode: the experiment's mode (used if the reporter has none).
            **kwargs: ``clock``, ``experiment_name``, ``experiment_path``,
                ``time_budget_s`` and ``total_resources``, when known.
        """
        clock = kwargs.get("clock")
        if clock is not None:
            self._clock = clock
        self.set_start_time(start_time)
        self.set_total_samples(total_samples)
        self.set_search_properties(metric, mode)
        self._experiment_name = str(kwargs.get("experiment_name") or self._experiment_name)
        self._experiment_path = str(kwargs.get("experiment_path") or self._experiment_path)
        if kwargs.get("time_budget_s") is not None:
            self._time_budget_s = float(kwargs["time_budget_s"])
        if kwargs.get("total_resources"):
            self._total_resources = dict(kwargs["total_resources"])

    def should_report(self, trials: List[Trial], done: bool = False) -> bool:
        """True once ``max_report_frequency`` seconds passed since the last True, or at the end."""
        now = self._clock()
        if done or now - self._last_report_time >= self.max_report_frequency:
            self._last_report_time = now
            return True
        return False

    def report(self, trials: List[Trial], done: bool, *sys_info: str) -> None:
        """Print the status table of ``trials`` to standard output."""
        self._print(self._progress_str(trials, done, *sys_info))

    def _print(self, msg: str) -> None:
        sys.stdout.write(msg + "\n")
        sys.stdout.flush()

    # --- rendering ---------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return max(0.0, self._clock() - self._start_time)

    def _progress_str(self, trials: Sequence[Trial], done: bool = False, *sys_info: str,
                      width: Optional[int] = None) -> str:
        """The status block as one string (no trailing newline)."""
        return "\n".join(self._status_lines(trials, sys_info=sys_info,
                                            width=width or _terminal_width()))

    def _status_lines(self, trials: Sequence[Trial], *, sys_info: Sequence[str] = (),
                      width: int) -> List[str]:
        counts = _count_by_status(trials)
        elapsed = self._elapsed()
        title = f"Trial status: {_fmt_counts(counts, ' | ') or '0 trials'}"
        if self._experiment_name:
            title += f" (experiment {self._experiment_name})"
        lines = [title,
                 f"Current time: {datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
                 _resources_line(trials, self._total_resources)]
        lines.extend(sys_info)
        best = _best_trial(trials, self._metric, self._mode)
        if best is not None:
            trial, value = best
            lines.append(f"Current best trial: {trial.trial_name} with "
                         f"{self._metric}={_fmt_value(value)} and "
                         f"params={_fmt_dict(trial.evaluated_params)}")
        lines.extend(self._table_lines(trials, width))
        lines.append(_progress_line(trials, counts, self._total_samples, elapsed,
                                    self._time_budget_s))
        lines.extend(self._error_lines(trials, counts.get(_S.ERROR, 0), width))
        return lines

    def _error_lines(self, trials: Sequence[Trial], num_errors: int, width: int) -> List[str]:
        if not num_errors:
            return []
        lines = [f"Errored trials ({num_errors}):"]
        shown = 0
        for trial in trials:
            if trial.status is not _S.ERROR:
                continue
            if shown >= self.max_error_rows:
                break
            shown += 1
            path = trial.error_file or "(no error file)"
            head = f"  {trial.trial_name}: "
            room = max(20, width - len(head) - len(path) - 3)
            lines.append(f"{head}{_clip(_error_headline(trial), room)} - {path}")
        if num_errors > shown:
            lines.append(f"  ... {num_errors - shown} more errored trials not listed")
        return lines

    # columns
    def _param_columns(self, trials: Sequence[Trial]) -> List[Tuple[str, str]]:
        if self._parameter_columns is not None:
            return list(self._parameter_columns.items())
        seen: Dict[str, str] = {}
        for trial in trials:
            for key in trial.evaluated_params:
                if key not in seen:
                    seen[key] = key
        return list(seen.items())

    def _metric_columns_for(self, trials: Sequence[Trial]) -> List[Tuple[str, str, bool]]:
        """(key, header, important) for each metric column, defaults first."""
        columns: Dict[str, Tuple[str, bool]] = {k: (h, False) for k, h in _DEFAULT_METRICS}
        if self._metric:
            columns[self._metric] = (self._metric, True)
        if self._metric_columns is not None:
            for key, header in self._metric_columns.items():
                columns[key] = (header, True)
        elif self.infer_limit:
            for key in self._infer_metrics(trials):
                columns.setdefault(key, (key, False))
        return [(k, h, important) for k, (h, important) in columns.items()]

    def _infer_metrics(self, trials: Sequence[Trial]) -> List[str]:
        for trial in trials:
            if trial.last_result:
                return [k for k, v in trial.last_result.items()
                        if k not in _AUTO_RESULT_KEYS and _is_number(v)][:self.infer_limit]
        return []

    def _result_metric_keys(self, result: Mapping[str, Any]) -> List[str]:
        """The metrics named in a one-line result: the metric, chosen or guessed columns."""
        keys: List[str] = []
        if self._metric:
            keys.append(self._metric)
        if self._metric_columns is not None:
            keys.extend(self._metric_columns)
        elif self.infer_limit:
            keys.extend([k for k, v in result.items()
                         if k not in _AUTO_RESULT_KEYS and _is_number(v)][:self.infer_limit])
        return list(dict.fromkeys(keys))

    # rows
    def _select_rows(self, trials: Sequence[Trial]) -> Tuple[List[Trial], Dict[TrialStatus, int]]:
        """The rows to show, grouped by state, and how many of each state are hidden."""
        groups: Dict[TrialStatus, List[Trial]] = {s: [] for s in _STATUS_ORDER}
        for trial in trials:
            groups.setdefault(trial.status, []).append(trial)
        budget = self.max_progress_rows
        ranked = self._metric is not None and self._mode in ("min", "max")
        limited = len(trials) > budget
        take = {s: len(g) for s, g in groups.items()}
        if limited:
            nonempty = [s for s in _FILL_ORDER if groups.get(s)]
            # Running trials are what one watches: other states get a token share first.
            share = max(1, budget // (4 * max(1, len(nonempty))))
            remaining = budget
            for s in nonempty:  # every state gets a few rows, in order of interest ...
                take[s] = min(len(groups[s]), share, remaining)
                remaining -= take[s]
            for s in nonempty:  # ... then the rest goes to the most interesting
                extra = min(remaining, len(groups[s]) - take[s])
                take[s] += extra
                remaining -= extra
        rows: List[Trial] = []
        hidden: Dict[TrialStatus, int] = {}
        for s in _STATUS_ORDER:
            group = groups.get(s, [])
            k = take.get(s, 0)
            if s is _S.TERMINATED and ranked and (limited or self.sort_by_metric):
                chosen = self._best_first(group, k)
            elif s is _S.TERMINATED and k < len(group):
                chosen = group[len(group) - k:]  # the most recently created finished ones
            else:
                chosen = group[:k]
            rows.extend(chosen)
            if len(group) > k:
                hidden[s] = len(group) - k
        return rows, hidden

    def _best_first(self, group: List[Trial], k: int) -> List[Trial]:
        metric, sign = self._metric or "", 1.0 if self._mode == "min" else -1.0

        def key(indexed: Tuple[int, Trial]) -> Tuple[int, float, int]:
            value = _metric_value(indexed[1], metric)
            if not _is_number(value) or math.isnan(value):
                return (1, 0.0, indexed[0])  # no value: after all ranked trials
            return (0, sign * float(value), indexed[0])

        return [t for _, t in heapq.nsmallest(k, enumerate(group), key=key)]

    # table
    def _table_lines(self, trials: Sequence[Trial], width: int) -> List[str]:
        if not trials:
            return []
        rows, hidden = self._select_rows(trials)
        limit = self.max_column_length
        columns = [_Column("trial_name", "Trial name", "name", 0),
                   _Column("status", "status", "status", 0)]
        for i, (key, header) in enumerate(self._param_columns(trials)):
            columns.append(_Column(key, _clip_left(header, limit), "param", 200 + i))
        for i, (key, header, important) in enumerate(self._metric_columns_for(trials)):
            if key == self._metric:
                priority = 1
            elif important:
                priority = 100 + i
            elif key == "training_iteration":
                priority = 300
            else:
                priority = 400 + i
            columns.append(_Column(key, _clip_left(header, limit), "metric", priority))

        cells: List[List[str]] = []
        right: List[bool] = []
        kept: List[_Column] = []
        for col in columns:
            if col.kind == "name":
                raw: List[Any] = [t.trial_name for t in rows]
                texts = [str(v) for v in raw]
            elif col.kind == "status":
                raw = [str(t.status) for t in rows]
                texts = list(raw)
            else:
                getter = _param_value if col.kind == "param" else _metric_value
                raw = [getter(t, col.key) for t in rows]
                if col.kind == "metric" and all(v is None for v in raw):
                    continue  # nothing reported yet: not a column worth a "not shown" line
                texts = [_clip(_fmt_value(v), limit) for v in raw]
            kept.append(col)
            cells.append(texts)
            right.append(col.kind in ("param", "metric") and
                         all(v is None or _is_number(v) for v in raw))

        widths = [max([len(col.header)] + [len(t) for t in texts])
                  for col, texts in zip(kept, cells)]
        # Keep columns by priority while they fit; show them in their natural order.
        order = sorted(range(len(kept)), key=lambda i: kept[i].priority)
        chosen, used, dropped = set(), -2, []
        for i in order:
            if kept[i].priority == 0 or used + 2 + widths[i] <= width:
                chosen.add(i)
                used += 2 + widths[i]
            else:
                dropped.append(i)

        def line(parts: List[str]) -> str:
            return "  ".join(parts).rstrip()

        shown = [i for i in range(len(kept)) if i in chosen]
        out = [line([kept[i].header.rjust(widths[i]) if right[i] else
                     kept[i].header.ljust(widths[i]) for i in shown]),
               line(["-" * widths[i] for i in shown])]
        for r in range(len(rows)):
            out.append(line([cells[i][r].rjust(widths[i]) if right[i] else
                             cells[i][r].ljust(widths[i]) for i in shown]))
        if hidden:
            more = sum(hidden.values())
            detail = ", ".join(f"{hidden[s]} {s}" for s in _STATUS_ORDER if hidden.get(s))
            out.append(f"... {more} more trial{'s' if more != 1 else ''} not shown ({detail})")
        if dropped:
            names = ", ".join(kept[i].header for i in sorted(dropped))
            n = len(dropped)
            out.append(f"{n} column{'s' if n != 1 else ''} not shown: {names} "
                       "(terminal too narrow)")
        return out


# --- the callback the controller drives --------------------------------------------------------
class ProgressReporterCallback(Callback):
    """Prints the experiment's progress to the console (see the module's docstring).

    Args:
        verbose: 0 (silent), 1 (status tables and summary), 2 (also a line per trial
            start, completion and error) or 3 (also a line per result, throttled).
        reporter: a :class:`CLIReporter` to configure the table, or any
            :class:`ProgressReporter` to replace it; None uses a ``CLIReporter`` with
            the interval for ``verbose`` from :data:`DEFAULT_TABLE_INTERVAL_S`.
        metric: the experiment's metric, for the best trial (a reporter's own wins).
        mode: ``"min"`` or ``"max"``.
        out: where to write; defaults to ``sys.stdout`` at the time of writing.
        clock: seconds, monotonic; injected so tests run in virtual time.
        max_width: the table's width in characters; defaults to the terminal's width
            (120 when unknown), read at each table.
    """

    def __init__(self, verbose: int = 1, reporter: Optional[ProgressReporter] = None,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 out: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic,
                 max_width: Optional[int] = None) -> None:
        try:
            level = int(verbose)
        except (TypeError, ValueError):
            level = -1
        if isinstance(verbose, bool) or level not in (0, 1, 2, 3):
            raise ValueError(f"verbose must be 0 (silent), 1 (status tables), 2 (also trial "
                             f"starts and ends) or 3 (also results); got {verbose!r}.")
        if reporter is not None and not isinstance(reporter, ProgressReporter):
            raise ValueError("progress_reporter must be a tune_core.progress_reporter."
                             f"CLIReporter or ProgressReporter; got {reporter!r}.")
        if mode not in (None, "min", "max"):
            raise ValueError(f'mode must be "min", "max" or None; got {mode!r}.')
        self.verbose = level
        self._out = out
        self._clock = clock
        self._max_width = max_width
        if reporter is None:
            reporter = CLIReporter(max_report_frequency=DEFAULT_TABLE_INTERVAL_S.get(level, 30.0))
        self._reporter = reporter
        self._cli = reporter if isinstance(reporter, CLIReporter) else None
        # A CLIReporter subclass that overrides how it reports is treated as a custom one.
        self._custom = self._cli is None or any(
            getattr(type(reporter), name) is not getattr(CLIReporter, name)
            for name in ("report", "should_report", "_print"))
        if self._cli is not None:
            self._cli.set_search_properties(metric, mode)
            metric, mode = self._cli.metric, self._cli.mode
        self._metric = metric
        self._mode = mode
        tables = (self._cli.print_intermediate_tables if self._cli is not None else None)
        self._periodic = level >= 1 and tables is not False
        self._interval = (self._cli.max_report_frequency if self._cli is not None
                          else DEFAULT_TABLE_INTERVAL_S.get(level, 30.0))
        self._start = clock()
        self._next_check = self._start + min(self._interval, _FIRST_TABLE_AFTER_S)
        self._total_samples: Optional[int] = None
        self._experiment_path = ""
        self._time_budget_s: Optional[float] = None
        self._total_resources: Dict[str, float] = {}
        # Change detection: the trials' (status, number of results) when the last table was
        # printed, compared only once a table is due (so a step stays O(1) otherwise).
        self._printed_state: Optional[Tuple[Tuple[Any, int], ...]] = None
        self._last_result_line: Dict[str, float] = {}
        self._skipped_results: Dict[str, int] = {}

    # --- output ------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        out = self._out if self._out is not None else sys.stdout
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()

    def _width(self) -> int:
        return self._max_width or _terminal_width()

    def _sys_info(self, trials: Sequence[Trial]) -> Tuple[str, ...]:
        counts = _count_by_status(trials)
        return (_resources_line(trials, self._total_resources),
                _progress_line(trials, counts, self._total_samples,
                               self._clock() - self._start, self._time_budget_s))

    @staticmethod
    def _state(trials: Sequence[Trial]) -> Tuple[Tuple[Any, int], ...]:
        return tuple((t.status, t.num_results) for t in trials)

    def _unchanged(self, trials: Sequence[Trial]) -> bool:
        return self._state(trials) == self._printed_state

    def _remember(self, trials: Sequence[Trial]) -> None:
        self._printed_state = self._state(trials)

    def _print_table(self, trials: Sequence[Trial]) -> None:
        assert self._cli is not None
        lines = self._cli._status_lines(trials, width=self._width())
        self._write("\n" + "\n".join(lines))
        self._remember(trials)

    # --- hooks -------------------------------------------------------------------------------
    def setup(self, stop: Optional[Any] = None, num_samples: Optional[int] = None,
              total_num_samples: Optional[int] = None, **info: Any) -> None:
        """Record what the experiment is and print its first two lines (verbose >= 1)."""
        self._start = self._clock()
        self._next_check = self._start + min(self._interval, _FIRST_TABLE_AFTER_S)
        self._total_samples = total_num_samples
        self._experiment_path = str(info.get("experiment_path") or "")
        self._time_budget_s = info.get("time_budget_s")
        self._total_resources = dict(info.get("total_resources") or {})
        name = str(info.get("experiment_name") or "")
        if self._cli is not None:
            self._cli.setup(start_time=self._start, total_samples=total_num_samples,
                            metric=self._metric, mode=self._mode, clock=self._clock,
                            experiment_name=name, experiment_path=self._experiment_path,
                            time_budget_s=self._time_budget_s,
                            total_resources=self._total_resources)
        else:
            self._reporter.setup(start_time=time.time(), total_samples=total_num_samples,
                                 metric=self._metric, mode=self._mode)
        if self.verbose < 1:
            return
        trials = (f"{total_num_samples} trial{'s' if total_num_samples != 1 else ''}"
                  if total_num_samples is not None else "an unbounded number of trials")
        parts = [trials]
        if info.get("search_alg_name"):
            parts.append(f"search algorithm {info['search_alg_name']}")
        if info.get("scheduler_name"):
            parts.append(f"scheduler {info['scheduler_name']}")
        if self._time_budget_s is not None:
            parts.append(f"time budget {_fmt_duration(self._time_budget_s)}")
        text = f"Tune experiment {name or '(unnamed)'}: " + ", ".join(parts)
        if self._experiment_path:
            text += f"\nResults are written to {self._experiment_path}"
        self._write(text)

    def on_step_end(self, iteration: int, trials: List[Trial], **info: Any) -> None:
        """Print a status table when one is due and something changed."""
        if not self._periodic:
            return
        if self._custom:
            if self._reporter.should_report(trials, done=False):
                self._reporter.report(trials, False, *self._sys_info(trials))
            return
        now = self._clock()
        if now < self._next_check:
            return
        if not trials or self._unchanged(trials):
            self._next_check = now + min(self._interval, _RECHECK_S)
            return
        self._print_table(trials)
        self._next_check = now + self._interval

    def on_trial_start(self, iteration: int, trials: List[Trial], trial: Trial,
                       **info: Any) -> None:
        """At verbose >= 2: ``Trial X started with lr=0.1, ...``."""
        if self.verbose < 2:
            return
        text = f"Trial {trial.trial_name} started"
        if trial.evaluated_params:
            params = ", ".join(f"{k}={(_fmt_value(v) if _is_number(v) else repr(v))}"
                               for k, v in trial.evaluated_params.items())
            text += " with " + params
        self._write(_clip(text, max(self._width(), 80) * 2))

    def on_trial_result(self, iteration: int, trials: List[Trial], trial: Trial,
                        result: Dict[str, Any], **info: Any) -> None:
        """At verbose 3: one line per result, at most one per trial per second."""
        if self.verbose < 3:
            return
        now = self._clock()
        last = self._last_result_line.get(trial.trial_id)
        if last is not None and now - last < _RESULT_LINE_INTERVAL_S:
            self._skipped_results[trial.trial_id] = \
                self._skipped_results.get(trial.trial_id, 0) + 1
            return
        self._last_result_line[trial.trial_id] = now
        skipped = self._skipped_results.pop(trial.trial_id, 0)
        self._write(self._result_line(trial, result, skipped))

    def _result_keys(self, result: Mapping[str, Any]) -> List[str]:
        if self._cli is not None:
            return self._cli._result_metric_keys(result)
        if self._metric:
            return [self._metric]
        return [k for k, v in result.items() if k not in _AUTO_RESULT_KEYS and
                _is_number(v)][:3]

    def _result_line(self, trial: Trial, result: Mapping[str, Any], skipped: int) -> str:
        it = result.get("training_iteration", trial.num_results)
        parts = [f"{k}={_fmt_value(_lookup(result, k))}" for k in self._result_keys(result)
                 if _lookup(result, k) is not None]
        text = f"Trial {trial.trial_name} result {_fmt_value(it)}"
        if parts:
            text += ": " + ", ".join(parts)
        if _is_number(result.get("time_total_s")):
            text += f" (total time {_fmt_duration(result['time_total_s'])})"
        if skipped:
            text += f" [{skipped} earlier result{'s' if skipped != 1 else ''} not shown]"
        return text

    def _ended(self, trial: Trial) -> Tuple[str, str]:
        result = trial.last_result or {}
        it = result.get("training_iteration", trial.num_results)
        iters = f"{_fmt_value(it)} iteration{'s' if it != 1 else ''}"
        seconds = result.get("time_total_s")
        if not _is_number(seconds) and trial.start_time and trial.end_time:
            seconds = trial.end_time - trial.start_time
        return iters, (f" in {_fmt_duration(seconds)}" if _is_number(seconds) else "")

    def _forget(self, trial: Trial) -> None:
        self._last_result_line.pop(trial.trial_id, None)
        self._skipped_results.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration: int, trials: List[Trial], trial: Trial,
                          **info: Any) -> None:
        """At verbose >= 2: ``Trial X completed after 10 iterations in 0:00:12: loss=...``."""
        self._forget(trial)
        if self.verbose < 2:
            return
        iters, took = self._ended(trial)
        text = f"Trial {trial.trial_name} completed after {iters}{took}"
        keys = self._result_keys(trial.last_result) if trial.last_result else []
        parts = [f"{k}={_fmt_value(_metric_value(trial, k))}" for k in keys
                 if _metric_value(trial, k) is not None]
        if parts:
            text += ": " + ", ".join(parts)
        self._write(text)

    def on_trial_recover(self, iteration: int, trials: List[Trial], trial: Trial,
                         **info: Any) -> None:
        """At verbose >= 2: the failure and that the trial will be retried."""
        if self.verbose < 2:
            return
        text = (f"Trial {trial.trial_name} failed (failure {trial.num_failures}) and will "
                f"be retried: {_error_headline(trial)}")
        if trial.error_file:
            text += f"\n  Error file: {trial.error_file}"
        self._write(text)

    def on_trial_error(self, iteration: int, trials: List[Trial], trial: Trial,
                       **info: Any) -> None:
        """At verbose >= 1: ``Trial X errored after 3 iterations: ...``, the user's
        traceback, and the path of error.txt."""
        self._forget(trial)
        if self.verbose < 1:
            return
        iters, took = self._ended(trial)
        text = f"Trial {trial.trial_name} errored after {iters}{took}: {_error_headline(trial)}"
        if trial.error_msg and "\n" in trial.error_msg.strip():
            text += "\n" + "\n".join("  " + line for line in
                                     trial.error_msg.rstrip().splitlines())
        text += f"\n  Error file: {trial.error_file or '(none written)'}"
        self._write(text)

    def on_experiment_end(self, trials: List[Trial], **info: Any) -> None:
        """At verbose >= 1: the final table (unless just printed) and the summary."""
        if self.verbose < 1:
            return
        if self._custom:
            if self._reporter.should_report(trials, done=True):
                self._reporter.report(trials, True, *self._sys_info(trials))
            table: List[str] = []
        elif self._unchanged(trials):
            table = []  # the same table is the last thing printed: don't repeat it
        else:
            assert self._cli is not None
            table = [""] + self._cli._status_lines(trials, width=self._width())
            self._remember(trials)
        self._write("\n".join(table + [""] + self._summary_lines(trials)))

    def _summary_lines(self, trials: Sequence[Trial]) -> List[str]:
        counts = _count_by_status(trials)
        n = len(trials)
        detail = _fmt_counts(counts, ", ")
        lines = [f"Tune finished: {n} trial{'s' if n != 1 else ''}"
                 f"{f' ({detail})' if detail else ''} in "
                 f"{_fmt_duration(self._clock() - self._start)}"]
        best = _best_trial(trials, self._metric, self._mode)
        if best is not None:
            trial, value = best
            lines.append(f"Best trial: {trial.trial_name} with {self._metric}="
                         f"{_fmt_value(value)} ({self._mode}) and config="
                         f"{_fmt_dict(trial.config)}")
        elif self._metric and self._mode and n:
            lines.append(f"Best trial: none; no trial reported {self._metric!r}")
        if self._experiment_path:
            lines.append(f"Results: {self._experiment_path}")
        errored = [t for t in trials if t.status is _S.ERROR]
        if errored:
            limit = self._cli.max_error_rows if self._cli is not None else 20
            lines.append(f"{len(errored)} trial{'s' if len(errored) != 1 else ''} errored; "
                         "error files:")
            for trial in errored[:limit]:
                lines.append(f"  {trial.trial_name}: {trial.error_file or '(none written)'}")
            if len(errored) > limit:
                lines.append(f"  ... {len(errored) - limit} more errored trials not listed")
        return lines
