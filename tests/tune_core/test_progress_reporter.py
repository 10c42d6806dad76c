"""The console output, as a user sees it: driven with a fake clock into a StringIO."""

from __future__ import annotations

import io
import shutil
from typing import Any, Dict, List, Optional

import pytest

from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.experiment.trial import Trial, TrialStatus
from tune_core.progress_reporter import (DEFAULT_TABLE_INTERVAL_S, CLIReporter,
                                         ProgressReporter, ProgressReporterCallback)

RUNNING, TERMINATED, ERROR, PENDING, PAUSED = (
    TrialStatus.RUNNING, TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.PENDING,
    TrialStatus.PAUSED)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_trial(tmp_path, i: int, status: TrialStatus = PENDING,
               result: Optional[Dict[str, Any]] = None, **params: Any) -> Trial:
    params = params or {"lr": 0.1 * (i + 1)}
    trial = Trial(f"abcde_{i:05d}", dict(params), trainable_name="train_fn",
                  evaluated_params=dict(params), experiment_path=str(tmp_path),
                  dirname=f"train_fn_{i:05d}")
    if result is not None:
        trial.update_last_result(result)
    if status is ERROR:
        trial.error_msg = ("Traceback (most recent call last):\n  File \"train.py\", line 3\n"
                           "ValueError: learning rate too high")
        trial.error_file = f"{trial.path}/error.txt"
    trial.set_status(status)
    return trial


def make_callback(verbose: int = 1, reporter: Optional[ProgressReporter] = None,
                  metric: Optional[str] = "loss", mode: Optional[str] = "min",
                  total: Optional[int] = 20, max_width: Optional[int] = 200,
                  time_budget_s: Optional[float] = None, tmp_path: Any = "/tmp/exp"):
    clock, out = FakeClock(), io.StringIO()
    cb = ProgressReporterCallback(verbose=verbose, reporter=reporter, metric=metric,
                                  mode=mode, out=out, clock=clock, max_width=max_width)
    cb.setup(stop=None, num_samples=total, total_num_samples=total,
             experiment_name="my_exp", experiment_path=str(tmp_path),
             time_budget_s=time_budget_s, total_resources={"CPU": 2.0, "GPU": 0.0},
             search_alg_name="BasicVariantGenerator", scheduler_name="FIFOScheduler")
    return cb, clock, out


def mixed_trials(tmp_path) -> List[Trial]:
    trials = [make_trial(tmp_path, 0, RUNNING, {"training_iteration": 3, "time_total_s": 1.5,
                                                "loss": 0.5}),
              make_trial(tmp_path, 1, RUNNING, {"training_iteration": 2, "time_total_s": 1.0,
                                                "loss": 0.7})]
    trials += [make_trial(tmp_path, 2 + i, TERMINATED,
                          {"training_iteration": 10, "time_total_s": 12.0,
                           "loss": 0.123456789 + i}) for i in range(10)]
    trials += [make_trial(tmp_path, 12 + i, ERROR) for i in range(2)]
    trials += [make_trial(tmp_path, 14 + i, PENDING) for i in range(5)]
    return trials


def step(cb: ProgressReporterCallback, trials: List[Trial]) -> None:
    cb.on_step_end(iteration=0, trials=trials)


