"""End-to-end checks every searcher goes through on a real local Ray (use with ``ray_local``).

* :func:`check_max_concurrent`: ``max_concurrent_trials`` is honoured (measured from the
  trials' own start/end times) and every trial got its own configuration.
* :func:`check_restore_mid_run`: a run that stops mid-search (fail_fast on a planned
  failure) restores with ``Tuner.restore`` and finishes the search without repeating a
  suggestion; returns the searcher as saved before and after, for searcher-specific checks.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Tuple

import tune_core as tune
from tune_core.experiment.experiment_state import load_experiment_state
from tune_core.search.searcher import Searcher

SPACE = {"x": tune.uniform(0, 1), "y": tune.choice([0.0, 0.5]), "const": 7}


def timed(config: Dict[str, Any]) -> None:
    start = time.time()
    time.sleep(0.4)
    tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"], "start": start,
                 "end": time.time()})


def max_overlap(rows: List[Dict[str, Any]]) -> int:
    events = sorted([(r["start"], 1) for r in rows] + [(r["end"], -1) for r in rows])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def check_max_concurrent(searcher: Searcher, limit: int, tmp_path: Any,
                         num_samples: int = 8) -> Any:
    trainable = tune.with_resources(timed, {"cpu": 0.25})
    results = tune.Tuner(
        trainable, param_space=dict(SPACE),
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=num_samples,
                                    max_concurrent_trials=limit, search_alg=searcher),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="e2e", verbose=0)).fit()
    rows = [r.metrics for r in results]
    assert len(rows) == num_samples and not results.errors
    assert all(r.config["const"] == 7 for r in results)
    assert len({r.config["x"] for r in results}) == num_samples
    peak = max_overlap(rows)
    assert peak <= limit
    if limit >= 4:
        assert peak >= 2  # really concurrent
    return results


def failing_third(config: Dict[str, Any]) -> None:
    marker = config["marker"]
    with open(marker + ".count", "a") as f:
        f.write("x")
    with open(marker + ".count") as f:
        n = len(f.read())
    if n == 3 and os.path.exists(marker):
        raise RuntimeError("planned failure of the third trial")
    tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"]})


def check_restore_mid_run(make: Callable[[], Searcher], tmp_path: Any,
                          num_samples: int = 6) -> Tuple[Searcher, Searcher, Any]:
    """Runs until the third trial fails (fail_fast), restores, finishes.

    Returns (searcher saved at the failure, searcher saved at the end, results).
    """
    marker = str(tmp_path / "fail")
    open(marker, "w").close()
    space = dict(SPACE, marker=marker)
    path = os.path.join(str(tmp_path), "restore")
    results = tune.Tuner(
        failing_third, param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=num_samples,
                                    max_concurrent_trials=1, search_alg=make()),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="restore", verbose=0,
                                  failure_config=tune.FailureConfig(fail_fast=True))).fit()
    assert len(results.errors) == 1
    assert len(results) == 3  # stopped mid-run, at the failure
    _, state = load_experiment_state(path)
    before = state["search_alg"].searcher
    os.remove(marker)

    results = tune.Tuner.restore(path, failing_third, restart_errored=True).fit()
    assert len(results) == num_samples and not results.errors
    xs = [r.config["x"] for r in results]
    assert len(set(xs)) == num_samples  # no suggestion repeated
    assert all(r.config["const"] == 7 for r in results)
    _, state = load_experiment_state(path)
    return before, state["search_alg"].searcher, results
