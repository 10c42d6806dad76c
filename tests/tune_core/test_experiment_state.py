"""ExperimentStateWriter: the JSON/pickle pair and the time budget that spaces the writes."""

from __future__ import annotations

import json
import math
import os

import cloudpickle

from tune_core.experiment.experiment_state import (
    STATE_FILE, ExperimentStateWriter, load_experiment_state)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_writes_keep_to_the_budget_counting_the_preparation(tmp_path):
    clock = Clock()
    writer = ExperimentStateWriter(str(tmp_path), budget=0.05, min_interval_s=0.5, clock=clock)
    assert writer.due()
    # Building the state took 0.2 s (the write itself no time on this clock): the
    # snapshot cost 0.2 s, so the next one is due 0.2 / 0.05 = 4 s later.
    writer.write({"trials": []}, cloudpickle.dumps({"trials": []}), prepared_s=0.2)
    assert abs(writer.total_write_time - 0.2) < 1e-9
    clock.now += 3.9
    assert not writer.due()
    clock.now += 0.2
    assert writer.due()
    # a cheap snapshot is still at least min_interval_s apart
    writer.write({"trials": []}, cloudpickle.dumps({"trials": []}))
    clock.now += 0.4
    assert not writer.due()


def test_json_is_plain_json_with_unknown_objects_as_text(tmp_path):
    writer = ExperimentStateWriter(str(tmp_path))
    state = {"trials": [{"config": {"t": (1, 2), "s": {3}, "f": math.nan, "o": object}}]}
    writer.write(state, cloudpickle.dumps({"trials": [], "x": 1}))
    with open(os.path.join(str(tmp_path), STATE_FILE)) as f:
        data = json.loads(f.read())
    config = data["trials"][0]["config"]
    assert config["t"] == [1, 2] and config["s"] == [3] and math.isnan(config["f"])
    assert config["o"] == repr(object)
    assert data["generation"] == 1
    json_state, pickled = load_experiment_state(str(tmp_path))
    assert pickled["x"] == 1 and json_state["generation"] == 1
