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


# --------------------------------------------------------------------------- finished trials

def _trial(i, status="TERMINATED"):
    return {"trial_id": f"t{i}", "status": status, "config": {"x": i}, "order": i}


def _write(writer, live, finished):
    from tune_core.experiment.experiment_state import encode_finished

    writer.write({"trials": live}, cloudpickle.dumps({"trials": live, "x": 1}),
                 finished=[encode_finished(t) for t in finished])


def _files(path):
    return sorted(n for n in os.listdir(path) if n.startswith("experiment_state"))


def test_finished_trials_are_written_once_and_read_back_in_order(tmp_path):
    from tune_core.experiment.experiment_state import read_experiment_json

    path = str(tmp_path)
    writer = ExperimentStateWriter(path)
    _write(writer, [_trial(0, "RUNNING"), _trial(2, "PENDING")], [_trial(1)])
    with open(os.path.join(path, STATE_FILE)) as f:
        raw = json.load(f)
    # The state file itself holds the unfinished trials only.
    assert [t["trial_id"] for t in raw["trials"]] == ["t0", "t2"]
    jsonl = os.path.join(path, raw["finished_trials"]["json_file"])
    size_after_one = os.path.getsize(jsonl)
    _write(writer, [_trial(2, "RUNNING")], [_trial(0, "ERROR")])
    # t1 was not written again: the file grew by t0's line only.
    with open(jsonl, "rb") as f:
        lines = f.read().splitlines()
    assert [json.loads(line)["trial_id"] for line in lines] == ["t1", "t0"]
    assert os.path.getsize(jsonl) > size_after_one
    state = read_experiment_json(path)
    assert [(t["trial_id"], t["status"]) for t in state["trials"]] == [
        ("t0", "ERROR"), ("t1", "TERMINATED"), ("t2", "RUNNING")]
    json_state, pickled = load_experiment_state(path)
    assert [t["trial_id"] for t in pickled["trials"]] == ["t0", "t1", "t2"]
    assert pickled["trials"][0]["status"] == "ERROR" and pickled["x"] == 1
    assert [t["trial_id"] for t in json_state["trials"]] == ["t0", "t1", "t2"]


def test_bytes_after_the_committed_prefix_are_ignored_then_overwritten(tmp_path):
    """A snapshot cut short after appending (a crash, a full disk) leaves bytes its JSON
    never counted: readers ignore them and the next snapshot writes over them."""
    path = str(tmp_path)
    writer = ExperimentStateWriter(path)
    _write(writer, [], [_trial(0)])
    raw = json.load(open(os.path.join(path, STATE_FILE)))
    names = raw["finished_trials"]["json_file"], raw["finished_trials"]["pickle_file"]
    for name in names:
        with open(os.path.join(path, name), "ab") as f:
            f.write(b"half a trial")
    assert [t["trial_id"] for t in load_experiment_state(path)[1]["trials"]] == ["t0"]
    _write(writer, [], [_trial(1)])
    json_state, pickled = load_experiment_state(path)
    assert [t["trial_id"] for t in pickled["trials"]] == ["t0", "t1"]
    with open(os.path.join(path, names[0]), "rb") as f:
        assert b"half a trial" not in f.read()


def test_a_trial_that_runs_again_after_it_ended_is_read_from_its_newest_state(tmp_path):
    path = str(tmp_path)
    writer = ExperimentStateWriter(path)
    _write(writer, [], [_trial(0, "ERROR")])
    _write(writer, [_trial(0, "RUNNING")], [])        # retried: live again
    assert load_experiment_state(path)[1]["trials"][0]["status"] == "RUNNING"
    _write(writer, [], [_trial(0, "TERMINATED")])     # ended again: a second line
    states = load_experiment_state(path)[1]["trials"]
    assert [(t["trial_id"], t["status"]) for t in states] == [("t0", "TERMINATED")]


def test_a_new_writer_in_the_directory_starts_new_files_and_removes_the_old(tmp_path):
    """Tuner.restore writes into the directory of the state it restored: numbering goes
    on after it, and the old files go once the new state is complete."""
    path = str(tmp_path)
    first = ExperimentStateWriter(path)
    _write(first, [], [_trial(0)])
    _write(first, [_trial(1, "PAUSED")], [])
    old = _files(path)
    second = ExperimentStateWriter(path)
    assert second.generation == 2
    _write(second, [], [_trial(0), _trial(1)])
    new = _files(path)
    assert not set(old) & (set(new) - {STATE_FILE})
    raw = json.load(open(os.path.join(path, STATE_FILE)))
    assert raw["generation"] == 3 and raw["finished_trials"]["count"] == 2
    assert [t["trial_id"] for t in load_experiment_state(path)[1]["trials"]] == ["t0", "t1"]


def test_a_finished_trial_whose_config_holds_a_class_of_the_script_loads_in_another(tmp_path):
    """Finished trials are pickled with the fast standard pickler, except what only
    cloudpickle can make loadable elsewhere: an enum of the user's ``__main__`` here."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "state.pkl"
    write = textwrap.dedent(f"""
        import enum
        from tune_core.experiment.experiment_state import encode_finished

        class Optimizer(str, enum.Enum):
            ADAM = "adam"

        line, data = encode_finished({{"trial_id": "t1", "config": {{"opt": Optimizer.ADAM}},
                                      "last_result": {{"loss": 0.5}}}})
        open({str(out)!r}, "wb").write(data)
    """)
    read = textwrap.dedent(f"""
        import pickle
        state = pickle.loads(open({str(out)!r}, "rb").read())
        assert state["config"]["opt"].value == "adam", state
        assert state["last_result"] == {{"loss": 0.5}}
    """)
    for code in (write, read):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
