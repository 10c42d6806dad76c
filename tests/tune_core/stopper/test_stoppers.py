import datetime
import pickle
import time

import pytest

import tune_core.stopper as stopper_pkg
from tune_core.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
)
from tune_core.stopper._resolve import DictStopper, resolve_stopper


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decisions(stopper, values, metric="m", trial_id="t"):
    return [stopper(trial_id, {metric: v}) for v in values]


def test_public_names():
    assert sorted(stopper_pkg.__all__) == sorted([
        "Stopper", "CombinedStopper", "FunctionStopper", "MaximumIterationStopper",
        "NoopStopper", "TimeoutStopper", "TrialPlateauStopper", "ExperimentPlateauStopper"])
    for name in stopper_pkg.__all__:
        assert getattr(stopper_pkg, name).__doc__


# --- MaximumIterationStopper ---------------------------------------------------------------------

def test_maximum_iteration_counts_results_per_trial():
    s = MaximumIterationStopper(max_iter=3)
    assert [s("a", {}) for _ in range(3)] == [False, False, True]
    assert s("b", {}) is False  # another trial has its own count
    assert s.stop_all() is False


def test_maximum_iteration_survives_pickle():
    s = MaximumIterationStopper(max_iter=2)
    s("a", {})
    s = pickle.loads(pickle.dumps(s))
    assert s("a", {}) is True


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_maximum_iteration_rejects_bad_max_iter(bad):
    with pytest.raises(ValueError, match=r"MaximumIterationStopper: `max_iter` must be an integer >= 1"):
        MaximumIterationStopper(bad)


# --- TrialPlateauStopper -------------------------------------------------------------------------

def test_trial_plateau_stops_when_window_std_below_threshold():
    s = TrialPlateauStopper(metric="m", std=0.01, num_results=4, grace_period=4)
    assert decisions(s, [5.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == [
        False, False, False, False, False, True, True]


def test_trial_plateau_does_not_stop_noisy_trial():
    s = TrialPlateauStopper(metric="m", std=0.01, num_results=3, grace_period=0)
    assert not any(decisions(s, [1.0, 1.1, 1.0, 1.1, 1.0, 1.1]))


def test_trial_plateau_std_threshold_is_strict():
    # population std of [0, 1] is 0.5
    assert decisions(TrialPlateauStopper("m", std=0.5, num_results=2, grace_period=0),
                     [0, 1]) == [False, False]
    assert decisions(TrialPlateauStopper("m", std=0.51, num_results=2, grace_period=0),
                     [0, 1]) == [False, True]


def test_trial_plateau_grace_period():
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=5)
    assert decisions(s, [1.0] * 6) == [False] * 4 + [True, True]


def test_trial_plateau_trials_are_independent():
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=0)
    assert s("a", {"m": 1.0}) is False
    assert s("b", {"m": 1.0}) is False
    assert s("a", {"m": 1.0}) is True
    assert s("b", {"m": 2.0}) is False


@pytest.mark.parametrize("mode, values, expected", [
    ("min", [0.5] * 4, [False, False, False, True]),     # 0.5 <= 0.5: may stop
    ("min", [0.6] * 4, [False] * 4),                      # not good enough yet
    ("max", [0.6] * 4, [False, False, False, True]),
    ("max", [0.4] * 4, [False] * 4),
])
def test_trial_plateau_metric_threshold(mode, values, expected):
    s = TrialPlateauStopper(metric="m", num_results=4, grace_period=0,
                            metric_threshold=0.5, mode=mode)
    assert decisions(s, values) == expected


def test_trial_plateau_zero_threshold_is_honoured():
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=0,
                            metric_threshold=0, mode="min")
    assert decisions(s, [1.0, 1.0, 0.0, 0.0]) == [False, False, False, True]


def test_trial_plateau_missing_metric_and_nan():
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=0)
    assert s("t", {}) is False
    assert s("t", {"m": None}) is False
    assert decisions(s, [1.0, 1.0]) == [False, True]
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=0)
    assert decisions(s, [float("nan"), 1.0, 1.0]) == [False, False, True]


