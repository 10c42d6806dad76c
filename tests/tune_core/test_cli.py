"""The `tune` command line, run as a subprocess over experiments made by real `Tuner.fit()`s."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import tune_core as tune

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TUNE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "tune")


def train_fn(config):
    for i in range(3):
        if config["lr"] > 0.05 and i == 1:
            raise ValueError("lr too big: boom")
        tune.report({"loss": config["lr"] * (3 - i), "acc": (i + 1) / 3})


_PROJECT = {}


@pytest.fixture
def project(ray_local, tmp_path_factory):
    """A project directory with two experiments, made once for this module:

    * ``alpha``: lr in 0.001, 0.01, 0.1 (the last one fails at its second iteration),
      a nested ``model/width``; metric and mode set in TuneConfig;
    * ``beta``: two trials that succeed.
    """
    if not _PROJECT:
        root = str(tmp_path_factory.mktemp("cli_project"))
        tune.Tuner(train_fn, param_space={
            "lr": tune.grid_search([0.001, 0.01, 0.1]),
            "model": {"width": tune.choice([16, 32])}, "optimizer": "sgd"},
            tune_config=tune.TuneConfig(metric="loss", mode="min"),
            run_config=tune.RunConfig(storage_path=root, name="alpha", verbose=0)).fit()
        tune.Tuner(train_fn, param_space={"lr": tune.grid_search([0.002, 0.02])},
                   run_config=tune.RunConfig(storage_path=root, name="beta", verbose=0)).fit()
        _PROJECT["root"] = root
    return _PROJECT["root"]


@pytest.fixture
def alpha(project):
    return os.path.join(project, "alpha")


def run(*args, columns=200, env=None, command=None):
    full_env = dict(os.environ, COLUMNS=str(columns), **(env or {}))
    cmd = (command or [sys.executable, "-m", "tune_core"]) + [str(a) for a in args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=120)


def ok(*args, **kwargs):
    proc = run(*args, **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def table(out):
    """The header and the rows of the table in ``out``, as lists of cells."""
    lines = out.splitlines()
    sep = next(i for i, line in enumerate(lines) if line.startswith("---"))
    rows = []
    for line in lines[sep + 1:]:
        if not line.strip() or line.startswith(("Showing", "Columns dropped", "Wrote")):
            break
        rows.append(line.split())
    return lines[sep - 1].split(), rows


def fails(*args, code, **kwargs):
    proc = run(*args, **kwargs)
    assert proc.returncode == code, proc.stdout + proc.stderr
    message = proc.stderr.strip().splitlines()
    assert len(message) == 1, proc.stderr
    return message[0]


# --------------------------------------------------------------------------- the script


def test_tune_script_is_this_projects():
    assert os.path.exists(TUNE_SCRIPT), f"{TUNE_SCRIPT} is missing: run `make setup`"
    with open(TUNE_SCRIPT) as f:
        assert "tune_core.cli" in f.read(), f"{TUNE_SCRIPT} is not ours (Ray Tune's?)"
    out = ok("--help", command=[TUNE_SCRIPT])
    for name in ("list-trials", "list-experiments", "show"):
        assert name in out


def test_help_and_no_heavy_imports(alpha):
    assert "list-trials" in ok("--help")
    assert "--result-columns" in ok("list-trials", "--help")
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from tune_core.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list-trials", {alpha!r}]) == 0
            assert main(["show", {alpha!r}]) == 0
        print(json.dumps([m for m in ("ray", "pandas", "pyarrow") if m in sys.modules]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_state_file_name_matches_the_writer():
    from tune_core import cli
    from tune_core.experiment import experiment_state

    assert cli.STATE_FILE == experiment_state.STATE_FILE


# --------------------------------------------------------------------------- list-trials


def test_list_trials_default_columns(alpha):
    out = ok("list-trials", alpha)
    assert out.splitlines()[0].startswith("Experiment alpha")
    assert "3 trials: 2 TERMINATED, 1 ERROR" in out.splitlines()[0]
    header, rows = table(out)
    assert header[:2] == ["trial_id", "status"]
    for name in ("config/lr", "config/model/width", "training_iteration", "time_total_s",
                 "loss", "acc"):
        assert name in header
    assert len(rows) == 3
    statuses = sorted(r[header.index("status")] for r in rows)
    assert statuses == ["ERROR", "TERMINATED", "TERMINATED"]
    assert "Showing 3 trials." in out


def test_sort_desc_and_limit(alpha):
    header, rows = table(ok("list-trials", alpha, "--sort", "config/lr", "--desc"))
    lrs = [float(r[header.index("config/lr")]) for r in rows]
    assert lrs == [0.1, 0.01, 0.001]
    out = ok("list-trials", alpha, "--sort", "loss", "--limit", "2")
    header, rows = table(out)
    assert [float(r[header.index("loss")]) for r in rows] == [0.001, 0.01]
    assert "Showing 2 of 3 trials." in out
    # several sort columns, the first most significant; bare config keys work too
    header, rows = table(ok("list-trials", alpha, "--sort", "status", "lr"))
    assert [r[header.index("status")] for r in rows] == ["ERROR", "TERMINATED", "TERMINATED"]
    assert [float(r[header.index("config/lr")]) for r in rows][1:] == [0.001, 0.01]


def test_filters(alpha):
    header, rows = table(ok("list-trials", alpha, "--filter", "config/lr < 0.05"))
    assert sorted(float(r[header.index("config/lr")]) for r in rows) == [0.001, 0.01]
    # numbers compare as numbers: "1e-2" is 0.01
    header, rows = table(ok("list-trials", alpha, "--filter", "config/lr == 1e-2"))
    assert [float(r[header.index("config/lr")]) for r in rows] == [0.01]
    header, rows = table(ok("list-trials", alpha, "--filter", "status == ERROR"))
    assert [r[header.index("status")] for r in rows] == ["ERROR"]
    header, rows = table(ok("list-trials", alpha, "--filter", "status != ERROR",
                            "--filter", "training_iteration >= 3"))
    assert len(rows) == 2
    out = ok("list-trials", alpha, "--filter", "loss > 100")
    assert "Showing 0 of 3 trials." in out


def test_columns_and_result_columns(alpha):
    out = ok("list-trials", alpha, "--columns", "trial_id", "config/model/width", "error",
             "--result-columns", "training_iteration", "loss", "--sort", "config/lr")
    header, rows = table(out)
    assert header == ["trial_id", "config/model/width", "error", "training_iteration", "loss"]
    assert all(r[1] in ("16", "32") for r in rows)
    assert "ValueError: lr too big: boom" in out.splitlines()[-2]  # the lr=0.1 trial, last


def test_narrow_terminal_drops_columns_and_says_which(alpha):
    out = ok("list-trials", alpha, columns=60)
    lines = out.splitlines()
    header, rows = table(out)
    table_lines = lines[1:3 + len(rows)]
    assert all(len(line) <= 60 for line in table_lines), table_lines
    assert header[:2] == ["trial_id", "status"]
    note = next(line for line in lines if line.startswith("Columns dropped"))
    assert "(60)" in note
    dropped = note.split(": ", 1)[1].split(". ")[0].split(", ")
    wide = table(ok("list-trials", alpha))[0]
    assert dropped and set(dropped) == set(wide) - set(header)
    # the metric (when known) is kept before other columns
    header = table(ok("list-trials", alpha, "--metric", "loss", "--mode", "min",
                      columns=60))[0]
    assert header[:2] == ["trial_id", "status"] and "loss" in header


def test_output_csv_and_pkl(alpha, tmp_path):
    out_csv = tmp_path / "trials.csv"
    ok("list-trials", alpha, "--sort", "config/lr", "--output", out_csv, columns=40)
    with open(out_csv, newline="") as f:
        records = list(csv.DictReader(f))
    assert [float(r["config/lr"]) for r in records] == [0.001, 0.01, 0.1]
    # all selected columns go to the file, also those the terminal had no room for
    assert {"trial_id", "status", "config/model/width", "loss", "acc"} <= set(records[0])
    assert [r["status"] for r in records] == ["TERMINATED", "TERMINATED", "ERROR"]

    import pandas as pd

    out_pkl = tmp_path / "trials.pkl"
    ok("list-trials", alpha, "--filter", "status == TERMINATED", "--columns", "trial_id",
       "config/lr", "--result-columns", "loss", "--output", out_pkl)
    df = pd.read_pickle(out_pkl)
    assert list(df.columns) == ["trial_id", "config/lr", "loss"]
    assert sorted(df["config/lr"]) == [0.001, 0.01]
    assert df["loss"].dtype.kind == "f"


def test_never_unpickles(alpha, tmp_path):
    copy = tmp_path / "alpha"
    shutil.copytree(alpha, copy)
    pickles = [n for n in os.listdir(copy) if n.endswith(".pkl")]
    # tuner.pkl, the state's generation and its finished trials' pickles
    assert "tuner.pkl" in pickles and len(pickles) == 3
    for name in pickles:  # unpickling these would fail (and never run code)
        (copy / name).write_bytes(b"not a pickle")
    assert len(table(ok("list-trials", copy))[1]) == 3
    assert "BasicVariantGenerator" in ok("show", copy)


# --------------------------------------------------------------------------- list-experiments


def test_list_experiments(project, tmp_path):
    out = ok("list-experiments", project)
    assert out.splitlines()[0].endswith("2 experiments")
    header, rows = table(out)
    assert header[:3] == ["experiment", "status", "trials"]
    assert {"start_time", "duration", "search_alg"} <= set(header)
    header, rows = table(ok("list-experiments", project, "--columns", "experiment", "status",
                            "trials", "TERMINATED", "ERROR"))
    by_name = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_name) == {"alpha", "beta"}
    assert by_name["alpha"]["trials"] == "3" and by_name["beta"]["trials"] == "2"
    assert by_name["alpha"]["ERROR"] == "1" and by_name["alpha"]["TERMINATED"] == "2"
    assert by_name["beta"]["ERROR"] == "0"
    assert by_name["alpha"]["status"] == "finished"

    out = ok("list-experiments", project, "--metric", "loss", "--mode", "min",
             "--sort", "trials", "--desc", "--limit", "1", "--columns", "experiment",
             "best", "best_trial", "--result-columns", "config/lr")
    header, rows = table(out)
    row = dict(zip(header, rows[0]))
    assert row["experiment"] == "alpha" and float(row["best"]) == 0.001
    assert float(row["config/lr"]) == 0.001
    assert "Showing 1 of 2 experiments." in out

    header, rows = table(ok("list-experiments", project, "--filter", "ERROR == 0",
                            "--columns", "experiment", "trials"))
    assert header == ["experiment", "trials"] and rows == [["beta", "2"]]

    out_csv = tmp_path / "exps.csv"
    ok("list-experiments", project, "--output", out_csv)
    with open(out_csv, newline="") as f:
        records = list(csv.DictReader(f))
    assert sorted(r["experiment"] for r in records) == ["alpha", "beta"]
    assert all(float(r["duration"]) >= 0 and float(r["start_time"]) > 0 for r in records)


# --------------------------------------------------------------------------- show


def test_show(alpha):
    out = ok("show", alpha)
    assert "Experiment:  alpha" in out
    assert "BasicVariantGenerator" in out and "FIFOScheduler" in out
    assert "3: 2 TERMINATED, 1 ERROR" in out
    # the search space as written, and TuneConfig's metric/mode, from experiment_state.json
    assert "lr: grid_search([0.001,0.01,0.1])" in out
    assert "model/width: choice([16, 32])" in out
    assert "Metric:      loss (min)" in out
    assert "Best trial:  " in out
    assert "Errors (1 trial):" in out
    assert "error.txt): ValueError: lr too big: boom" in out

    out = ok("show", alpha, "--metric", "loss", "--mode", "min", "--error-lines", "2")
    assert "Metric:      loss (min)" in out
    best = out.split("Best trial:", 1)[1]
    assert best.lstrip().split()[1:4] == ["(loss", "=", "0.001,"]
    assert "config/lr: 0.001" in best and "config/optimizer: sgd" in best
    assert "Traceback (most recent call last):" in out


# --------------------------------------------------------------------------- errors


def test_errors_name_the_path_and_what_was_expected(project, alpha, tmp_path):
    missing = tmp_path / "nope"
    msg = fails("list-trials", missing, code=1)
    assert str(missing) in msg and "no such directory" in msg and "experiment_state.json" in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("list-trials", "show"):
        msg = fails(command, empty, code=1)
        assert str(empty) in msg and "not an experiment" in msg

    msg = fails("list-trials", project, code=1)
    assert "list-experiments" in msg  # it holds experiments: says which command to use
    msg = fails("list-experiments", alpha, code=1)
    assert "is one experiment" in msg
    msg = fails("list-experiments", empty, code=1)
    assert "holds no experiments" in msg

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "experiment_state.json").write_text("{not json")
    assert "not valid JSON" in fails("list-trials", broken, code=1)


def test_usage_errors(alpha, tmp_path):
    msg = fails("list-trials", alpha, "--filter", "loss ~ 3", code=2)
    assert "--filter" in msg and "COLUMN OP VALUE" in msg
    msg = fails("list-trials", alpha, "--filter", "loss <", code=2)
    assert "COLUMN OP VALUE" in msg
    msg = fails("list-trials", alpha, "--sort", "no_such_column", code=2)
    assert "unknown column 'no_such_column'" in msg
    msg = fails("list-trials", alpha, "--filter", "nope == 1", code=2)
    assert "unknown column 'nope'" in msg
    msg = fails("list-trials", alpha, "--columns", "nope", code=2)
    assert "--columns" in msg
    msg = fails("list-trials", alpha, "--output", tmp_path / "x.txt", code=2)
    assert ".csv or .pkl" in msg
    msg = fails("list-experiments", os.path.dirname(alpha), "--sort", "nope", code=2)
    assert "unknown column 'nope'" in msg
    proc = run("list-trials")  # argparse: missing argument
    assert proc.returncode == 2 and "EXPERIMENT_PATH" in proc.stderr


# --------------------------------------------------------------------------- S3


def test_s3_uri(alpha, project, s3_bucket):
    import pyarrow.fs

    for name in ("alpha", "beta"):
        pyarrow.fs.copy_files(os.path.join(project, name), s3_bucket.path(f"exps/{name}"),
                              destination_filesystem=s3_bucket.fs)
    uri = s3_bucket.uri("exps/alpha")
    out = ok("list-trials", uri, "--sort", "config/lr")
    header, rows = table(out)
    assert [float(r[header.index("config/lr")]) for r in rows] == [0.001, 0.01, 0.1]
    assert "testing:testing@" not in out  # credentials in the URI are never printed
    assert "3: 2 TERMINATED, 1 ERROR" in ok("show", uri)

    header, rows = table(ok("list-experiments", s3_bucket.uri("exps")))
    assert sorted(r[0] for r in rows) == ["alpha", "beta"]

    msg = fails("list-trials", s3_bucket.uri("exps/missing"), code=1)
    assert "no such directory" in msg and "testing:testing@" not in msg


# --------------------------------------------------------------------------- parsing


def test_state_is_parsed_whole_when_a_config_key_looks_like_metric_analysis(tmp_path):
    from tune_core import cli

    trial = {"trial_id": "t1", "status": "TERMINATED",
             "config": {"metric_analysis": {"a": 1}, "x": 2}, "evaluated_params": {},
             "resources": {}, "last_result": {"loss": 1.5},
             "metric_analysis": {"loss": {"min": 1.5, "max": 1.5, "last": 1.5}},
             "num_results": 1}
    data = json.dumps({"trials": [trial, dict(trial, trial_id="t2")]}).encode()
    state = cli._parse_state(None, data)
    assert [t["config"] for t in state["trials"]] == [trial["config"]] * 2
    assert state["trials"][1]["last_result"] == {"loss": 1.5}
    # the common case: the per-trial statistics are cut out before parsing
    plain = dict(trial, config={"x": 2})
    state = cli._parse_state(None, json.dumps({"trials": [plain]}).encode())
    assert state["trials"][0]["config"] == {"x": 2}
    assert "metric_analysis" not in state["trials"][0]
