"""Every snippet in doc_code/ runs (small sizes, so the suite stays quick)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNIPPETS = sorted(glob.glob(os.path.join(ROOT, "doc_code", "*.py")))


@pytest.mark.parametrize("path", SNIPPETS, ids=os.path.basename)
def test_snippet_runs(path, tmp_path, request):
    # RAY_ADDRESS=local: a fresh Ray for each snippet, even if a cluster was started on
    # this machine with `ray start` (a bare ray.init() would join that one).
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_ADDRESS="local",
               TUNE_QUICKSTART_STORAGE=str(tmp_path), TUNE_QUICKSTART_EPOCHS="2",
               TUNE_QUICKSTART_SAMPLES="2", TUNE_DOC_STORAGE=str(tmp_path))
    if os.path.basename(path) == "storage.py":  # on the test S3 server
        env["TUNE_DOC_S3_URI"] = request.getfixturevalue("s3_bucket").uri("experiments")
    proc = subprocess.run([sys.executable, path], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if os.path.basename(path) == "quickstart_torch.py":
        assert "Best trial: val_loss=" in proc.stdout
        assert str(tmp_path) in proc.stdout


def test_readme_snippets_are_tested_code():
    """Each Python block in the README is an excerpt of a doc_code file that the tests run."""
    import re

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    sources = []
    for path in SNIPPETS:
        with open(path) as f:
            sources.append(f.read())
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        assert any(block.strip() in src for src in sources), block[:200]
