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
