"""Benchmarks run at small sizes (their timings are not checked here: `make bench` measures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
