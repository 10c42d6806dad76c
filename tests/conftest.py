"""Shared fixtures: a real local Ray on loopback, started once and shared where possible."""

from __future__ import annotations

import os

import pytest

# Ray binds to loopback only; set before ray is imported anywhere in the test process.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

RAY_CPUS = 2


def _init_local_ray() -> None:
    import ray

    if ray.is_initialized():
        if ray.cluster_resources().get("CPU") == RAY_CPUS and len(ray.nodes()) == 1:
            return
        ray.shutdown()
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, log_to_driver=True,
             configure_logging=False)


@pytest.fixture
def ray_local():
    """A real single-node Ray with 2 CPUs (shared between tests that use it)."""
    _init_local_ray()
    yield
    # left running for the next test; shut down at the end of the session


@pytest.fixture
def ray_cluster():
    """A real two-node Ray cluster on loopback (ray.cluster_utils.Cluster)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "object_store_memory": 100 * 1024 * 1024})
    # The second node also has a (logical) GPU and a custom resource, so tests can check
    # that trials asking for them land there.
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"special": 2},
                     object_store_memory=100 * 1024 * 1024)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass
