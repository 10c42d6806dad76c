"""The `tune` command benchmark at a small size (`release_tests/cli_benchmark.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_benchmark_smoke(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "release_tests/cli_benchmark.py", "--num-trials", "200",
         "--repeats", "1", "--dir", str(tmp_path / "experiment"), "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert figures["num_trials"] == 200
    listing = figures["runs"]["list_trials_all"]
    # every trial listed: header line, column names, separator, 200 rows, the summary
    assert listing["stdout_lines"] >= 203
    assert listing["median_s"] > 0 and listing["median_cpu_s"] > 0
    assert "list_trials_sort_filter_limit" in figures["runs"] and "show" in figures["runs"]
    # the synthesised experiment is in the real format: the project's own reader loads it
    import tune_core as tune

    grid = tune.ResultGrid.from_path(str(tmp_path / "experiment"))
    assert len(grid) == 200