def test_trial_plateau_pickles():
    s = TrialPlateauStopper(metric="m", num_results=2, grace_period=0)
    s("t", {"m": 1.0})
    assert pickle.loads(pickle.dumps(s))("t", {"m": 1.0}) is True


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": ""}, r"`metric` must be a non-empty string"),
    ({"metric": None}, r"`metric` must be a non-empty string"),
    ({"std": 0}, r"`std` must be a number > 0; got 0"),
    ({"std": -0.1}, r"`std` must be a number > 0; got -0.1"),
    ({"num_results": 0}, r"`num_results` must be an integer >= 1; got 0"),
    ({"grace_period": -1}, r"`grace_period` must be an integer >= 0; got -1"),
    ({"metric_threshold": "x", "mode": "min"}, r"`metric_threshold` must be a number or None"),
    ({"mode": "maximize"}, r"`mode` must be \"min\" or \"max\" \(or None\); got 'maximize'"),
    ({"metric_threshold": 0.5}, r"`metric_threshold=0.5` needs `mode`"),
])
def test_trial_plateau_rejects_bad_arguments(kwargs, message):
    kwargs = {"metric": "m", **kwargs}
    with pytest.raises(ValueError, match="TrialPlateauStopper: " + message):
        TrialPlateauStopper(**kwargs)


# --- ExperimentPlateauStopper --------------------------------------------------------------------

def test_experiment_plateau_stops_when_top_values_agree():
    s = ExperimentPlateauStopper(metric="m", std=0.001, top=3, mode="min")
    assert s("a", {"m": 5.0}) is False
    assert s("b", {"m": 1.0}) is False
    assert s("c", {"m": 1.0}) is False  # top 3 = [1, 1, 5]
    assert s.stop_all() is False
    assert s("d", {"m": 1.0}) is True   # top 3 = [1, 1, 1]
    assert s.stop_all() is True


def test_experiment_plateau_mode_max_keeps_largest():
    s = ExperimentPlateauStopper(metric="m", top=2, mode="max")
    assert [s(t, {"m": v}) for t, v in [("a", 0.9), ("b", 0.1), ("c", 0.2)]] == [
        False, False, False]  # top 2 = [0.2, 0.9]
    assert s("d", {"m": 0.9}) is True  # top 2 = [0.9, 0.9]


def test_experiment_plateau_patience():
    s = ExperimentPlateauStopper(metric="m", top=2, patience=2)
    # plateaued from the 2nd result on; stops when the plateau lasted more than 2 results
    assert [s("a", {"m": 1.0}) for _ in range(5)] == [False, False, False, True, True]


def test_experiment_plateau_patience_resets_when_top_changes():
    s = ExperimentPlateauStopper(metric="m", std=0.01, top=2, patience=1)
    assert [s("a", {"m": v}) for v in [1.0, 1.0, 0.5, 0.5, 0.5]] == [
        False, False, False, False, True]


def test_experiment_plateau_ignores_missing_metric_and_pickles():
    s = ExperimentPlateauStopper(metric="m", top=2)
    assert s("a", {"other": 1}) is False
    s("a", {"m": 1.0})
    s = pickle.loads(pickle.dumps(s))
    assert s("b", {"m": 1.0}) is True


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "best"}, r"`mode` must be \"min\" or \"max\"; got 'best'"),
    ({"mode": None}, r"`mode` must be \"min\" or \"max\"; got None"),
    ({"top": 1}, r"`top` must be an integer >= 2; got 1"),
    ({"top": 2.0}, r"`top` must be an integer >= 2; got 2.0"),
    ({"patience": -1}, r"`patience` must be an integer >= 0; got -1"),
    ({"std": 0.0}, r"`std` must be a number > 0; got 0.0"),
    ({"std": float("nan")}, r"`std` must be a number > 0; got nan"),
])
def test_experiment_plateau_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="ExperimentPlateauStopper: " + message):
        ExperimentPlateauStopper(metric="m", **kwargs)


# --- TimeoutStopper ------------------------------------------------------------------------------