def test_status_table_shows_counts_resources_best_and_progress(tmp_path):
    cb, clock, out = make_callback(time_budget_s=300, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    clock.now += 83
    step(cb, trials)
    text = out.getvalue()
    assert "Tune experiment my_exp: 20 trials, search algorithm BasicVariantGenerator" in text
    assert f"Results are written to {tmp_path}" in text
    assert "Trial status: 2 RUNNING | 10 TERMINATED | 2 ERROR | 5 PENDING" in text
    assert "Logical resource usage: 2.0/2 CPUs, 0/0 GPUs" in text
    assert ("Current best trial: train_fn_abcde_00002 with loss=0.12346 and "
            "params={'lr': 0.3}") in text
    assert "Finished 12 of 20 trials (elapsed 0:01:23, time budget left 0:03:37)" in text
    header = next(line for line in text.splitlines() if line.startswith("Trial name"))
    assert header.split() == ["Trial", "name", "status", "lr", "iter", "total", "time",
                              "(s)", "loss"]
    assert "Errored trials (2):" in text
    assert (f"train_fn_abcde_00012: ValueError: learning rate too high - "
            f"{tmp_path}/train_fn_00012/error.txt") in text
    assert "not shown" not in text  # 19 trials fit in 20 rows, all columns fit


def test_unbounded_number_of_trials_says_of_question_mark(tmp_path):
    cb, clock, out = make_callback(total=None, tmp_path=tmp_path)
    clock.now += 6
    step(cb, mixed_trials(tmp_path))
    assert "an unbounded number of trials" in out.getvalue()
    assert "Finished 12 of ? trials (elapsed 0:00:06)" in out.getvalue()


def test_no_reprint_without_change_and_reprint_after_change(tmp_path):
    cb, clock, out = make_callback(verbose=1, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    step(cb, trials)
    assert "Trial status" not in out.getvalue()  # not due yet: first table after 5 s
    clock.now += 5
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 1
    for _ in range(3):  # much later, but nothing changed: no identical table
        clock.now += 100
        step(cb, trials)
    assert out.getvalue().count("Trial status:") == 1
    trials[0].update_last_result({"training_iteration": 4, "time_total_s": 2.0, "loss": 0.4})
    clock.now += 0.5  # a change, checked within a second
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 1
    clock.now += 1
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 2
    trials[1].set_status(TERMINATED)  # a change, but the interval (30 s at verbose 1) ...
    clock.now += DEFAULT_TABLE_INTERVAL_S[1] - 1
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 2  # ... has not passed
    clock.now += 1
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 3
    assert "Trial status: 1 RUNNING | 11 TERMINATED" in out.getvalue().split("\n\n")[-1]


def test_reporter_interval_and_final_table_only(tmp_path):
    cb, clock, out = make_callback(reporter=CLIReporter(max_report_frequency=2),
                                   tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    clock.now += 2
    step(cb, trials)
    assert out.getvalue().count("Trial status:") == 1

    cb, clock, out = make_callback(reporter=CLIReporter(print_intermediate_tables=False),
                                   tmp_path=tmp_path)
    clock.now += 1000
    step(cb, trials)
    assert "Trial status" not in out.getvalue()
    cb.on_experiment_end(trials=trials)
    assert out.getvalue().count("Trial status:") == 1


def test_verbose_0_prints_nothing(tmp_path):
    cb, clock, out = make_callback(verbose=0, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    for t in trials:
        cb.on_trial_start(iteration=0, trials=trials, trial=t)
        cb.on_trial_result(iteration=0, trials=trials, trial=t, result={"loss": 1.0})
    clock.now += 1000
    step(cb, trials)
    cb.on_trial_complete(iteration=0, trials=trials, trial=trials[2])
    cb.on_trial_error(iteration=0, trials=trials, trial=trials[12])
    cb.on_experiment_end(trials=trials)
    assert out.getvalue() == ""


def test_verbose_1_prints_errors_with_traceback_but_no_other_trial_lines(tmp_path):
    cb, clock, out = make_callback(verbose=1, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    cb.on_trial_start(iteration=0, trials=trials, trial=trials[0])
    cb.on_trial_complete(iteration=0, trials=trials, trial=trials[2])
    assert "started" not in out.getvalue() and "completed" not in out.getvalue()
    cb.on_trial_error(iteration=0, trials=trials, trial=trials[12])
    text = out.getvalue()
    assert "errored after" in text and 'File "train.py", line 3' in text
    assert "error.txt" in text


def test_verbose_2_prints_start_complete_and_error_lines(tmp_path):
    cb, clock, out = make_callback(verbose=2, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    cb.on_trial_start(iteration=0, trials=trials, trial=trials[0])
    cb.on_trial_result(iteration=0, trials=trials, trial=trials[0], result={"loss": 1.0})
    cb.on_trial_complete(iteration=0, trials=trials, trial=trials[2])
    cb.on_trial_error(iteration=0, trials=trials, trial=trials[12])
    lines = out.getvalue().splitlines()[2:]  # after the two experiment lines
    assert lines == [
        "Trial train_fn_abcde_00000 started with lr=0.1",
        "Trial train_fn_abcde_00002 completed after 10 iterations in 0:00:12: loss=0.12346",
        "Trial train_fn_abcde_00012 errored after 0 iterations: "
        "ValueError: learning rate too high",
        "  Traceback (most recent call last):",
        '    File "train.py", line 3',
        "  ValueError: learning rate too high",
        f"  Error file: {tmp_path}/train_fn_00012/error.txt",
    ]


def test_verbose_3_result_lines_are_throttled_per_trial(tmp_path):
    cb, clock, out = make_callback(verbose=3, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    a, b = trials[0], trials[1]
    for i in range(1, 6):  # 5 results of `a` within 0.4 s, and one of `b`
        cb.on_trial_result(iteration=0, trials=trials, trial=a,
                           result={"training_iteration": i, "time_total_s": 0.1 * i,
                                   "loss": 1.0 / i})
        clock.now += 0.1
    cb.on_trial_result(iteration=0, trials=trials, trial=b,
                       result={"training_iteration": 1, "loss": 0.9})
    clock.now += 1
    cb.on_trial_result(iteration=0, trials=trials, trial=a,
                       result={"training_iteration": 6, "time_total_s": 0.6, "loss": 0.1})
    lines = [line for line in out.getvalue().splitlines() if " result " in line]
    assert lines == [
        "Trial train_fn_abcde_00000 result 1: loss=1 (total time 0:00:00)",
        "Trial train_fn_abcde_00001 result 1: loss=0.9",
        "Trial train_fn_abcde_00000 result 6: loss=0.1 (total time 0:00:00) "
        "[4 earlier results not shown]",
    ]


def test_narrow_terminal_drops_columns_and_says_which(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(120, 40): __import__("os").terminal_size((60, 20)))
    cb, clock, out = make_callback(max_width=None, tmp_path=tmp_path, reporter=CLIReporter(
        metric_columns={"acc": "accuracy"}, parameter_columns=["lr", "batch_size"]))
    trials = [make_trial(tmp_path, i, TERMINATED,
                         {"training_iteration": 5, "time_total_s": 3.0, "loss": 0.1 * i,
                          "acc": 0.5}, lr=0.01 * i, batch_size=32) for i in range(3)]
    clock.now += 10
    step(cb, trials)
    text = out.getvalue()
    table = [line for line in text.splitlines()
             if line.startswith(("Trial name", "train_fn_", "---"))]
    assert table and all(len(line) <= 60 for line in table)
    header = table[0]
    assert "loss" in header and "accuracy" in header  # the metric and chosen columns stay
    (note,) = [line for line in text.splitlines() if "columns not shown:" in line]
    assert note.endswith("(terminal too narrow)")
    dropped = note.split("not shown: ")[1].replace(" (terminal too narrow)", "").split(", ")
    assert len(dropped) == int(note.split()[0]) >= 1
    assert all(name not in header for name in dropped)


def test_default_width_comes_from_the_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(120, 40): __import__("os").terminal_size((200, 20)))
    cb, clock, out = make_callback(max_width=None, tmp_path=tmp_path)
    clock.now += 10
    step(cb, mixed_trials(tmp_path))
    assert "columns not shown" not in out.getvalue()


def test_parameter_and_metric_columns_can_be_renamed(tmp_path):
    reporter = CLIReporter(parameter_columns={"model/depth": "depth"},
                           metric_columns={"loss": "L", "acc": "accuracy"})
    cb, clock, out = make_callback(reporter=reporter, tmp_path=tmp_path)
    trial = Trial("abcde_00000", {"model": {"depth": 4}, "lr": 0.5}, trainable_name="f",
                  evaluated_params={"model/depth": 4, "lr": 0.5},
                  experiment_path=str(tmp_path), dirname="x")
    trial.set_status(RUNNING)
    trial.update_last_result({"training_iteration": 1, "loss": 0.25, "acc": 0.75})
    clock.now += 10
    step(cb, [trial])
    header = next(line for line in out.getvalue().splitlines()
                  if line.startswith("Trial name"))
    assert header.split() == ["Trial", "name", "status", "depth", "iter", "L", "accuracy"]
    row = next(line for line in out.getvalue().splitlines() if line.startswith("f_abcde"))
    assert row.split() == ["f_abcde_00000", "RUNNING", "4", "1", "0.25", "0.75"]


def test_metrics_are_guessed_without_metric_columns(tmp_path):
    cb, clock, out = make_callback(metric=None, mode=None, tmp_path=tmp_path)
    trial = make_trial(tmp_path, 0, RUNNING, {"training_iteration": 1, "time_total_s": 0.5,
                                              "timestamp": 123, "mean_accuracy": 0.9,
                                              "note": "text"})
    clock.now += 10
    step(cb, [trial])
    text = out.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("Trial name"))
    assert "mean_accuracy" in header and "timestamp" not in header and "note" not in header
    assert "Current best trial" not in text  # no metric/mode: no best


def test_thousand_trials_are_summarized_in_few_rows(tmp_path):
    cb, clock, out = make_callback(total=1000, tmp_path=tmp_path)
    trials = [make_trial(tmp_path, i, RUNNING, {"training_iteration": 1, "loss": 5.0})
              for i in range(8)]
    trials += [make_trial(tmp_path, 8 + i, TERMINATED,
                          {"training_iteration": 10, "loss": 1.0 + (i % 97) / 10})
               for i in range(960)]
    trials += [make_trial(tmp_path, 968 + i, ERROR) for i in range(2)]
    trials += [make_trial(tmp_path, 970 + i, PENDING) for i in range(30)]
    trials[500].last_result["loss"] = 0.01  # the best, among the finished ones
    clock.now += 10
    step(cb, trials)
    text = out.getvalue()
    table_start = text.index("Trial status:")
    block = text[table_start:].splitlines()
    rows = [line for line in block if line.startswith("train_fn_abcde_")]
    assert len(rows) == 20
    assert sum("RUNNING" in r for r in rows) == 8  # every running trial is shown
    assert "train_fn_abcde_00500" in next(r for r in rows if "TERMINATED" in r)
    assert any("ERROR" in r for r in rows) and any("PENDING" in r for r in rows)
    n_term = sum("TERMINATED" in r for r in rows)
    n_pend = sum("PENDING" in r for r in rows)
    assert (f"... 980 more trials not shown ({960 - n_term} TERMINATED, "
            f"{2 - sum('ERROR' in r for r in rows)} ERROR, {30 - n_pend} PENDING)") in text
    assert len(block) < 60
    assert "Trial status: 8 RUNNING | 960 TERMINATED | 2 ERROR | 30 PENDING" in text


def test_sort_by_metric_orders_finished_trials_best_first(tmp_path):
    cb, clock, out = make_callback(reporter=CLIReporter(sort_by_metric=True, mode="max",
                                                        metric="acc"), tmp_path=tmp_path)
    trials = [make_trial(tmp_path, i, TERMINATED, {"acc": acc})
              for i, acc in enumerate([0.2, 0.9, 0.5])]
    clock.now += 10
    step(cb, trials)
    rows = [line.split()[0] for line in out.getvalue().splitlines()
            if line.startswith("train_fn_abcde_")]
    assert rows == ["train_fn_abcde_00001", "train_fn_abcde_00002", "train_fn_abcde_00000"]
    assert "Current best trial: train_fn_abcde_00001 with acc=0.9" in out.getvalue()


def test_error_rows_are_limited(tmp_path):
    cb, clock, out = make_callback(reporter=CLIReporter(max_error_rows=3), tmp_path=tmp_path)
    trials = [make_trial(tmp_path, i, ERROR) for i in range(5)]
    clock.now += 10
    step(cb, trials)
    text = out.getvalue()
    assert "Errored trials (5):" in text
    assert text.count(": ValueError: learning rate too high - ") == 3
    assert "... 2 more errored trials not listed" in text


def test_final_summary(tmp_path):
    cb, clock, out = make_callback(verbose=1, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)[:14]  # 2 running, 10 terminated, 2 errored ...
    for t in trials[:2]:
        t.set_status(TERMINATED)  # ... all done now
    trials[2].config = {"lr": 0.3, "model": {"depth": 2}}
    clock.now += 62
    cb.on_experiment_end(trials=trials)
    text = out.getvalue()
    assert "Trial status: 12 TERMINATED | 2 ERROR" in text  # the final table
    assert "Tune finished: 14 trials (12 TERMINATED, 2 ERROR) in 0:01:02" in text
    assert ("Best trial: train_fn_abcde_00002 with loss=0.12346 (min) and "
            "config={'lr': 0.3, 'model': {'depth': 2}}") in text
    assert f"Results: {tmp_path}" in text
    assert "2 trials errored; error files:" in text
    assert f"  train_fn_abcde_00013: {tmp_path}/train_fn_00013/error.txt" in text
    assert text.rstrip().endswith(f"{tmp_path}/train_fn_00013/error.txt")


def test_final_table_is_not_a_repeat_of_the_last_one(tmp_path):
    cb, clock, out = make_callback(tmp_path=tmp_path)
    trials = [make_trial(tmp_path, i, TERMINATED, {"loss": 1.0}) for i in range(3)]
    clock.now += 10
    step(cb, trials)
    cb.on_experiment_end(trials=trials)
    text = out.getvalue()
    assert text.count("Trial status:") == 1
    assert "Tune finished: 3 trials (3 TERMINATED)" in text


def test_resources_of_running_trials_are_summed(tmp_path):
    cb, clock, out = make_callback(tmp_path=tmp_path)
    trials = []
    for i in range(3):
        t = Trial(f"abcde_{i:05d}", {}, trainable_name="f", experiment_path=str(tmp_path),
                  placement_group_factory=PlacementGroupFactory([{"CPU": 1, "GPU": 0.5}]))
        t.set_status(RUNNING if i < 2 else PAUSED)
        trials.append(t)
    clock.now += 10
    step(cb, trials)
    assert "Logical resource usage: 2.0/2 CPUs, 1.0/0 GPUs" in out.getvalue()


def test_custom_progress_reporter_replaces_the_table(tmp_path):
    class Recorder(ProgressReporter):
        def __init__(self) -> None:
            self.calls: List[Any] = []

        def should_report(self, trials, done=False):
            return True

        def report(self, trials, done, *sys_info):
            self.calls.append((len(trials), done, sys_info))

    recorder = Recorder()
    cb, clock, out = make_callback(reporter=recorder, tmp_path=tmp_path)
    trials = mixed_trials(tmp_path)
    step(cb, trials)
    cb.on_experiment_end(trials=trials)
    assert [c[:2] for c in recorder.calls] == [(19, False), (19, True)]
    assert recorder.calls[0][2][0].startswith("Logical resource usage:")
    assert "Trial status" not in out.getvalue()
    assert "Tune finished: 19 trials" in out.getvalue()


def test_cli_reporter_keeps_ray_tune_methods(capsys, tmp_path):
    reporter = CLIReporter(metric_columns=["loss"])
    reporter.add_metric_column("acc", "accuracy")
    reporter.add_parameter_column("lr")
    with pytest.raises(ValueError, match="already shown"):
        reporter.add_metric_column("loss")
    reporter.setup(start_time=None, total_samples=3, metric="loss", mode="min")
    assert reporter.should_report([], done=False)
    assert not reporter.should_report([], done=False)  # within max_report_frequency
    assert reporter.should_report([], done=True)
    reporter.report([make_trial(tmp_path, 0, RUNNING, {"loss": 1.0, "acc": 0.5})], False)
    printed = capsys.readouterr().out
    assert "Trial status: 1 RUNNING" in printed and "accuracy" in printed


def test_reporter_metric_wins_over_tune_config_metric(tmp_path):
    cb, clock, out = make_callback(reporter=CLIReporter(metric="acc", mode="max"),
                                   metric="loss", mode="min", tmp_path=tmp_path)
    trials = [make_trial(tmp_path, i, TERMINATED, {"acc": a, "loss": a})
              for i, a in enumerate([0.1, 0.8])]
    cb.on_experiment_end(trials=trials)
    assert "Best trial: train_fn_abcde_00001 with acc=0.8 (max)" in out.getvalue()


@pytest.mark.parametrize("kwargs, match", [
    ({"metric_columns": "loss"}, "metric_columns"),
    ({"parameter_columns": {"a": 1}}, "parameter_columns"),
    ({"max_progress_rows": 0}, "max_progress_rows"),
    ({"max_report_frequency": -1}, "max_report_frequency"),
    ({"mode": "maximize"}, "mode"),
])
def test_cli_reporter_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CLIReporter(**kwargs)


def test_callback_rejects_bad_verbose():
    with pytest.raises(ValueError, match="verbose must be 0"):
        ProgressReporterCallback(verbose=5)


def test_numbers_and_times_are_compact(tmp_path):
    cb, clock, out = make_callback(tmp_path=tmp_path)
    trial = make_trial(tmp_path, 0, TERMINATED,
                       {"training_iteration": 7, "time_total_s": 3725.123456,
                        "loss": 123456.789})
    cb.on_experiment_end(trials=[trial])
    text = out.getvalue()
    assert "1.2346e+05" in text and "3725.1" in text
    clock.now += 3725
    cb.on_experiment_end(trials=[trial])
    assert "in 1:02:05" in out.getvalue()
