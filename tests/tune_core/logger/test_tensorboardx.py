"""TBXLoggerCallback: real experiments, event files read back record by record.

No TensorBoard is installed here, so the test decodes the TFRecord files itself with
the protobuf classes tensorboardX ships, and applies TensorBoard's rule for restarts
(a ``SessionLog.START`` at step ``s`` hides the run's earlier points at steps >= ``s``).
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import struct

import numpy as np
import pytest

import tune_core as tune
from tune_core._util import flatten_dict
from tune_core.experiment.trial import Trial
from tune_core.logger import TBXLoggerCallback

pytest.importorskip("tensorboardX")

from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData  # noqa: E402
from tensorboardX.record_writer import masked_crc32c  # noqa: E402

NOT_SCALARS = {"config", "training_iteration", "timestamp", "pid"}


# --------------------------------------------------------------------------- reading events

def event_files(trial_dir):
    return sorted(glob.glob(os.path.join(trial_dir, "events.out.tfevents.*")))


def read_events(path):
    """The events of one TFRecord file, checking each record's checksums."""
    events = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert header_crc == masked_crc32c(header)
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert body_crc == masked_crc32c(body)
        events.append(Event.FromString(body))
        pos += 16 + length
    return events


class Run:
    """A trial directory as TensorBoard sees it: scalars by tag and step, HParams data."""

    def __init__(self, trial_dir):
        self.files = event_files(trial_dir)
        self.raw_steps = []  # (step, tag) of every scalar written, purged or not
        self.scalars = {}
        self.hparams = {}
        for path in self.files:
            events = read_events(path)
            assert events[0].file_version == "brain.Event:2"
            for event in events[1:]:
                if event.HasField("session_log"):
                    assert event.session_log.status == SessionLog.START
                    for series in self.scalars.values():
                        for step in [s for s in series if s >= event.step]:
                            del series[step]
                    continue
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == "hparams":
                        # TensorBoard keeps the first metadata of a tag.
                        self.hparams.setdefault(value.tag, HParamsPluginData.FromString(
                            value.metadata.plugin_data.content))
                    else:
                        self.raw_steps.append((event.step, value.tag))
                        self.scalars.setdefault(value.tag, {})[event.step] = value.simple_value

    def session_hparams(self):
        info = self.hparams["_hparams_/session_start_info"].session_start_info
        return {name: getattr(value, value.WhichOneof("kind"))
                for name, value in info.hparams.items()}

    def metric_tags(self):
        exp = self.hparams["_hparams_/experiment"].experiment
        return sorted(m.name.tag for m in exp.metric_infos)

    def status(self):
        from tensorboardX.proto.api_pb2 import Status

        return Status.Name(self.hparams["_hparams_/session_end_info"].session_end_info.status)


