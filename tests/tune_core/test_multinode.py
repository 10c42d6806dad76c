"""Trials spread over a real two-node cluster (ray.cluster_utils.Cluster on loopback)."""

from __future__ import annotations

import time

import tune_core as tune


def test_trials_land_on_both_nodes(ray_cluster, tmp_path):
    def train_fn(config):
        import ray

        time.sleep(0.5)
        tune.report({"node_id": ray.get_runtime_context().get_node_id()})

    results = tune.Tuner(train_fn, param_space={"i": tune.grid_search(list(range(4)))},
                         run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert results.num_errors == 0
    nodes = {r.metrics["node_id"] for r in results}
    assert len(nodes) == 2
    assert {n.node_id for n in ray_cluster.list_all_nodes()} == nodes


def test_custom_resources_and_gpus_decide_placement_and_concurrency(ray_cluster, tmp_path):
    def train_fn(config):
        import os

        import ray

        start = time.time()
        time.sleep(0.4)
        tune.report({"node_id": ray.get_runtime_context().get_node_id(), "start": start,
                     "end": time.time(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")})

    worker_node = ray_cluster.list_all_nodes()[1].node_id
    special = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 0.25, "special": 1}),
        param_space={"i": tune.grid_search(list(range(4)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert special.num_errors == 0
    assert {r.metrics["node_id"] for r in special} == {worker_node}
    gpu = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 0, "gpu": 0.5}),
        param_space={"i": tune.grid_search(list(range(3)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert gpu.num_errors == 0
    assert {r.metrics["node_id"] for r in gpu} == {worker_node}
    assert {r.metrics["cuda"] for r in gpu} == {"0"}
    # 0.5 GPU each on 1 GPU: never more than two at once.
    events = sorted([(r.metrics["start"], 1) for r in gpu] + [(r.metrics["end"], -1)
                                                               for r in gpu])
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_every_node_is_asked_whether_it_sees_the_storage_path(ray_cluster, tmp_path):
    from tune_core.execution.ray_executor import RayExecutor

    executor = RayExecutor(lambda config: None)
    executor.setup()
    seen = tmp_path / "marker"
    seen.write_text("x")
    # Both nodes run on this machine, so both see its disk ...
    assert executor.nodes_missing_path(str(seen)) == []
    # ... and a path that no node has is reported for each of them, by address and id.
    missing = executor.nodes_missing_path(str(tmp_path / "absent"))
    ids = sorted(n.node_id[:8] for n in ray_cluster.list_all_nodes())
    assert sorted(m.split("(")[1].rstrip(")") for m in missing) == ids


def test_storage_only_the_head_node_sees_fails_before_any_trial(tmp_path):
    """The decision and its message, with a cluster where one node cannot see the path."""
    import pytest

    class OneNodeBlind:
        def nodes_missing_path(self, path):
            assert (tmp_path / "exp" / path.rsplit("/", 1)[-1]).exists()  # marker written
            return ["10.0.0.7 (ab12cd34)"]

    (tmp_path / "exp").mkdir()
    tuner = tune.Tuner(lambda config: None,
                       run_config=tune.RunConfig(storage_path=str(tmp_path)))
    with pytest.raises(ValueError) as info:
        tuner._check_shared_storage(OneNodeBlind(), str(tmp_path / "exp"))
    message = str(info.value)
    assert str(tmp_path) in message and "10.0.0.7" in message
    assert "NFS" in message and "s3://" in message
    assert list((tmp_path / "exp").iterdir()) == []  # the marker is cleaned up
