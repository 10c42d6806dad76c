"""The four packages import, stay light, expose curated names, and never use Ray Tune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, timeout: float = 240) -> str:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_import_is_light():
    out = run_python("""
        import json, sys
        import tune_core, searchers, schedulers, integrations
        heavy = ["pandas", "pyarrow", "torch", "optuna", "hyperopt", "ray"]
        print(json.dumps([m for m in heavy if m in sys.modules]))
    """)
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_experiment_never_imports_ray_tune(tmp_path):
    out = run_python(f"""
        import json, sys
        import ray
        import tune_core as tune, searchers, schedulers, integrations

        def train_fn(config):
            tune.report({{"x": config["x"]}})

        ray.init(address="local", num_cpus=1, include_dashboard=False)
        results = tune.Tuner(train_fn, param_space={{"x": tune.grid_search([1, 2])}},
                             tune_config=tune.TuneConfig(metric="x", mode="max"),
                             run_config=tune.RunConfig(storage_path={str(tmp_path)!r},
                                                       verbose=0)).fit()
        results.get_dataframe()
        assert results.get_best_result().metrics["x"] == 2
        bad = sorted(m for m in sys.modules
                     if m.split(".")[:2] in (["ray", "tune"], ["ray", "train"], ["ray", "air"]))
        print(json.dumps(bad))
        ray.shutdown()
    """)
    assert json.loads(out.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("package", ["tune_core", "searchers", "schedulers", "integrations"])
def test_public_names_are_curated(package):
    module = __import__(package)
    assert isinstance(module.__all__, list)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ lists {name!r}, which is missing"
    public = {n for n in dir(module) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert public - submodules - {"annotations"} <= set(module.__all__)


def test_a_trial_worker_imports_only_what_running_a_trial_needs():
    """Every trial's worker is a new process: it imports the worker and what ``report``
    needs, not the tuner, the search spaces or the progress reporter (tens of ms each)."""
    out = run_python("""
        import json, sys
        import tune_core.execution._worker
        import tune_core as tune
        tune.report, tune.get_checkpoint, tune.get_context, tune.Checkpoint
        print(json.dumps(sorted(m for m in ("tune_core.tuner", "tune_core.progress_reporter",
                                            "tune_core.search.variant_generator",
                                            "tune_core.execution.tune_controller")
                                if m in sys.modules)))
    """)
    assert json.loads(out.strip().splitlines()[-1]) == []
