"""CheckpointConfig retention: which checkpoints a trial keeps, on disk and in its Result."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

import tune_core as tune
from tune_core.experiment.checkpoint_manager import CheckpointManager


def test_keeps_everything_without_num_to_keep():
    m = CheckpointManager()
    assert all(m.register(f"c{i}", {"score": i}) == [] for i in range(5))
    assert [c.path for c in m.best_checkpoints()] == ["c0", "c1", "c2", "c3", "c4"]


def test_keeps_the_newest_by_recency():
    m = CheckpointManager(num_to_keep=2)
    dropped = [m.register(f"c{i}", {}) for i in range(4)]
    assert dropped == [[], [], ["c0"], ["c1"]]
    assert [c.path for c in m.best_checkpoints()] == ["c2", "c3"]


@pytest.mark.parametrize("order,kept", [("max", ["c4", "c3", "c1"]),
                                        ("min", ["c4", "c2", "c0"])])
def test_keeps_the_best_by_score_and_always_the_newest(order, kept):
    m = CheckpointManager(num_to_keep=2, score_attribute="acc", score_order=order)
    for i, acc in enumerate([1, 5, 2, 4, 3]):
        m.register(f"c{i}", {"acc": acc})
    # The two best, and the newest (c4) as well when it is not among them; worst first.
    assert [c.path for c in m.best_checkpoints()] == kept


def test_a_missing_or_nan_score_ranks_last_and_nested_scores_are_found():
    m = CheckpointManager(num_to_keep=1, score_attribute="val/acc")
    assert m.register("a", {"val": {"acc": 0.9}}) == []
    assert m.register("b", {"val": {"acc": float("nan")}}) == []  # newest: kept for now
    assert m.register("c", {"other": 1}) == ["b"]
    assert [c.path for c in m.best_checkpoints()] == ["c", "a"]


def test_the_same_path_again_replaces_its_entry():
    m = CheckpointManager(num_to_keep=2)
    m.register("c0", {})
    m.register("c1", {})
    # A retried trial rewrote checkpoint c1 from an earlier state.
    assert m.register("c1", {"again": True}) == []
    assert [(c.path, c.metrics) for c in m.best_checkpoints()] == [("c0", {}),
                                                                  ("c1", {"again": True})]


def test_state_round_trip_keeps_paths_relative_and_the_ranking_metrics():
    m = CheckpointManager(num_to_keep=2, score_attribute="acc")
    for i, acc in enumerate([3, 1, 2]):
        m.register(f"/exp/trial/checkpoint_00000{i}", {"acc": acc, "training_iteration": i + 1,
                                                       "big": "x" * 100})
    state = m.to_state("/exp/trial")
    assert state == [{"path": "checkpoint_000000",
                      "metrics": {"acc": 3, "training_iteration": 1}},
                     {"path": "checkpoint_000002",
                      "metrics": {"acc": 2, "training_iteration": 3}}]
    copy = CheckpointManager(num_to_keep=2, score_attribute="acc")
    copy.load_state(json.loads(json.dumps(state)), "/moved/trial")
    assert copy.register("/moved/trial/checkpoint_000003", {"acc": 0}) == []  # newest kept
    assert copy.register("/moved/trial/checkpoint_000004", {"acc": 5}) == [
        "/moved/trial/checkpoint_000002", "/moved/trial/checkpoint_000003"]


def scored_fn(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "step.json")) as f:
                start = json.load(f) + 1
    losses = [4.0, 1.0, 3.0, 2.0, 5.0, 0.5]
    for step in range(start, len(losses)):
        if step == config.get("fail_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("injected")
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "step.json"), "w") as f:
            json.dump(step, f)
        tune.report({"loss": losses[step]}, checkpoint=tune.Checkpoint.from_directory(d))


def on_disk(result):
    return sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))


@pytest.mark.usefixtures("ray_local")
def test_retention_on_disk_in_results_and_across_a_restore(tmp_path):
    marker = str(tmp_path / "failed")
    config = tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                                   checkpoint_score_order="min")
    first = tune.Tuner(
        scored_fn, param_space={"fail_at": 4, "marker": marker},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="keep", verbose=0,
                                  checkpoint_config=config)).fit()
    (result,) = first
    assert result.error is not None
    # losses so far 4, 1, 3, 2: the best two (1 and 2) are kept, 2 being also the newest.
    assert on_disk(result) == ["checkpoint_000001", "checkpoint_000003"]
    assert [m["loss"] for _, m in result.best_checkpoints] == [2.0, 1.0]

    restored = tune.Tuner.restore(first.experiment_path, scored_fn, resume_errored=True).fit()
    (result,) = restored
    assert result.error is None and result.metrics["loss"] == 0.5
    # Then 5 (the newest until 0.5 comes) and 0.5: kept are 0.5 and 1.
    assert on_disk(result) == ["checkpoint_000001", "checkpoint_000005"]
    assert [m["loss"] for _, m in result.best_checkpoints] == [1.0, 0.5]
    best, _ = result.best_checkpoints[-1]
    assert best == result.checkpoint
    with best.as_directory() as d:
        with open(os.path.join(d, "step.json")) as f:
            assert json.load(f) == 5

    loaded = tune.ResultGrid.from_path(first.experiment_path)
    assert [m["loss"] for _, m in loaded[0].best_checkpoints] == [1.0, 0.5]
