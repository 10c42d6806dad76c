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
