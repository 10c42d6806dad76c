import csv
import json
import logging
import math
import os
import pickle

import numpy as np
import pytest

import tune_core.logger as logger_pkg
from tune_core._util import flatten_dict
from tune_core.experiment.trial import Trial
from tune_core.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_trial(tmp_path, trial_id="t1", config=None, dirname=None):
    return Trial(trial_id, config if config is not None else {"lr": 0.1},
                 experiment_path=str(tmp_path), dirname=dirname or trial_id)


def run(cb, trial, results, end=True, failed=False):
    cb.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for i, result in enumerate(results):
        cb.on_trial_result(iteration=i + 1, trials=[trial], trial=trial, result=result)
    if end:
        hook = cb.on_trial_error if failed else cb.on_trial_complete
        hook(iteration=len(results) + 1, trials=[trial], trial=trial)


def read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_public_names():
    assert sorted(logger_pkg.__all__) == sorted(
        ["LoggerCallback", "JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback",
         "pretty_print"])
    for name in logger_pkg.__all__:
        assert getattr(logger_pkg, name).__doc__


def test_pretty_print_shows_the_result_without_its_config():
    import numpy as np

    text = logger_pkg.pretty_print({"loss": np.float32(0.5), "training_iteration": 3,
                                    "config": {"lr": 0.1}, "nested": {"a": 1},
                                    "gone": None, "pid": 7}, exclude={"pid"})
    assert text == "loss: 0.5\nnested:\n  a: 1\ntraining_iteration: 3\n"


# --- flatten_dict --------------------------------------------------------------------------------

def test_flatten_dict():
    nested = {"a": {"b": 1, "c": {"d": 2}}, "e": [1, {"f": 2}], "g": {}, "h": 3}
    assert flatten_dict(nested) == {"a/b": 1, "a/c/d": 2, "e": [1, {"f": 2}], "h": 3}
    assert nested["a"] == {"b": 1, "c": {"d": 2}}  # input untouched
    assert flatten_dict({"a": {"b": 1}}, delimiter=".") == {"a.b": 1}
    flat = {"x": 1}
    out = flatten_dict(flat)
    assert out == flat and out is not flat


# --- LoggerCallback routing ----------------------------------------------------------------------

def test_logger_callback_routes_hooks(tmp_path):
    calls = []

    class Recorder(LoggerCallback):
        def log_trial_start(self, trial):
            calls.append(("start", trial.trial_id))

        def log_trial_restore(self, trial):
            calls.append(("restore", trial.trial_id))

        def log_trial_save(self, trial):
            calls.append(("save", trial.trial_id))

        def log_trial_result(self, iteration, trial, result):
            calls.append(("result", iteration, result["x"]))

        def log_trial_end(self, trial, failed=False):
            calls.append(("end", trial.trial_id, failed))

    cb, trial = Recorder(), make_trial(tmp_path)
    kw = {"iteration": 3, "trials": [trial], "trial": trial}
    cb.on_trial_start(**kw)
    cb.on_trial_restore(**kw)
    cb.on_trial_save(**kw)
    cb.on_trial_result(result={"x": 7}, **kw)
    cb.on_trial_complete(**kw)
    cb.on_trial_error(**kw)
    assert calls == [("start", "t1"), ("restore", "t1"), ("save", "t1"), ("result", 3, 7),
                     ("end", "t1", False), ("end", "t1", True)]


# --- JsonLoggerCallback --------------------------------------------------------------------------

def test_json_logger_writes_params_and_results_for_interleaved_trials(tmp_path):
    cb = JsonLoggerCallback()
    t1 = make_trial(tmp_path, "t1", {"lr": 0.1, "layers": [32, 32], "opt": {"name": "adam"}})
    t2 = make_trial(tmp_path, "t2", {"lr": 0.01})
    for t in (t1, t2):
        cb.on_trial_start(iteration=0, trials=[t1, t2], trial=t)
    for i in range(1, 4):
        for t in (t1, t2):
            cb.on_trial_result(iteration=i, trials=[t1, t2], trial=t,
                               result={"training_iteration": i, "loss": 1.0 / i,
                                       "config": t.config})
    cb.on_trial_complete(iteration=4, trials=[t1, t2], trial=t1)
    cb.on_trial_error(iteration=4, trials=[t1, t2], trial=t2)

    with open(tmp_path / "t1" / "params.json") as f:
        assert json.load(f) == {"lr": 0.1, "layers": [32, 32], "opt": {"name": "adam"}}
    for t in (t1, t2):
        lines = read_json_lines(tmp_path / t.trial_id / "result.json")
        assert [r["training_iteration"] for r in lines] == [1, 2, 3]
        assert lines[2]["loss"] == pytest.approx(1 / 3)
        assert lines[0]["config"] == json.loads(json.dumps(t.config))
    assert len(cb._files) == 0  # every handle closed