def test_timeout_with_injected_clock_starts_at_first_call():
    s = TimeoutStopper(10)
    clock = s._clock = FakeClock()
    clock.now += 100  # time before the first call does not count
    assert s("t", {}) is False
    clock.now += 9.9
    assert s.stop_all() is False
    clock.now += 0.1
    assert s.stop_all() is True
    assert s("t", {}) is False  # per-trial decisions are left to other stoppers


def test_timeout_accepts_timedelta():
    s = TimeoutStopper(datetime.timedelta(minutes=1))
    clock = s._clock = FakeClock()
    assert s.stop_all() is False
    clock.now += 59
    assert s.stop_all() is False
    clock.now += 1
    assert s.stop_all() is True


def test_timeout_real_time():
    s = TimeoutStopper(0.1)
    assert s.stop_all() is False
    time.sleep(0.15)
    assert s.stop_all() is True


def test_timeout_pickle_keeps_the_remaining_budget():
    s = TimeoutStopper(10)
    s.stop_all()
    s._started_at -= 6  # 6 s used
    restored = pickle.loads(pickle.dumps(s))
    clock = restored._clock = FakeClock()
    clock.now += 500  # downtime before the restored experiment runs does not count
    assert restored.stop_all() is False
    clock.now += 3.9
    assert restored.stop_all() is False
    clock.now += 0.2
    assert restored.stop_all() is True


def test_timeout_zero_stops_at_once():
    assert TimeoutStopper(0).stop_all() is True


@pytest.mark.parametrize("bad, message", [
    (-1, r"`timeout` must be >= 0 seconds; got -1"),
    (datetime.timedelta(seconds=-5), r"`timeout` must be >= 0 seconds"),
    ("60", r"`timeout` must be a number of seconds or a datetime.timedelta; got '60' \(str\)"),
    (None, r"`timeout` must be a number of seconds or a datetime.timedelta; got None"),
    (float("nan"), r"`timeout` must be >= 0 seconds; got nan"),
])
def test_timeout_rejects_bad_timeout(bad, message):
    with pytest.raises(ValueError, match="TimeoutStopper: " + message):
        TimeoutStopper(bad)


# --- FunctionStopper, NoopStopper, CombinedStopper -----------------------------------------------

def test_function_stopper():
    s = FunctionStopper(lambda trial_id, result: trial_id == "b" and result["x"] > 1)
    assert s("a", {"x": 5}) is False
    assert s("b", {"x": 1}) is False
    assert s("b", {"x": 2}) is True
    assert s.stop_all() is False


@pytest.mark.parametrize("bad, message", [
    (42, r"`function` must be a callable \(trial_id: str, result: dict\) -> bool; got 42"),
    (lambda result: True, r".* must accept two positional arguments \(trial_id, result\)"),
    (NoopStopper(), r"`function` is the stopper NoopStopper\(\); pass a Stopper directly"),
    (NoopStopper, r"`function` must be a callable"),
])
def test_function_stopper_rejects_bad_function(bad, message):
    with pytest.raises(ValueError, match="FunctionStopper: " + message):
        FunctionStopper(bad)


def test_noop_stopper():
    s = NoopStopper()
    assert s("t", {"training_iteration": 10**9}) is False
    assert s.stop_all() is False


class Recording(Stopper):
    def __init__(self, stop_trial: bool = False, stop_all: bool = False) -> None:
        self.seen = []
        self._stop_trial = stop_trial
        self._stop_all = stop_all

    def __call__(self, trial_id, result):
        self.seen.append(trial_id)
        return self._stop_trial

    def stop_all(self):
        return self._stop_all


def test_combined_stopper_ors_and_every_stopper_sees_every_result():
    first, second = Recording(stop_trial=True), Recording()
    s = CombinedStopper(first, second)
    assert s("a", {}) is True
    assert second.seen == ["a"]  # no short-circuit
    assert s.stop_all() is False
    assert CombinedStopper(Recording(), Recording(stop_all=True)).stop_all() is True
    assert CombinedStopper()("a", {}) is False


def test_combined_stopper_with_real_stoppers():
    s = CombinedStopper(MaximumIterationStopper(5),
                        TrialPlateauStopper("m", num_results=2, grace_period=0))
    assert decisions(s, [1, 2, 3, 3]) == [False, False, False, True]
    s = pickle.loads(pickle.dumps(s))
    assert s("other", {"m": 1}) is False