def result_rows(trial_dir):
    with open(os.path.join(trial_dir, "result.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_scalars(rows):
    series = {}
    for row in rows:
        flat = flatten_dict({k: v for k, v in row.items() if k not in NOT_SCALARS})
        for tag, value in flat.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(tag, {})[row["training_iteration"]] = value
    return series


def assert_scalars_match(run, rows):
    expected = expected_scalars(rows)
    assert set(run.scalars) == set(expected)
    for tag, series in expected.items():
        assert run.scalars[tag] == pytest.approx(series, rel=1e-6, abs=1e-30), tag


# --------------------------------------------------------------------------- real experiments

def train_fn(config):
    for i in range(3):
        tune.report({"loss": config["lr"] * (3 - i), "nested": {"acc": 0.1 * i, "n": i},
                     "flag": True, "name": "text", "hist": [1, 2]})
        if config["lr"] == 0.3 and i == 1:
            raise RuntimeError("this trial fails")


@pytest.mark.ray
def test_scalars_and_hparams_match_the_results(ray_local, tmp_path):
    space = {"lr": tune.grid_search([0.1, 0.2, 0.3]), "model": {"layers": 2, "act": "relu"},
             "sizes": [8, 16], "fn": len, "none": None, "on": True}
    grid = tune.Tuner(train_fn, param_space=space,
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="tbx",
                                                verbose=0)).fit()
    assert len(grid) == 3
    for result in grid:
        run = Run(result.path)
        assert len(run.files) == 1
        rows = result_rows(result.path)
        assert len(rows) == (2 if result.config["lr"] == 0.3 else 3)
        assert_scalars_match(run, rows)
        assert "nested/acc" in run.scalars and "flag" not in run.scalars
        assert run.session_hparams() == {
            "lr": pytest.approx(result.config["lr"]), "model/layers": 2.0, "model/act": "relu",
            "sizes": "[8, 16]", "fn": "len", "on": True}
        assert run.metric_tags() == ["loss", "nested/acc", "nested/n"]
        assert run.status() == ("STATUS_FAILURE" if result.config["lr"] == 0.3
                                else "STATUS_SUCCESS")
        # The final metrics the HParams view shows are the last points of those tags.
        last = rows[-1]
        assert run.scalars["loss"][last["training_iteration"]] == pytest.approx(last["loss"])


@pytest.mark.ray
def test_a_logger_the_user_passes_is_the_only_one(ray_local, tmp_path):
    mine = TBXLoggerCallback(flush_interval_s=0)
    grid = tune.Tuner(train_fn, param_space={"lr": tune.grid_search([0.1, 0.2])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="mine",
                                                verbose=0, callbacks=[mine])).fit()
    for result in grid:
        run = Run(result.path)
        assert len(run.files) == 1
        steps = [step for step, tag in run.raw_steps if tag == "loss"]
        assert steps == [1, 2, 3]  # one writer: each point once
        assert_scalars_match(run, result_rows(result.path))


class FailsOnce(tune.Trainable):
    """Fails in its 4th step the first time; checkpoints every 2nd iteration."""

    def setup(self, config):
        self.i = 0

    def step(self):
        self.i += 1
        marker = os.path.join(self.config["marker_dir"], "failed")
        if self.i == 4 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt fails")
        return {"score": self.i * 10.0, "attempt": 2 if os.path.exists(marker) else 1,
                "done": self.i >= 6}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i.json"), "w") as f:
            json.dump(self.i, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i.json")) as f:
            self.i = json.load(f)


@pytest.mark.ray
def test_a_restarted_trial_keeps_appending(ray_local, tmp_path):
    grid = tune.Tuner(FailsOnce, param_space={"marker_dir": str(tmp_path)},
                      run_config=tune.RunConfig(
                          storage_path=str(tmp_path), name="restart", verbose=0,
                          failure_config=tune.FailureConfig(max_failures=1),
                          checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))).fit()
    (result,) = list(grid)
    assert result.error is None
    run = Run(result.path)
    assert len(run.files) == 2  # one per attempt, in the order TensorBoard reads them
    # The first attempt wrote 1..3; the second resumed from the checkpoint at 2 and wrote
    # 3..6; TensorBoard hides the first attempt's 3 (the restart marker is at step 3).
    assert [step for step, tag in run.raw_steps if tag == "score"] == [1, 2, 3, 3, 4, 5, 6]
    first = read_events(run.files[1])[1]
    assert first.session_log.status == SessionLog.START and first.step == 3
    rows = result_rows(result.path)
    assert [row["training_iteration"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert_scalars_match(run, rows)
    assert run.scalars["attempt"] == {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2}
    assert run.status() == "STATUS_SUCCESS"


# --------------------------------------------------------------------------- without Ray

def make_trial(tmp_path, config):
    return Trial("t1", config, experiment_path=str(tmp_path), dirname="t1")


def test_values_and_pickling(tmp_path):
    cb = pickle.loads(pickle.dumps(TBXLoggerCallback(flush_interval_s=60)))
    trial = make_trial(tmp_path, {"lr": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2),
                                  "obj": object, "long": "x" * 2000, "nan": float("nan")})
    cb.on_trial_start(iteration=0, trials=[trial], trial=trial)
    result = {"training_iteration": 1, "a": np.float64(1.5), "b": np.int32(2), "c": np.bool_(1),
              "s": "x", "inf": float("inf"), "arr": np.ones(3)}
    trial.update_last_result(result)
    cb.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result)
    cb.flush()  # the data is in the file although the interval has not passed
    assert Run(trial.local_path).scalars == {"a": {1: 1.5}, "b": {1: 2.0},
                                             "inf": {1: float("inf")}}
    cb.on_trial_complete(iteration=2, trials=[trial], trial=trial)
    run = Run(trial.local_path)
    hparams = run.session_hparams()
    assert hparams["lr"] == 0.5 and hparams["n"] == 3.0 and hparams["arr"] == "[0 1]"
    assert hparams["obj"] == "object" and hparams["nan"] == "nan"
    assert len(hparams["long"]) == 500 and hparams["long"].endswith("...")
    assert run.metric_tags() == ["a", "b", "inf"]


def test_flush_interval_must_be_a_non_negative_number():
    with pytest.raises(ValueError, match="flush_interval_s"):
        TBXLoggerCallback(flush_interval_s=-1)


def test_public_name():
    import tune_core.logger as logger_pkg

    assert "TBXLoggerCallback" in logger_pkg.__all__
    assert logger_pkg.TBXLoggerCallback.__doc__


def test_writing_events_imports_neither_tensorboardx_nor_torch(tmp_path):
    """Importing tensorboardX costs a driver 0.13 s or more (boto3, its writers; torch,
    seconds, when installed): the logger writes the files without it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        from tune_core.experiment.trial import Trial
        from tune_core.logger import TBXLoggerCallback
        cb = TBXLoggerCallback()
        trial = Trial("t1", {{"lr": 0.1}}, experiment_path={str(tmp_path)!r}, dirname="t1")
        cb.on_trial_start(iteration=0, trials=[trial], trial=trial)
        cb.on_trial_result(iteration=1, trials=[trial], trial=trial,
                           result={{"training_iteration": 1, "loss": 1.0}})
        cb.on_trial_complete(iteration=2, trials=[trial], trial=trial)
        for module in ("tensorboardX", "torch", "boto3", "google.protobuf"):
            assert module not in sys.modules, module
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Run(str(tmp_path / "t1")).scalars == {"loss": {1: 1.0}}
