"""The driver crash release test at a small size (`release_tests/crash_test.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_crash_test_smoke(tmp_path):
    out = tmp_path / "figures.json"
    # seed 3 with p=0.5: the first kill comes during a checkpoint write, the second
    # after a random delay
    proc = subprocess.run(
        [sys.executable, "release_tests/crash_test.py", "--kills", "2", "--trials", "2",
         "--iterations", "40", "--seed", "3", "--max-delay", "1.0",
         "--checkpoint-kill-p", "0.5", "--work-dir", str(tmp_path / "work"),
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert figures["kills"] == 2
    assert [r["mode"] for r in figures["rounds"]] == ["checkpoint_write", "random_delay",
                                                      "none"]
    assert figures["kills_during_checkpoint_write"] == 1
    assert figures["half_written_checkpoints_at_kills"] >= 1
    assert figures["restores"] == 2  # the two runs after the kills restored the experiment
    assert figures["ok"] and not figures["lost"]
    assert figures["terminated"] == 2 and figures["trials_found"] == 2
    assert figures["missing_iterations"] == {} and figures["duplicated_iterations"] == {}
    assert figures["final_metric_mismatches"] == {}
    assert figures["resumed_rows"] > 0
    assert "survived 2 kills" in proc.stdout
