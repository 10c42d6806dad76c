"""Benchmarks run at small sizes (their timings are not checked here: `make bench` measures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bookkeeping_overhead_smoke(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "release_tests/bookkeeping_overhead.py", "--num-trials", "4",
         "--duration", "0.1", "--systems", "tune_core", "ray_tune_reuse", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    for system in ("tune_core", "ray_tune_reuse"):
        assert figures["systems"][system]["trials"] == 4
        assert figures["systems"][system]["errors"] == 0
    assert "overhead" in proc.stdout


def test_multinode_storage_smoke(tmp_path):
    """Benchmark 6 at the tiniest size, both systems on the cluster (its figures are not
    checked; `make bench` runs one node too, for the ratio)."""
    out = tmp_path / "figures.json"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run(
        [sys.executable, "release_tests/multinode_storage.py", "--nodes", "2", "--trials", "2",
         "--results", "4", "--every", "2", "--kb", "4", "--topologies", "cluster",
         "--output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    for system in ("tune_core", "ray_tune"):
        row = figures["systems"][system]["cluster"]
        for run in ("baseline", "results", "checkpoints"):
            assert row[run]["errors"] == 0 and row[run]["trials"] == 2
        assert row["results"]["last_i"] == [4]
        assert row["results"]["nodes_used"] == 2  # spread over both CPU nodes
    assert "us/result" in proc.stdout and "ms/checkpoint" in proc.stdout


# The four benchmarks below at their tiniest sizes, each with one Ray Tune side so the
# comparison path keeps working. They spend most of their time waiting for Ray to start,
# so the module starts them all at once, the first time one of their tests asks, and each
# test waits for its own: together they take about as long as the slowest.
_SMOKE = {
    "result_throughput": ["--num-trials", "2", "--results-per-trial", "3",
                          "--systems", "tune_core", "ray_tune"],
    "startup": ["--import-runs", "1", "--fits", "2", "--systems", "tune_core", "tune_core_keep",
                "ray_tune"],
    "scale": ["--num-trials", "6", "--ray-tune-trials", "2", "--checkpoint-every", "2",
              "--systems", "tune_core", "ray_tune_reuse"],
    "vs_inprocess": ["--num-trials", "3", "--systems", "optuna", "tune_core",
                     "tune_core_keep", "ray_tune_reuse", "--profile"],
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("benchmarks")
    procs = {}
    for name, args in _SMOKE.items():
        out = tmp / f"{name}.json"
        procs[name] = (subprocess.Popen(
            [sys.executable, f"release_tests/{name}.py", *args, "--output", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finished(smoke_runs, name):
    proc, out = smoke_runs[name]
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout
    return stdout, json.loads(out.read_text())


def test_result_throughput_smoke(smoke_runs):
    stdout, figures = _finished(smoke_runs, "result_throughput")
    for system in ("tune_core", "ray_tune"):
        out = figures["systems"][system]
        assert out["results"] == 6 and out["errors"] == 0
        for key in ("results_per_s", "lag_median_s", "lag_p99_s", "wall_s"):
            assert out[key] is not None, key
    assert "throughput_ratio_vs_ray_tune" in figures
    assert "results/s" in stdout and "lag median" in stdout


def test_startup_smoke(smoke_runs):
    stdout, figures = _finished(smoke_runs, "startup")
    for system in ("tune_core", "ray_tune"):
        out = figures["systems"][system]
        assert out["import_after_ray"]["median_s"] > 0 and out["import_cold"]["median_s"] > 0
        assert out["first_result_cold_ray_s"] > 0
    assert "first_result_speedup_vs_ray_tune" in figures
    assert "import after ray" in stdout and "first result" in stdout
    # the second fit() with keep_workers_s started in the worker the first one kept
    assert figures["systems"]["tune_core_keep"]["first_result_warm_median_s"] > 0


def test_scale_smoke(smoke_runs):
    stdout, figures = _finished(smoke_runs, "scale")
    ours, theirs = figures["systems"]["tune_core"], figures["systems"]["ray_tune_reuse"]
    assert ours["trials"] == 6 and ours["errors"] == 0 and not ours["extrapolated"]
    assert [n for n, _, _ in ours["rss_at_completed"]] == [2, 4, 6]
    for key in ("maxrss_mb", "rss_sampled_peak_mb", "snapshot_s", "snapshot_pct_of_wall",
                "growth_mb_per_1000", "wall_for_num_trials_s"):
        assert ours[key] is not None, key
    assert ours["snapshots"] >= 1
    assert theirs["trials"] == 2 and theirs["errors"] == 0 and theirs["extrapolated"]
    assert "speedup_vs_ray_tune_reuse" in figures
    assert "extrapolated" in stdout and "snapshots" in stdout


def test_vs_inprocess_smoke(smoke_runs):
    stdout, figures = _finished(smoke_runs, "vs_inprocess")
    for system in ("optuna", "tune_core", "tune_core_keep", "ray_tune_reuse"):
        out = figures["systems"][system]
        assert out["trials"] == 3 and out["errors"] == 0 and out["wall_s"] > 0
    assert "ratio_tune_core_keep_vs_optuna" in figures
    assert "cumulative" in figures["systems"]["tune_core"]["profile_top15"]
    assert "ratio_tune_core_vs_optuna" in figures and "speedup_vs_ray_tune_reuse" in figures
    assert "optuna wall time" in stdout
