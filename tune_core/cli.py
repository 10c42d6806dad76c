"""The ``tune`` command: inspect experiments from the shell.

::

    tune list-trials EXPERIMENT_PATH [--sort COL ...] [--desc] [--filter "COL OP VALUE"]
                     [--columns ...] [--result-columns ...] [--limit N] [--output FILE]
    tune list-experiments PROJECT_PATH [same options]
    tune show EXPERIMENT_PATH

``python -m tune_core ...`` is the same command (it works wherever the package is
importable, whichever ``tune`` script comes first on ``PATH``).

The command reads ``experiment_state.json`` (and nothing pickled: ``tuner.pkl`` and
``experiment_state-*.pkl`` are never opened), so inspecting an experiment cannot run
code from it and needs neither the trainable nor Ray. It starts fast: Ray, pandas and
pyarrow are not imported; pyarrow only for a storage URI (``s3://...``), pandas only
for ``--output FILE.pkl``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import posixpath
import re
import shutil
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["main"]

STATE_FILE = "experiment_state.json"  # kept equal to experiment_state.STATE_FILE (tested)
PROG = "tune"

#: Fields tune_core adds to every result; the others are the user's metrics.
AUTO_RESULT_FIELDS = frozenset({
    "done", "training_iteration", "trial_id", "time_total_s", "time_this_iter_s",
    "timestamp", "date", "pid", "hostname", "node_ip", "time_since_restore",
    "iterations_since_restore", "config", "experiment_tag", "episodes_total",
    "timesteps_total", "timesteps_since_restore", "should_checkpoint", "checkpoint_dir_name",
})
#: Trial fields of experiment_state.json that ``--columns`` can name.
TRIAL_FIELDS = ("trial_id", "trial_name", "status", "trainable_name", "dirname",
                "experiment_tag", "num_results", "num_failures", "start_time", "end_time",
                "error_file", "checkpoint", "error")
STATUS_ORDER = ("TERMINATED", "ERROR", "RUNNING", "PENDING", "PAUSED")
MAX_DEFAULT_METRICS = 4
MAX_CELL = 32
_OPS = ("==", "!=", "<=", ">=", "<", ">")
_FILTER_RE = re.compile(r"^\s*(\S+?)\s*(==|!=|<=|>=|<|>)\s*(.*?)\s*$")
_MISSING = object()


class CLIError(Exception):
    """A problem the user can fix; printed as one line, then exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- reading