def test_combined_stopper_rejects_non_stopper():
    with pytest.raises(ValueError, match=r"CombinedStopper: argument 1 is 'x' \(str\)"):
        CombinedStopper(NoopStopper(), "x")


# --- resolve_stopper -----------------------------------------------------------------------------

def test_resolve_none_and_empty():
    assert resolve_stopper(None) is None
    assert resolve_stopper({}) is None
    assert resolve_stopper([]) is None


def test_resolve_dict_thresholds():
    s = resolve_stopper({"training_iteration": 10, "mean_accuracy": 0.9})
    assert isinstance(s, DictStopper)
    assert s.keys == ("training_iteration", "mean_accuracy")
    assert s("t", {"training_iteration": 3, "mean_accuracy": 0.5}) is False
    assert s("t", {"training_iteration": 10, "mean_accuracy": 0.5}) is True
    assert s("t", {"training_iteration": 3, "mean_accuracy": 0.95}) is True
    assert s.stop_all() is False


def test_resolve_dict_missing_or_odd_values_never_raise():
    s = resolve_stopper({"loss_inv": 5})
    assert s("t", {}) is False
    assert s("t", {"loss_inv": None}) is False
    assert s("t", {"loss_inv": "high"}) is False
    assert s("t", {"loss_inv": float("nan")}) is False


def test_resolve_dict_nested_keys():
    s = resolve_stopper({"eval": {"acc": 0.9}, "train/loss_inv": 3})
    assert s.keys == ("eval/acc", "train/loss_inv")
    assert s("t", {"eval": {"acc": 0.95}}) is True
    assert s("t", {"eval/acc": 0.95}) is True
    assert s("t", {"train": {"loss_inv": 2}}) is False
    assert s("t", {"train": {"loss_inv": 3}}) is True
    assert s("t", {"train": 7}) is False
    assert pickle.loads(pickle.dumps(s))("t", {"eval": {"acc": 1.0}}) is True


@pytest.mark.parametrize("bad, message", [
    ({"acc": "0.9"}, r"the threshold for 'acc' must be a number .*got '0.9' \(str\)"),
    ({"acc": None}, r"the threshold for 'acc' must be a number"),
    ({"acc": float("nan")}, r"the threshold for 'acc' must be a number"),
    ({"eval": {"acc": [1]}}, r"the threshold for 'eval/acc' must be a number"),
    ({1: 3}, r"threshold keys must be metric names \(str\); got key 1"),
])
def test_resolve_dict_rejects_non_numbers(bad, message):
    with pytest.raises(ValueError, match=r"RunConfig\(stop=...\): " + message):
        resolve_stopper(bad)


def test_resolve_callable_stopper_and_list():
    s = resolve_stopper(lambda trial_id, result: result["x"] > 1)
    assert isinstance(s, FunctionStopper)
    assert s("t", {"x": 2}) is True

    noop = NoopStopper()
    assert resolve_stopper(noop) is noop
    assert resolve_stopper([noop]) is noop
    combined = resolve_stopper([MaximumIterationStopper(1), noop])
    assert isinstance(combined, CombinedStopper)
    assert combined("t", {}) is True


class DuckStopper:
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return True


@pytest.mark.parametrize("bad, message", [
    ("training_iteration", r"got 'training_iteration' \(str\)\. Accepted: None, a dict"),
    (10, r"got 10 \(int\)\. Accepted:"),
    ([NoopStopper(), {"a": 1}], r"a list must hold only tune_core.stopper.Stopper objects; "
                                r"got \{'a': 1\} \(dict\)"),
    (MaximumIterationStopper, r"got the class MaximumIterationStopper, not an instance"),
    (DuckStopper(), r".*DuckStopper.* has a `stop_all` method but is not a tune_core.stopper.Stopper"),
])
def test_resolve_rejects_other_values(bad, message):
    with pytest.raises(ValueError, match=r"RunConfig\(stop=...\): " + message):
        resolve_stopper(bad)
