"""release_tests/cluster.yaml is a cluster config Ray's launcher accepts."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "release_tests", "cluster.yaml")
SCHEMA = os.path.join(os.path.dirname(ray.__file__), "autoscaler", "ray-schema.json")


def load():
    with open(CONFIG) as f:
        return yaml.safe_load(f)


def test_matches_rays_cluster_config_schema():
    with open(SCHEMA) as f:
        jsonschema.validate(load(), json.load(f))


def test_the_launcher_accepts_it_with_its_defaults_filled_in():
    config = prepare_config(load())  # what `ray up` does before anything else
    validate_config(config)
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert {"cpu_worker", "gpu_worker"} <= set(types)
    assert any(t["node_config"]["InstanceType"].startswith("g4dn") for t in types.values())


def test_every_node_installs_this_project_and_the_drivers_ray():
    config = load()
    assert config["file_mounts"] == {"~/tune_core_project": "."}
    setup = " ".join(config["setup_commands"])
    assert "$HOME/tune_core_project[all]" in setup
    assert f"ray[default]=={ray.__version__}" in setup


def test_the_schema_check_is_not_a_formality():
    config = load()
    config["available_node_types"]["head"]["min_workerz"] = 1
    with open(SCHEMA) as f:
        with pytest.raises(jsonschema.ValidationError, match="min_workerz"):
            jsonschema.validate(config, json.load(f))