def test_json_logger_never_fails_on_odd_values(tmp_path):
    class Opaque:
        def __repr__(self):
            return "Opaque()"

    cyclic = {"name": "loop"}
    cyclic["self"] = cyclic
    config = {"model": Opaque(), "fn": len, "np": np.float32(0.5), "set": {1}, (1, 2): "tuple key"}
    cb, trial = JsonLoggerCallback(), make_trial(tmp_path, config=config)
    run(cb, trial, [
        {"obj": Opaque(), "nan": float("nan"), "inf": float("inf"), "arr": np.arange(3),
         "i64": np.int64(4), "bool": np.bool_(True)},
        {"cyclic": cyclic, 5: "int key"},
    ])
    with open(tmp_path / "t1" / "params.json") as f:
        params = json.load(f)
    assert params["model"] == "Opaque()"
    assert params["np"] == 0.5
    assert params["fn"] == repr(len)
    assert params["(1, 2)"] == "tuple key"
    first, second = read_json_lines(tmp_path / "t1" / "result.json")
    assert first["obj"] == "Opaque()"
    assert math.isnan(first["nan"]) and first["inf"] == math.inf
    assert first["arr"] == [0, 1, 2] and first["i64"] == 4 and first["bool"] is True
    assert second["cyclic"]["name"] == "loop" and isinstance(second["cyclic"]["self"], str)
    assert second["5"] == "int key"


def test_json_logger_files_complete_after_trial_end_despite_slow_flushing(tmp_path):
    cb = JsonLoggerCallback(flush_interval_s=3600)
    clock = cb._files._clock = FakeClock()
    trial = make_trial(tmp_path)
    run(cb, trial, [{"i": i} for i in range(3)], end=False)
    path = tmp_path / "t1" / "result.json"
    # the first result is flushed at once, the others wait for the flush interval
    assert [r["i"] for r in read_json_lines(path)] == [0]
    cb.on_step_end(iteration=4, trials=[trial])
    assert len(read_json_lines(path)) == 1  # not due yet
    clock.now += 3600
    cb.on_step_end(iteration=5, trials=[trial])
    assert len(read_json_lines(path)) == 3  # the step flushes data that waited long enough
    cb.on_trial_result(iteration=6, trials=[trial], trial=trial, result={"i": 3})
    cb.on_trial_complete(iteration=7, trials=[trial], trial=trial)
    assert [r["i"] for r in read_json_lines(path)] == [0, 1, 2, 3]


def test_json_logger_experiment_end_flushes_and_closes(tmp_path):
    cb = JsonLoggerCallback(flush_interval_s=3600)
    trials = [make_trial(tmp_path, f"t{i}") for i in range(3)]
    for t in trials:
        run(cb, t, [{"a": 1}, {"a": 2}], end=False)
    cb.on_experiment_end(trials=trials)
    assert len(cb._files) == 0
    for t in trials:
        assert len(read_json_lines(tmp_path / t.trial_id / "result.json")) == 2


def test_json_logger_resumed_trial_appends(tmp_path):
    trial = make_trial(tmp_path)
    run(JsonLoggerCallback(), trial, [{"i": 0}, {"i": 1}])
    # a new callback (e.g. after Tuner.restore) continues the same file
    run(JsonLoggerCallback(), trial, [{"i": 2}])
    assert [r["i"] for r in read_json_lines(tmp_path / "t1" / "result.json")] == [0, 1, 2]


def test_json_logger_repairs_a_torn_last_line(tmp_path):
    os.makedirs(tmp_path / "t1")
    with open(tmp_path / "t1" / "result.json", "w") as f:
        f.write('{"i": 0}\n{"i": 1, "lo')  # killed mid-write
    run(JsonLoggerCallback(), make_trial(tmp_path), [{"i": 2}])
    with open(tmp_path / "t1" / "result.json") as f:
        lines = f.read().splitlines()
    assert lines == ['{"i": 0}', '{"i": 1, "lo', '{"i": 2}']


def test_json_logger_result_without_start_and_restart(tmp_path):
    cb, trial = JsonLoggerCallback(), make_trial(tmp_path)
    cb.on_trial_result(iteration=1, trials=[trial], trial=trial, result={"i": 0})
    assert (tmp_path / "t1" / "params.json").exists()
    cb.on_trial_start(iteration=2, trials=[trial], trial=trial)  # restarted after a failure
    cb.on_trial_result(iteration=3, trials=[trial], trial=trial, result={"i": 1})
    cb.on_trial_complete(iteration=4, trials=[trial], trial=trial)
    assert [r["i"] for r in read_json_lines(tmp_path / "t1" / "result.json")] == [0, 1]


def test_loggers_many_trials_leave_no_open_files(tmp_path):
    json_cb, csv_cb = JsonLoggerCallback(), CSVLoggerCallback()
    for i in range(200):
        trial = make_trial(tmp_path, f"t{i}")
        for cb in (json_cb, csv_cb):
            run(cb, trial, [{"i": 0}])
    assert len(json_cb._files) == 0 and len(csv_cb._files) == 0 and not csv_cb._trials


def test_loggers_pickle_and_skip_trial_without_dir(tmp_path, caplog):
    for cls in (JsonLoggerCallback, CSVLoggerCallback):
        cb = cls(flush_interval_s=2)
        run(cb, make_trial(tmp_path), [{"i": 0}], end=False)
        restored = pickle.loads(pickle.dumps(cb))
        assert restored._flush_interval_s == 2 and len(restored._files) == 0
        no_dir = Trial("nodir", {})
        with caplog.at_level(logging.WARNING):
            run(restored, no_dir, [{"i": 0}, {"i": 1}])
        assert "trial nodir has no directory" in caplog.text
        cb.on_experiment_end(trials=[])


@pytest.mark.parametrize("cls", [JsonLoggerCallback, CSVLoggerCallback])
def test_loggers_reject_bad_flush_interval(cls):
    with pytest.raises(ValueError, match=r"`flush_interval_s` must be a number of seconds >= 0"):
        cls(flush_interval_s=-1)


# --- CSVLoggerCallback ---------------------------------------------------------------------------

def test_csv_logger_flattens_and_drops_config(tmp_path):
    cb = CSVLoggerCallback()
    t1, t2 = make_trial(tmp_path, "t1"), make_trial(tmp_path, "t2")
    for t in (t1, t2):
        cb.on_trial_start(iteration=0, trials=[t1, t2], trial=t)
    for i in range(2):
        for t in (t1, t2):
            cb.on_trial_result(iteration=i, trials=[t1, t2], trial=t, result={
                "training_iteration": i + 1, "eval": {"acc": 0.5 + i, "loss": {"ce": 0.25}},
                "hist": [1, 2], "config": t.config, "note": 'a "quoted", text'})
    for t in (t1, t2):
        cb.on_trial_complete(iteration=3, trials=[t1, t2], trial=t)
    for t in (t1, t2):
        rows = read_csv(tmp_path / t.trial_id / "progress.csv")
        assert rows == [
            ["training_iteration", "eval/acc", "eval/loss/ce", "hist", "note"],
            ["1", "0.5", "0.25", "[1, 2]", 'a "quoted", text'],
            ["2", "1.5", "0.25", "[1, 2]", 'a "quoted", text'],
        ]


def test_csv_logger_keeps_a_column_that_appears_later(tmp_path):
    cb, trial = CSVLoggerCallback(), make_trial(tmp_path)
    run(cb, trial, [
        {"it": 1, "loss": 0.5},
        {"it": 2, "loss": 0.4},
        {"it": 3, "loss": 0.3, "val": {"acc": 0.9}},
        {"it": 4, "val": {"acc": 0.95}},
        {"it": 5, "loss": 0.1, "extra": None},
    ])
    with open(tmp_path / "t1" / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["it", "loss", "val/acc", "extra"]
    assert [r["it"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["val/acc"] for r in rows] == ["", "", "0.9", "0.95", ""]
    assert [r["loss"] for r in rows] == ["0.5", "0.4", "0.3", "", "0.1"]
    assert all(r["extra"] == "" for r in rows)
    assert all(None not in r for r in rows)  # no row is wider than the header
    assert not [p for p in os.listdir(tmp_path / "t1") if p.endswith(".tmp")]


def test_csv_logger_widening_keeps_buffered_rows(tmp_path):
    cb = CSVLoggerCallback(flush_interval_s=3600)
    run(cb, make_trial(tmp_path), [{"a": i} for i in range(5)] + [{"a": 5, "b": 1}])
    rows = read_csv(tmp_path / "t1" / "progress.csv")
    assert rows[0] == ["a", "b"]
    assert rows[1:] == [[str(i), ""] for i in range(5)] + [["5", "1"]]


def test_csv_logger_resumed_trial_appends_with_existing_header(tmp_path):
    trial = make_trial(tmp_path)
    run(CSVLoggerCallback(), trial, [{"it": 1, "loss": 0.5}, {"it": 2, "loss": 0.4}])
    # resumed by a fresh callback; results may come with keys in another order
    run(CSVLoggerCallback(), trial, [{"loss": 0.3, "it": 3}, {"it": 4, "loss": 0.2, "lr": 0.01}])
    rows = read_csv(tmp_path / "t1" / "progress.csv")
    assert rows == [["it", "loss", "lr"], ["1", "0.5", ""], ["2", "0.4", ""],
                    ["3", "0.3", ""], ["4", "0.2", "0.01"]]


def test_csv_logger_non_json_values_do_not_crash(tmp_path):
    class Opaque:
        def __repr__(self):
            return "Opaque()"

    run(CSVLoggerCallback(), make_trial(tmp_path),
        [{"obj": Opaque(), "nan": float("nan"), "arr": np.arange(2), "s": "x\ny"}])
    rows = read_csv(tmp_path / "t1" / "progress.csv")
    assert rows == [["obj", "nan", "arr", "s"], ["Opaque()", "nan", "[0 1]", "x\ny"]]