class _Location:
    """A directory on the local disk or behind a storage URI; reads bytes, lists names."""

    def __init__(self, path: str) -> None:
        from tune_core import storage  # light: pyarrow is imported only by resolve()

        self.shown = storage.redact_uri(path)
        self._remote = storage.is_uri(path) and not path.lower().startswith("file://")
        if self._remote:
            try:
                self._fs, self._path = storage.resolve(path, owner=PROG, name="PATH",
                                                       fs_name="storage_filesystem")
            except (ValueError, OSError) as e:
                raise CLIError(f"{self.shown}: cannot open this storage URI ({_first_line(e)})")
        else:
            if path.lower().startswith("file://"):
                import urllib.parse

                path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
            self._fs, self._path = None, os.path.abspath(os.path.expanduser(path))

    def join(self, *parts: str) -> str:
        return posixpath.join(self._path, *parts) if self._remote \
            else os.path.join(self._path, *parts)

    def child(self, name: str) -> "_Location":
        loc = object.__new__(_Location)
        loc.shown = self.shown.rstrip("/") + "/" + name if not self._remote else \
            _uri_child(self.shown, name)
        loc._remote, loc._fs, loc._path = self._remote, self._fs, self.join(name)
        return loc

    def kind(self) -> str:
        """``"dir"``, ``"file"`` or ``"missing"``."""
        if not self._remote:
            if os.path.isdir(self._path):
                return "dir"
            return "file" if os.path.exists(self._path) else "missing"
        import pyarrow.fs as pafs

        try:
            info = self._fs.get_file_info(self._path)
        except OSError as e:
            raise CLIError(f"{self.shown}: cannot read this storage ({_first_line(e)})")
        if info.type == pafs.FileType.File:
            return "file"
        if info.type == pafs.FileType.Directory:
            return "dir"
        return "missing"

    def read(self, name: str) -> Optional[bytes]:
        """The content of file ``name`` in this directory; None if there is none."""
        if not self._remote:
            try:
                with open(self.join(name), "rb") as f:
                    return f.read()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
        from tune_core import storage

        try:
            return storage.read_bytes(self._fs, self.join(name))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise CLIError(f"{self.shown}: cannot read {name} ({_first_line(e)})")

    def subdirs(self) -> List[str]:
        if not self._remote:
            try:
                return sorted(e.name for e in os.scandir(self._path) if e.is_dir())
            except OSError as e:
                raise CLIError(f"{self.shown}: cannot list this directory ({_first_line(e)})")
        import pyarrow.fs as pafs

        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._path, allow_not_found=True))
        except OSError as e:
            raise CLIError(f"{self.shown}: cannot list this directory ({_first_line(e)})")
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def _uri_child(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_TRIAL_KEYS = ("trial_id", "status", "config", "evaluated_params", "resources",
               "last_result", "num_results")


def _without_metric_analysis(text: str) -> Tuple[str, int]:
    """``text`` with each trial's ``"metric_analysis"`` object cut out, and the number of
    cuts.

    That object (min/max/last of every metric) is about a third of the state and no
    command shows it; cutting it before parsing is what keeps listing 10,000 trials under
    a second. It relies on the order ``trial_to_state`` writes keys in (the object is
    followed by ``"num_results"``); :func:`_parse_state` checks the outcome and parses
    the whole text instead when it is not one cut per well-formed trial.
    """
    start_tok, end_tok = '"metric_analysis": {', '}, "num_results"'
    parts: List[str] = []
    pos = 0
    while True:
        i = text.find(start_tok, pos)
        if i < 0:
            break
        j = text.find(end_tok, i)
        if j < 0:
            break
        parts.append(text[pos:i])
        pos = j + 3  # keep '"num_results"'
    if not parts:
        return text, 0
    parts.append(text[pos:])
    return "".join(parts), len(parts) - 1


def _parse_state(loc: _Location, data: bytes, finished: bool = True,
                 what: str = STATE_FILE) -> Dict[str, Any]:
    try:
        text = data.decode("utf-8")
        state = None
        cut, cuts = _without_metric_analysis(text)
        if cuts:
            try:
                state = json.loads(cut)
            except ValueError:
                pass
            trials = state.get("trials") if isinstance(state, dict) else None
            if not isinstance(trials, list) or len(trials) != cuts or not all(
                    isinstance(t, dict) and all(k in t for k in _TRIAL_KEYS) for t in trials):
                state = None
        if state is None:
            state = json.loads(text)
    except ValueError as e:
        raise CLIError(f"{loc.shown}: {what} is not valid JSON ({_first_line(e)}); "
                       "the experiment state may be damaged")
    if not isinstance(state, dict) or not isinstance(state.get("trials"), list):
        raise CLIError(f"{loc.shown}: {STATE_FILE} holds no list of trials; expected the "
                       "experiment state tune_core writes")
    if finished and state.get("finished_trials"):
        from tune_core.experiment.experiment_state import merge_finished

        state["trials"] = merge_finished(state["trials"], _read_finished(loc, state))
    return state


def _read_finished(loc: _Location, state: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The finished trials, from the file the state names (the prefix it says is its)."""
    from tune_core.experiment.experiment_state import finished_files

    try:
        name, size = finished_files(state)[0]
    except (KeyError, TypeError, ValueError):
        raise CLIError(f"{loc.shown}: {STATE_FILE} names its finished trials' file "
                       "unreadably; the experiment state may be damaged")
    data = loc.read(name)
    if data is None or len(data) < size:
        raise CLIError(f"{loc.shown}: {name} is missing or shorter than {STATE_FILE} says "
                       f"({size} bytes); the experiment state may be damaged")
    lines = [line for line in data[:size].splitlines() if line.strip()]
    # The same parsing as the state's own trials (metric_analysis cut out first).
    text = b'{"trials": [' + b",".join(lines) + b"]}"
    return _parse_state(loc, text, finished=False, what=name)["trials"]


def read_experiment(path: str) -> Tuple[_Location, Dict[str, Any]]:
    """The experiment directory at ``path`` and its JSON state (CLIError if it is none)."""
    loc = _Location(path)
    data = loc.read(STATE_FILE)
    if data is not None:
        return loc, _parse_state(loc, data)
    kind = loc.kind()
    expected = (f"expected an experiment directory holding {STATE_FILE}, "
                "such as ~/tune_results/<experiment name>")
    if kind == "missing":
        raise CLIError(f"{loc.shown}: no such directory; {expected}")
    if kind == "file":
        raise CLIError(f"{loc.shown}: is a file; {expected}")
    hint = ""
    try:
        if any(loc.child(d).read(STATE_FILE) is not None for d in loc.subdirs()[:50]):
            hint = " (it holds experiments: use `tune list-experiments` on it, or pass one " \
                   "of its subdirectories)"
    except CLIError:
        pass
    raise CLIError(f"{loc.shown}: not an experiment ({STATE_FILE} is missing); "
                   f"{expected}{hint}")


# --------------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lookup(d: Any, name: str) -> Any:
    """``d[name]``, or the nested ``d["a"]["b"]`` for ``name == "a/b"``; _MISSING if absent."""
    if not isinstance(d, dict):
        return _MISSING
    if name in d:
        return d[name]
    cur = d
    for part in name.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _error_summary(text: Optional[str]) -> Optional[str]:
    """The line of an error that says what went wrong: its first line, or for a
    traceback the line naming the exception (``ValueError: ...``)."""
    if not text:
        return None
    lines = [ln.rstrip() for ln in str(text).strip().splitlines() if ln.strip()]
    if lines and not lines[0].startswith("Traceback"):
        return lines[0].strip()
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
            return line.strip()
    return lines[-1].strip() if lines else None


def _fmt_time(ts: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ts)


def _fmt_duration(seconds: Any) -> str:
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "" if seconds is None else str(seconds)
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _fmt(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return f"{value:.6g}"
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class Column:
    """A table column: ``name`` (what --sort/--filter/--columns say), how to get a row's
    value, and how to show it."""

    def __init__(self, name: str, get: Callable[[Any], Any],
                 fmt: Callable[[Any], str] = _fmt) -> None:
        self.name = name
        self.get = get
        self.fmt = fmt


# --------------------------------------------------------------------------- trials


def _getter(field: Optional[str], name: str) -> Callable[[Any], Any]:
    """Gets ``row[field][name]`` (``name`` may be nested as ``a/b``); _MISSING if absent."""
    if "/" not in name:
        if field is None:
            return lambda row: row.get(name, _MISSING)

        def get_flat(row: Any) -> Any:
            d = row.get(field)
            return d.get(name, _MISSING) if type(d) is dict else _MISSING
        return get_flat

    def get_nested(row: Any) -> Any:
        return _lookup(row.get(field) if field else row, name)
    return get_nested


def _trial_column(name: str) -> Optional[Column]:
    """The column ``name`` of a trial row: a trial field, ``config/...``, else None."""
    if name == "error":
        return Column(name, lambda t: _error_summary(t.get("error_msg")))
    if name in ("start_time", "end_time"):
        return Column(name, lambda t: t.get(name), lambda v: _fmt_time(v) if v else "")
    if name in TRIAL_FIELDS:
        return Column(name, _getter(None, name))
    if name.startswith("config/"):
        return Column(name, _getter("config", name[len("config/"):]))
    return None


def _result_column(name: str) -> Column:
    return Column(name, _getter("last_result", name))


def _has_values(rows: Sequence[Any], column: Column) -> bool:
    return any(column.get(r) is not _MISSING for r in rows)


def _resolve_trial_column(name: str, rows: Sequence[Any], shown: Sequence[Column],
                          what: str) -> Column:
    """A column by the name a user gave (--sort, --filter): a shown column, a trial
    field, ``config/...``, a result field, or a bare config key."""
    for c in shown:
        if c.name == name:
            return c
    column = _trial_column(name)
    if column is not None and (name in TRIAL_FIELDS or _has_values(rows, column)):
        return column
    for candidate in (_result_column(name), _trial_column(f"config/{name}")):
        if candidate is not None and _has_values(rows, candidate):
            return candidate
    if not rows:
        return _result_column(name)
    raise CLIError(f"{what}: unknown column {name!r}; use a shown column ("
                   f"{', '.join(c.name for c in shown)}), a trial field ("
                   f"{', '.join(TRIAL_FIELDS)}), config/<key> or a result field", code=2)


def _default_trial_columns(trials: Sequence[Dict[str, Any]],
                           metric: Optional[str]) -> List[Column]:
    params: Dict[str, None] = {}
    metrics: Dict[str, None] = {}
    for t in trials:
        for key in (t.get("evaluated_params") or {}):
            params[key] = None
        for key, value in (t.get("last_result") or {}).items():
            if key not in AUTO_RESULT_FIELDS and (_is_number(value) or isinstance(value, bool)):
                metrics[key] = None
    if not params:  # nothing searched: show the config's leaves
        for t in trials[:100]:
            for key in _flat_keys(t.get("config") or {}):
                params[key] = None
    columns = [_trial_column("trial_id"), _trial_column("status")]
    columns += [_trial_column(f"config/{p}") for p in params]
    names = ["training_iteration", "time_total_s"]
    if metric:
        names.append(metric)
    names += [m for m in list(metrics)[:MAX_DEFAULT_METRICS] if m not in names]
    columns += [_result_column(n) for n in names]
    return [c for c in columns if c is not None]


def _flat_keys(d: Dict[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _flat_keys(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}"


def _named_trial_columns(names: Sequence[str], results: Sequence[str],
                         trials: Sequence[Dict[str, Any]]) -> List[Column]:
    columns: List[Column] = []
    for name in names:
        column = _trial_column(name)
        if column is None:
            column = _trial_column(f"config/{name}")
            if trials and not _has_values(trials, column):
                raise CLIError(
                    f"--columns: unknown column {name!r}; use a trial field ("
                    f"{', '.join(TRIAL_FIELDS)}) or a config key such as config/lr "
                    "(result fields go in --result-columns)", code=2)
        columns.append(column)
    columns += [_result_column(name) for name in results]
    return columns


# --------------------------------------------------------------------------- filter, sort


class _Filter:
    def __init__(self, text: str) -> None:
        m = _FILTER_RE.match(text)
        if not m or not m.group(3):
            raise CLIError(f"--filter {text!r}: expected \"COLUMN OP VALUE\" with OP one of "
                           f"{' '.join(_OPS)}, e.g. --filter \"loss < 0.5\"", code=2)
        self.text = text
        self.column_name, self.op, raw = m.group(1), m.group(2), m.group(3)
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        self.raw = raw
        try:
            self.number: Optional[float] = float(raw)
        except ValueError:
            self.number = None
        self.column: Optional[Column] = None

    def matches(self, row: Any) -> bool:
        value = self.column.get(row)
        if value is _MISSING or value is None or (isinstance(value, float) and
                                                  math.isnan(value)):
            return self.op == "!="
        if _is_number(value) and self.number is not None:
            a, b = value, self.number
        else:
            a, b = (value if isinstance(value, str) else _fmt(value)), self.raw
        op = self.op
        return (a == b if op == "==" else a != b if op == "!=" else a < b if op == "<" else
                a <= b if op == "<=" else a > b if op == ">" else a >= b)


def _sort_key(column: Column, desc: bool) -> Callable[[Any], Tuple]:
    # Missing values go last in either direction (the sort is reversed for --desc).
    missing = (0,) if desc else (1,)
    present = 1 if desc else 0

    def key(row: Any) -> Tuple:
        value = column.get(row)
        if value is _MISSING or value is None or (isinstance(value, float) and
                                                  math.isnan(value)):
            return missing
        if _is_number(value):
            return (present, 0, value)
        return (present, 1, value if isinstance(value, str) else _fmt(value))
    return key


def _select(rows: List[Any], args: argparse.Namespace, shown: List[Column],
            resolve: Callable[[str, str], Column]) -> List[Any]:
    filters = [_Filter(text) for text in args.filter or []]
    for f in filters:
        f.column = resolve(f.column_name, f"--filter {f.text!r}")
    sorts = [resolve(name, f"--sort {name}") for name in args.sort or []]
    if filters:
        rows = [r for r in rows if all(f.matches(r) for f in filters)]
    for column in reversed(sorts):
        rows.sort(key=_sort_key(column, args.desc), reverse=args.desc)
    if args.limit is not None:
        rows = rows[:args.limit]
    return rows


# --------------------------------------------------------------------------- output


def _cell(text: str) -> str:
    if len(text) > MAX_CELL:
        text = text[:MAX_CELL - 3] + "..."
    return text.replace("\n", " ") if "\n" in text else text


def render_table(columns: Sequence[Column], rows: Sequence[Any], width: int,
                 keep_first: Sequence[str] = ()) -> Tuple[str, List[str]]:
    """The table as text no wider than ``width`` and the names of the columns left out.

    Columns are kept in the order ``keep_first`` then left to right while they fit; the
    kept ones are shown in their own order. Numbers are right-aligned.
    """
    widths: List[int] = []
    numeric: List[bool] = []
    texts: List[List[str]] = []  # per column
    for c in columns:
        values = [c.get(r) for r in rows]
        fmt = c.fmt
        col = [_cell(fmt(v)) for v in values]
        texts.append(col)
        widths.append(max(len(c.name), max(map(len, col), default=0)))
        numeric.append(all(v is None or v is _MISSING or
                           (type(v) in (int, float)) for v in values))
    order = [i for name in keep_first for i, c in enumerate(columns) if c.name == name]
    order += [i for i in range(len(columns)) if i not in order]
    kept: List[int] = []
    used = 0
    for i in order:
        need = widths[i] + (2 if kept else 0)
        if used + need <= width or not kept:
            kept.append(i)
            used += need
    kept.sort()
    dropped = [columns[i].name for i in range(len(columns)) if i not in kept]
    aligned = [[t.rjust(widths[i]) for t in texts[i]] if numeric[i] else
               [t.ljust(widths[i]) for t in texts[i]] for i in kept]
    head = "  ".join(columns[i].name.rjust(widths[i]) if numeric[i] else
                     columns[i].name.ljust(widths[i]) for i in kept).rstrip()
    out = [head, "  ".join("-" * widths[i] for i in kept)]
    out += ["  ".join(cells).rstrip() for cells in zip(*aligned)]
    return "\n".join(out), dropped


def _terminal_width() -> int:
    return max(20, shutil.get_terminal_size((120, 24)).columns)


def _write_output(path: str, columns: Sequence[Column], rows: Sequence[Any]) -> None:
    """Every selected column (none dropped for width), raw values."""
    records = [[_raw(c.get(r)) for c in columns] for r in rows]
    names = [c.name for c in columns]
    lower = path.lower()
    try:
        if lower.endswith(".csv"):
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(names)
                for rec in records:
                    writer.writerow(["" if v is None else
                                     json.dumps(v) if isinstance(v, (dict, list)) else v
                                     for v in rec])
        elif lower.endswith(".pkl"):
            import pandas as pd  # deferred: only --output FILE.pkl needs pandas

            pd.DataFrame.from_records(records, columns=names).to_pickle(path)
        else:
            raise CLIError(f"--output {path!r}: expected a file name ending in .csv or .pkl",
                           code=2)
    except OSError as e:
        raise CLIError(f"--output {path!r}: cannot write it ({_first_line(e)})")


def _raw(value: Any) -> Any:
    return None if value is _MISSING else value


def _emit(args: argparse.Namespace, columns: List[Column], rows: List[Any], total: int,
          noun: str, header: str, keep_first: Sequence[str]) -> None:
    out = sys.stdout
    out.write(header + "\n")
    if rows:
        width = _terminal_width()
        table, dropped = render_table(columns, rows, width, keep_first)
        out.write(table + "\n")
        if dropped:
            out.write(f"Columns dropped to fit the terminal width ({width}): "
                      f"{', '.join(dropped)}. Widen the terminal, set COLUMNS, or choose "
                      "columns with --columns/--result-columns.\n")
    shown = f"{len(rows)} of {total} {noun}" if len(rows) != total else f"{total} {noun}"
    out.write(f"Showing {shown}.\n")
    if args.output:
        _write_output(args.output, columns, rows)
        out.write(f"Wrote {len(rows)} rows, {len(columns)} columns to {args.output}\n")


def _status_summary(counts: Dict[str, int]) -> str:
    names = [s for s in STATUS_ORDER if counts.get(s)] + \
        sorted(s for s in counts if s not in STATUS_ORDER and counts[s])
    return ", ".join(f"{counts[s]} {s}" for s in names) or "no trials"


def _count_statuses(trials: Sequence[Dict[str, Any]]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for t in trials:
        s = str(t.get("status"))
        counts[s] = counts.get(s, 0) + 1
    return counts


def _metric_mode(state: Dict[str, Any], args: argparse.Namespace
                 ) -> Tuple[Optional[str], Optional[str]]:
    # experiment_state.json may carry "metric"/"mode" (TuneConfig's); the flags win.
    metric = args.metric or state.get("metric")
    mode = args.mode or state.get("mode")
    return metric, (mode if mode in ("min", "max") else None)


def _best_trial(trials: Sequence[Dict[str, Any]], metric: Optional[str], mode: Optional[str]
                ) -> Tuple[Optional[Dict[str, Any]], Any]:
    if not metric or not mode:
        return None, None
    best, best_value = None, None
    for t in trials:
        value = _lookup(t.get("last_result"), metric)
        if not _is_number(value) or not math.isfinite(value):
            continue
        if best is None or (value < best_value if mode == "min" else value > best_value):
            best, best_value = t, value
    return best, best_value


# --------------------------------------------------------------------------- commands


def cmd_list_trials(args: argparse.Namespace) -> int:
    loc, state = read_experiment(args.path)
    trials: List[Dict[str, Any]] = [t for t in state["trials"] if isinstance(t, dict)]
    metric, _ = _metric_mode(state, args)
    if args.columns or args.result_columns:
        columns = _named_trial_columns(args.columns or ["trial_id", "status"],
                                       args.result_columns or [], trials)
    else:
        columns = _default_trial_columns(trials, metric)

    def resolve(name: str, what: str) -> Column:
        return _resolve_trial_column(name, trials, columns, what)

    rows = _select(list(trials), args, columns, resolve)
    name = state.get("experiment_name") or os.path.basename(loc.shown.rstrip("/"))
    header = f"Experiment {name} ({loc.shown}): {len(trials)} trials: " \
             f"{_status_summary(_count_statuses(trials))}"
    keep = ["trial_id", "status"] + ([metric] if metric else [])
    _emit(args, columns, rows, len(trials), "trials", header, keep)
    return 0


def _experiment_row(name: str, state: Dict[str, Any], args: argparse.Namespace
                    ) -> Dict[str, Any]:
    trials = [t for t in state.get("trials", []) if isinstance(t, dict)]
    counts = _count_statuses(trials)
    starts = [t["start_time"] for t in trials if _is_number(t.get("start_time"))]
    ends = [t["end_time"] for t in trials if _is_number(t.get("end_time"))]
    start = min(starts) if starts else None
    end = max(ends + ([state["timestamp"]] if _is_number(state.get("timestamp")) and
                      not state.get("finished") else []), default=None)
    metric, mode = _metric_mode(state, args)
    best, best_value = _best_trial(trials, metric, mode)
    status = "finished" if state.get("finished") else \
        "interrupted" if state.get("interrupted") else "unfinished"
    row: Dict[str, Any] = {
        "experiment": name, "status": status, "trials": len(trials),
        "start_time": start,
        "duration": (end - start) if start is not None and end is not None else None,
        "search_alg": state.get("search_alg"), "scheduler": state.get("scheduler"),
        "metric": metric, "mode": mode, "best": best_value,
        "best_trial": best.get("trial_id") if best else None,
        "_best": best,
    }
    for s, n in counts.items():
        row[s] = n
    return row


def cmd_list_experiments(args: argparse.Namespace) -> int:
    loc = _Location(args.path)
    kind = loc.kind() if loc.read(STATE_FILE) is None else "experiment"
    expected = f"expected a directory whose subdirectories are experiments (holding {STATE_FILE})"
    if kind == "missing":
        raise CLIError(f"{loc.shown}: no such directory; {expected}")
    if kind == "file":
        raise CLIError(f"{loc.shown}: is a file; {expected}")
    if kind == "experiment":
        raise CLIError(f"{loc.shown}: is one experiment, not a directory of experiments; "
                       f"use `tune list-trials` or `tune show` on it")
    rows: List[Dict[str, Any]] = []
    for name in loc.subdirs():
        child = loc.child(name)
        data = child.read(STATE_FILE)
        if data is None:
            continue
        try:
            rows.append(_experiment_row(name, _parse_state(child, data), args))
        except CLIError as e:
            sys.stderr.write(f"{PROG}: skipping {name}: {e}\n")
    if not rows:
        raise CLIError(f"{loc.shown}: holds no experiments; {expected}")
    statuses = [s for s in STATUS_ORDER if any(s in r for r in rows)]
    statuses += sorted({k for r in rows for k in r if k.isupper() and k not in statuses})
    fields: Dict[str, Column] = {}
    for f in ("experiment", "status", "trials"):
        fields[f] = Column(f, lambda r, f=f: r.get(f, _MISSING))
    for s in statuses:
        fields[s] = Column(s, lambda r, s=s: r.get(s, 0))
    fields["start_time"] = Column("start_time", lambda r: r.get("start_time"),
                                  lambda v: _fmt_time(v) if v else "")
    fields["duration"] = Column("duration", lambda r: r.get("duration"), _fmt_duration)
    for f in ("search_alg", "scheduler", "metric", "mode", "best", "best_trial"):
        fields[f] = Column(f, lambda r, f=f: r.get(f))
    if args.columns:
        columns = []
        for name in args.columns:
            if name not in fields:
                raise CLIError(f"--columns: unknown column {name!r}; list-experiments has "
                               f"{', '.join(fields)}", code=2)
            columns.append(fields[name])
    else:
        columns = [c for n, c in fields.items()
                   if n not in ("mode",) and (n not in ("metric", "best", "best_trial") or
                                              any(r.get("metric") for r in rows))]
    # --result-columns: fields of the best trial's last result (needs a metric and mode)
    for name in args.result_columns or []:
        columns.append(Column(name, lambda r, name=name: _lookup(
            (r["_best"] or {}).get("last_result"), name) if r["_best"] else _MISSING))

    def resolve(name: str, what: str) -> Column:
        for c in columns:
            if c.name == name:
                return c
        if name in fields:
            return fields[name]
        raise CLIError(f"{what}: unknown column {name!r}; list-experiments has "
                       f"{', '.join(fields)}", code=2)

    total = len(rows)
    rows = _select(rows, args, columns, resolve)
    header = f"Project {loc.shown}: {total} experiments"
    _emit(args, columns, rows, total, "experiments", header, ["experiment", "trials", "best"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    loc, state = read_experiment(args.path)
    trials = [t for t in state["trials"] if isinstance(t, dict)]
    counts = _count_statuses(trials)
    metric, mode = _metric_mode(state, args)
    w = sys.stdout.write
    name = state.get("experiment_name") or os.path.basename(loc.shown.rstrip("/"))
    w(f"Experiment:  {name}\n")
    w(f"Path:        {loc.shown}\n")
    if state.get("trainable_name"):
        w(f"Trainable:   {state['trainable_name']}\n")
    status = "finished" if state.get("finished") else \
        "interrupted (resume it with tune.Tuner.restore)" if state.get("interrupted") else \
        "unfinished (running, or stopped before the end)"
    w(f"Status:      {status}\n")
    starts = [t["start_time"] for t in trials if _is_number(t.get("start_time"))]
    ends = [t["end_time"] for t in trials if _is_number(t.get("end_time"))]
    if starts:
        w(f"Started:     {_fmt_time(min(starts))}\n")
        if ends:
            w(f"Duration:    {_fmt_duration(max(ends) - min(starts))}\n")
    if _is_number(state.get("timestamp")):
        w(f"State saved: {_fmt_time(state['timestamp'])}\n")
    w(f"Searcher:    {state.get('search_alg') or 'unknown (not in ' + STATE_FILE + ')'}\n")
    w(f"Scheduler:   {state.get('scheduler') or 'unknown (not in ' + STATE_FILE + ')'}\n")
    if metric and mode:
        w(f"Metric:      {metric} ({mode})\n")
    else:
        w(f"Metric:      unknown ({STATE_FILE} does not record TuneConfig's metric and "
          "mode; pass --metric NAME --mode min|max)\n")
    w(f"Trials:      {len(trials)}: {_status_summary(counts)}\n")

    w("\nSearch space:\n")
    space = state.get("param_space")
    if isinstance(space, dict) and space:
        for key, value in _flat_items(space):
            if isinstance(value, dict) and list(value) == ["grid_search"]:
                value = f"grid_search({_fmt(value['grid_search'])})"
            w(f"  {key}: {_fmt(value)}\n")
    else:
        w(f"  (not recorded in {STATE_FILE}; the values the trials were given:)\n")
        for key, desc in _observed_space(trials):
            w(f"  {key}: {desc}\n")

    best, best_value = _best_trial(trials, metric, mode)
    if best is not None:
        w(f"\nBest trial:  {best.get('trial_id')} ({metric} = {_fmt(best_value)}, "
          f"status {best.get('status')}, "
          f"{_fmt(_lookup(best.get('last_result'), 'training_iteration'))} iterations)\n")
        w(f"  dir: {best.get('dirname')}\n")
        for key, value in _flat_items(best.get("config") or {}):
            w(f"  config/{key}: {_fmt(value)}\n")
    elif metric and mode:
        w(f"\nBest trial:  none (no trial reported a number for {metric})\n")

    errored = [t for t in trials if t.get("status") == "ERROR" or t.get("error_msg")]
    if errored:
        w(f"\nErrors ({len(errored)} {'trial' if len(errored) == 1 else 'trials'}):\n")
        for t in errored[:args.max_errors]:
            where = f" ({t['dirname']}/{t['error_file']})" if t.get("error_file") and \
                t.get("dirname") else ""
            w(f"  {t.get('trial_id')}{where}: {_error_summary(t.get('error_msg')) or '?'}\n")
            lines = [ln for ln in str(t.get("error_msg") or "").splitlines() if ln.strip()]
            for line in lines[:args.error_lines]:
                w(f"      {line}\n")
        if len(errored) > args.max_errors:
            w(f"  ... and {len(errored) - args.max_errors} more "
              "(tune list-trials PATH --filter \"status == ERROR\" --columns trial_id error)\n")
    return 0


def _flat_items(d: Dict[str, Any], prefix: str = "") -> Iterable[Tuple[str, Any]]:
    for key, value in d.items():
        if isinstance(value, dict) and value and list(value) != ["grid_search"]:
            yield from _flat_items(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def _observed_space(trials: Sequence[Dict[str, Any]]) -> List[Tuple[str, str]]:
    values: Dict[str, List[Any]] = {}
    for t in trials:
        for key, value in (t.get("evaluated_params") or {}).items():
            values.setdefault(key, []).append(value)
    out = []
    for key, vals in values.items():
        nums = [v for v in vals if type(v) in (int, float)]
        distinct = {v if type(v) in (int, float, str) else
                    json.dumps(v, sort_keys=True, default=str) for v in vals}
        if nums and len(nums) == len(vals):
            kind = "int" if all(isinstance(v, int) for v in nums) else "float"
            out.append((key, f"{kind} in [{_fmt(min(nums))}, {_fmt(max(nums))}], "
                             f"{len(distinct)} distinct values"))
        else:
            shown = sorted(str(v) for v in distinct)[:6]
            more = ", ..." if len(distinct) > 6 else ""
            out.append((key, f"{len(distinct)} distinct values: {', '.join(shown)}{more}"))
    if not out:
        out.append(("(none)", "no trial has searched parameters"))
    return out


# --------------------------------------------------------------------------- argparse


def _add_table_options(p: argparse.ArgumentParser, noun: str) -> None:
    p.add_argument("--sort", nargs="+", metavar="COL",
                   help="sort by these columns (the first one most significant)")
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument("--filter", action="append", metavar='"COL OP VALUE"',
                   help="keep rows where COL OP VALUE holds; OP is one of == != < <= > >= "
                        "(numbers compare as numbers); repeat to combine with AND")
    p.add_argument("--limit", type=_positive_int, metavar="N",
                   help=f"show at most N {noun} (after filtering and sorting)")
    p.add_argument("--output", metavar="FILE",
                   help="also write the selected rows with all their columns to FILE.csv "
                        "or FILE.pkl (a pandas DataFrame)")
    p.add_argument("--metric", help="the metric to rank by (default: the one in the "
                                    "experiment state, if it records one)")
    p.add_argument("--mode", choices=("min", "max"), help="whether --metric is minimised "
                                                          "or maximised")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


_EXAMPLES = """examples:
  tune list-trials ~/tune_results/my_exp --sort loss --limit 10
  tune list-trials ~/tune_results/my_exp --filter "status == ERROR" --columns trial_id error
  tune list-trials s3://bucket/prefix/my_exp --result-columns loss --output trials.csv
  tune list-experiments ~/tune_results --metric loss --mode min
  tune show ~/tune_results/my_exp --metric loss --mode min

`tune COMMAND --help` describes a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect tune_core experiments (reads JSON only; never "
                               "unpickles). Also runs as `python -m tune_core`.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EXAMPLES)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list-trials", help="a table of an experiment's trials",
                       description="A table of the trials of the experiment in "
                                   "EXPERIMENT_PATH (a local path or a URI such as "
                                   "s3://bucket/prefix/experiment).")
    p.add_argument("path", metavar="EXPERIMENT_PATH")
    _add_table_options(p, "trials")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="trial fields and config keys to show: " + ", ".join(TRIAL_FIELDS) +
                        ", config/<key> (nested keys as config/a/b)")
    p.add_argument("--result-columns", nargs="+", metavar="COL",
                   help="fields of each trial's last result to show (nested as a/b)")
    p.set_defaults(func=cmd_list_trials)

    p = sub.add_parser("list-experiments", help="a table of the experiments in a directory",
                       description="One row per experiment directory under PROJECT_PATH "
                                   "(a local path or a URI).")
    p.add_argument("path", metavar="PROJECT_PATH")
    _add_table_options(p, "experiments")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="columns to show: experiment, status, trials, the trial statuses "
                        "(TERMINATED, ERROR, ...), start_time, duration, search_alg, "
                        "scheduler, metric, mode, best, best_trial")
    p.add_argument("--result-columns", nargs="+", metavar="COL",
                   help="fields of the best trial's last result (needs a metric and mode)")
    p.set_defaults(func=cmd_list_experiments)

    p = sub.add_parser("show", help="a summary of one experiment",
                       description="Search space, searcher, scheduler, trial counts, the "
                                   "best trial and the errors of one experiment.")
    p.add_argument("path", metavar="EXPERIMENT_PATH")
    p.add_argument("--metric", help="the metric to rank by (default: the one in the "
                                    "experiment state, if it records one)")
    p.add_argument("--mode", choices=("min", "max"))
    p.add_argument("--max-errors", type=_positive_int, default=5, metavar="N",
                   help="show at most N failed trials (default 5)")
    p.add_argument("--error-lines", type=_positive_int, default=0, metavar="N",
                   help="also show the first N lines of each error (default 0: only the "
                        "line naming the exception)")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``tune`` command; returns its exit code (2: bad usage, 1: bad path)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        sys.stderr.write(f"{PROG} {args.command}: error: {e}\n")
        return e.code
    except BrokenPipeError:  # `tune list-trials ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
