"""The Trial's own records: last result and metric analysis (kept compactly per trial)."""

from __future__ import annotations

import math
import pickle

from tune_core.experiment.trial import MetricAnalysis, Trial


def test_metric_analysis_reads_as_ray_tunes_dict_of_dicts():
    trial = Trial("t_00000", {"x": 1})
    for it, loss in enumerate([3.0, 1.0, 2.0, math.nan], start=1):
        trial.update_last_result({"loss": loss, "training_iteration": it, "done": False,
                                  "name": "n"})
    trial.update_last_result({"acc": 0.5})  # a metric that appears late
    ma = trial.metric_analysis
    assert ma["loss"] == {"max": 3.0, "min": 1.0, "last": 2.0}  # NaN skipped
    assert ma["training_iteration"] == {"max": 4, "min": 1, "last": 4}
    assert ma["acc"]["last"] == 0.5
    assert "done" not in ma and "name" not in ma  # booleans and strings are not metrics
    assert list(ma) == ["loss", "training_iteration", "acc"] and len(ma) == 3
    assert ma.get("missing") is None
    assert ma == ma.to_dict()
    assert pickle.loads(pickle.dumps(ma)) == ma
    assert trial.num_results == 5 and trial.last_result == {"acc": 0.5}


def test_assigning_a_plain_dict_still_works():
    trial = Trial("t_00000", {})
    trial.metric_analysis = {"loss": {"max": 2, "min": 1, "last": 1}}
    assert isinstance(trial.metric_analysis, MetricAnalysis)
    assert trial.metric_analysis["loss"]["max"] == 2
    trial.update_last_result({"loss": 5})
    assert trial.metric_analysis["loss"] == {"max": 5, "min": 1, "last": 5}


def test_trials_share_their_result_keys_and_metric_names():
    """What keeps 10,000 finished trials small: one copy of each name, not one per trial."""
    a, b = Trial("t_00000", {}), Trial("t_00001", {})
    # Results arrive deserialised, each with its own copies of the strings.
    a.update_last_result({"".join(["lo", "ss"]): 1.0, "hostname": "".join(["h", "1"])})
    b.update_last_result({"".join(["lo", "ss"]): 2.0, "hostname": "".join(["h", "1"])})
    (ka, kb) = (next(iter(a.last_result)), next(iter(b.last_result)))
    assert ka == kb == "loss" and ka is kb
    assert a.last_result["hostname"] is b.last_result["hostname"]
    assert a.metric_analysis._layout is b.metric_analysis._layout


def _finished(trial_id="t_00000", results=({"loss": 0.5, "training_iteration": 1},)):
    from tune_core.experiment.trial import TrialStatus

    trial = Trial(trial_id, {"x": 1})
    for result in results:
        trial.update_last_result(dict(result, time_this_iter_s=0.25, time_total_s=0.25,
                                      pid=4242, done=False))
    trial.set_status(TrialStatus.RUNNING)
    trial.set_status(TrialStatus.TERMINATED)
    return trial


def test_a_finished_trials_last_result_reads_and_changes_as_a_dict():
    """A finished trial keeps its last result packed (for experiments of 10,000 trials);
    what a user reads, changes, pickles or dumps is still its dict."""
    import copy
    import json

    trial = _finished()
    result = trial.last_result
    assert isinstance(result, dict)
    assert result == {"loss": 0.5, "training_iteration": 1, "time_this_iter_s": 0.25,
                      "time_total_s": 0.25, "pid": 4242, "done": False}
    assert json.loads(json.dumps(result))["loss"] == 0.5
    assert type(pickle.loads(pickle.dumps(result))) is dict
    assert copy.deepcopy(result) == result
    result["loss"] = 0.01  # as a callback may mark it
    assert trial.last_result["loss"] == 0.01
    trial.last_result["note"] = "kept"
    assert trial.last_result["note"] == "kept" and trial.last_result["loss"] == 0.01
    trial.last_result.pop("note")
    assert "note" not in trial.last_result


def test_a_stale_copy_of_a_finished_trials_result_does_not_overwrite_a_newer_one():
    trial = _finished()
    old = trial.last_result
    trial.update_last_result({"loss": 0.1, "training_iteration": 2})  # it was resumed
    old["loss"] = 99.0
    assert trial.last_result["loss"] == 0.1


def test_a_finished_trials_metric_analysis_is_kept_whether_it_reported_once_or_more():
    once = _finished()
    assert once.metric_analysis["loss"] == {"max": 0.5, "min": 0.5, "last": 0.5}
    assert once.metric_analysis["pid"]["last"] == 4242 and "done" not in once.metric_analysis
    more = _finished(results=[{"loss": 3.0, "training_iteration": 1},
                              {"loss": 1.0, "training_iteration": 2},
                              {"loss": 2.0, "training_iteration": 3}])
    assert more.metric_analysis["loss"] == {"max": 3.0, "min": 1.0, "last": 2.0}
    assert more.metric_analysis["training_iteration"] == {"max": 3, "min": 1, "last": 3}
    # A finished trial that goes on (resumed after an error) folds new results into it.
    for trial in (once, more):
        trial.update_last_result({"loss": 0.2, "training_iteration": 4})
    assert once.metric_analysis["loss"] == {"max": 0.5, "min": 0.2, "last": 0.2}
    assert more.metric_analysis["loss"] == {"max": 3.0, "min": 0.2, "last": 0.2}
    # Replacing its last result (as a restore does) keeps the analysis of the old one.
    again = _finished()
    again.last_result = {"loss": 7.0}
    assert again.metric_analysis["loss"] == {"max": 0.5, "min": 0.5, "last": 0.5}


def test_equal_floats_of_a_result_and_evaluated_params_equal_to_the_config_are_shared():
    trial = _finished()
    result = trial.last_result
    assert result["time_this_iter_s"] is result["time_total_s"]
    same = Trial("t_1", {"a": 1, "b": "x"}, evaluated_params={"a": 1, "b": "x"})
    assert same.evaluated_params == {"a": 1, "b": "x"} and same.evaluated_params is same.config
    other = Trial("t_2", {"a": 1, "b": "x"}, evaluated_params={"a": 1})
    assert other.evaluated_params == {"a": 1}
    zeros = Trial("t_3", {})
    zeros.update_last_result({"a": -0.0, "b": 0.0})  # equal, but not the same number
    assert math.copysign(1, zeros.last_result["a"]) == -1
    assert math.copysign(1, zeros.last_result["b"]) == 1


def test_the_analysis_of_one_result_is_what_folding_it_in_makes():
    result = {"loss": 0.5, "n": 3, "done": True, "name": "x", "nan": math.nan, 7: 1.0,
              "cfg": {"a": 1}, "big": 10 ** 30}
    folded = MetricAnalysis()
    folded.update(result)
    direct = MetricAnalysis.of_result(result)
    assert list(direct) == list(folded) == ["loss", "n", "big"]
    assert direct.to_dict() == folded.to_dict()
