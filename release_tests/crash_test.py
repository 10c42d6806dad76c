"""Release test: a driver SIGKILLed again and again, restored each time, loses nothing.

An experiment of deterministic trials that checkpoint every iteration runs in a driver
process of its own (with its own local Ray). This script kills that process group with
SIGKILL at random moments: after a random delay, or (sometimes) exactly while a trial
is half-way through writing a checkpoint. Then it starts the driver again with
``Tuner.restore`` (or afresh, if the first run died before it saved any state), and
so on, ``--kills`` times; the last driver runs to the end. Finally it reads the files
and reports what, if anything, was lost: trials not TERMINATED, missing or duplicated
iterations in ``result.json``/``progress.csv``, rows or final metrics that differ from
an uninterrupted run, incomplete checkpoints.

    python release_tests/crash_test.py --kills 10 --trials 4 --iterations 60 --seed 0

Exits with status 1 when something was lost. Linux only (it finds the processes of a
killed driver through /proc).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "crash_test"
PARTS = ("part_a.json", "part_b.json")
MARKER_ENV = "TUNE_CORE_CRASH_TEST_MARKERS"   # where an armed save leaves its marker
TOKEN_ENV = "TUNE_CORE_CRASH_TEST_RUN"        # tags every process of one driver run
STATE_FILE = "experiment_state.json"


# --------------------------------------------------------------------------- the experiment

def next_x(x: float, lr: float, step: int) -> float:
    return x * (1.0 - lr) + lr * step


def expected_x(lr: float, iterations: int) -> List[float]:
    """``x`` after each step 1..iterations of an uninterrupted trial."""
    x, out = 1.0, []
    for step in range(1, iterations + 1):
        x = next_x(x, lr, step)
        out.append(x)
    return out


def learning_rates(trials: int) -> List[float]:
    return [round(0.05 + 0.9 * i / max(1, trials), 6) for i in range(trials)]


def _write_checkpoint(directory: str, state: Dict[str, Any], pause: float) -> None:
    """Writes the state in two files; when the run is armed, pauses half-way."""
    with open(os.path.join(directory, PARTS[0]), "w") as f:
        json.dump(state, f)
    markers = os.environ.get(MARKER_ENV)
    if markers and os.path.exists(os.path.join(markers, "armed")):
        open(os.path.join(markers, f"save_{os.getpid()}_{state['step']}"), "w").close()
        time.sleep(pause)  # the SIGKILL is meant to come now
    with open(os.path.join(directory, PARTS[1]), "w") as f:
        json.dump(state, f)


def _read_checkpoint(directory: str) -> Dict[str, Any]:
    """The state of a checkpoint; raises on a half-written or inconsistent one."""
    present = sorted(os.listdir(directory))
    if any(p not in present for p in PARTS):
        raise RuntimeError(f"half-written checkpoint {directory}: {present}")
    states = []
    for part in PARTS:
        with open(os.path.join(directory, part)) as f:
            states.append(json.load(f))
    if states[0] != states[1]:
        raise RuntimeError(f"inconsistent checkpoint {directory}: {states}")
    return states[0]


def _make_trainables():
    import tune_core as tune

    class Accumulator(tune.Trainable):
        def setup(self, config):
            self.step_n, self.x, self.restored_from = 0, 1.0, 0

        def step(self):
            time.sleep(self.config["step_s"])
            self.step_n += 1
            self.x = next_x(self.x, self.config["lr"], self.step_n)
            return {"step": self.step_n, "x": self.x, "restored_from": self.restored_from,
                    "done": self.step_n >= self.config["iterations"]}

        def save_checkpoint(self, checkpoint_dir):
            _write_checkpoint(checkpoint_dir, {"step": self.step_n, "x": self.x},
                              self.config["save_pause_s"])

        def load_checkpoint(self, checkpoint_dir):
            state = _read_checkpoint(checkpoint_dir)
            self.step_n, self.x = state["step"], state["x"]
            self.restored_from = self.step_n

    def accumulate(config):
        import tempfile

        step, x, restored_from = 0, 1.0, 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            state = _read_checkpoint(checkpoint.path)
            step, x = state["step"], state["x"]
            restored_from = step
        while step < config["iterations"]:
            time.sleep(config["step_s"])
            step += 1
            x = next_x(x, config["lr"], step)
            with tempfile.TemporaryDirectory() as d:
                _write_checkpoint(d, {"step": step, "x": x}, config["save_pause_s"])
                tune.report({"step": step, "x": x, "restored_from": restored_from},
                            checkpoint=tune.Checkpoint.from_directory(d))

    return {"class": Accumulator, "function": accumulate}


def run_driver(args: argparse.Namespace) -> None:
    """The driver process: a fresh run, or ``Tuner.restore`` when there is state."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    import tune_core as tune

    trainable = _make_trainables()[args.trainable]
    path = os.path.join(args.storage, NAME)
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    if tune.Tuner.can_restore(path):
        print("DRIVER restore", flush=True)
        tuner = tune.Tuner.restore(path, trainable)
    else:
        print("DRIVER fresh", flush=True)
        is_class = args.trainable == "class"
        tuner = tune.Tuner(
            trainable,
            param_space={"lr": tune.grid_search(learning_rates(args.trials)),
                         "iterations": args.iterations, "step_s": args.step_s,
                         "save_pause_s": args.save_pause},
            run_config=tune.RunConfig(
                storage_path=args.storage, name=NAME, verbose=0,
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=1 if is_class else 0)))
    results = tuner.fit()
    print(f"DRIVER done errors={results.num_errors}", flush=True)
    ray.shutdown()


# --------------------------------------------------------------------------- killing

def _session_pids(token: str) -> List[int]:
    """Processes of one driver run: they all inherit its token in their environment."""
    needle = f"{TOKEN_ENV}={token}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _wait_until_gone(token: str, grace_s: float = 30.0) -> int:
    """Waits for the Ray processes of a killed driver to exit (they follow their raylet
    within seconds); kills, by pid, those still there after ``grace_s``. Returns how many
    had to be killed."""
    deadline = time.monotonic() + grace_s
    while _session_pids(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    stragglers = _session_pids(token)
    for pid in stragglers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(stragglers)


def _rows_written(path: str) -> int:
    total = 0
    if os.path.isdir(path):
        for entry in os.listdir(path):
            f = os.path.join(path, entry, "result.json")
            if os.path.exists(f):
                with open(f, "rb") as fh:
                    total += fh.read().count(b"\n")
    return total


def _saved_checkpoints(path: str) -> set:
    """(trial, checkpoint) pairs the saved experiment state holds for running trials:
    what a restore resumes from."""
    try:
        with open(os.path.join(path, "experiment_state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):  # not written yet
        return set()
    return {(t.get("trial_id"), t.get("checkpoint")) for t in state.get("trials") or []
            if t.get("checkpoint")}


def _half_written(path: str) -> List[str]:
    """Checkpoint directories holding the first part of the state but not the second."""
    out = []
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            if os.path.exists(os.path.join(full, PARTS[0])) and \
                    not os.path.exists(os.path.join(full, PARTS[1])):
                out.append(os.path.relpath(full, path))
    return sorted(out)


def _start_driver(args: argparse.Namespace, markers: str, token: str, log) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), "--driver", "--storage", args.storage,
           "--trials", str(args.trials), "--iterations", str(args.iterations),
           "--step-s", str(args.step_s), "--save-pause", str(args.save_pause),
           "--cpus", str(args.cpus), "--trainable", args.trainable]
    env = dict(os.environ, **{MARKER_ENV: markers, TOKEN_ENV: token})
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)


def _tail(log_path: str, n: int = 3000) -> str:
    with open(log_path, errors="replace") as f:
        return f.read()[-n:]


def run_round(args, rng: random.Random, index: int, kill: bool) -> Dict[str, Any]:
    """One driver run; killed at a random moment when ``kill`` (else run to its end)."""
    path = os.path.join(args.storage, NAME)
    markers = os.path.join(args.work, f"markers_{index}")
    os.makedirs(markers)
    token = uuid.uuid4().hex
    log_path = os.path.join(args.work, f"driver_{index}.log")
    rows_before = _rows_written(path)
    saved_before = _saved_checkpoints(path)
    half_before = set(_half_written(path))
    mode = ("checkpoint_write" if rng.random() < args.checkpoint_kill_p else "random_delay") \
        if kill else "none"
    delay = rng.uniform(0.0, args.max_delay) if mode == "random_delay" else 0.0
    info: Dict[str, Any] = {"round": index, "mode": mode, "rows_before": rows_before}
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = _start_driver(args, markers, token, log)
    try:
        deadline = start + args.round_timeout
        if kill:
            # Kill only once this run has made progress, so that every round counts: new
            # rows, and a checkpoint in the saved state that the last run did not have
            # (how far a restore gets back; without it, how early a run's first results
            # arrive against its first state snapshot decided whether any round resumed).
            while (_rows_written(path) <= rows_before
                   or not _saved_checkpoints(path) - saved_before) and proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round {index}: no progress within "
                                       f"{args.round_timeout:.0f} s\n{_tail(log_path)}")
                time.sleep(0.02)
            if proc.poll() is None and mode == "random_delay":
                end = time.monotonic() + delay
                while time.monotonic() < end and proc.poll() is None:
                    time.sleep(0.01)
            elif proc.poll() is None:  # the next save stops half-way; kill it there
                open(os.path.join(markers, "armed"), "w").close()
                while not [m for m in os.listdir(markers) if m.startswith("save_")] \
                        and proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"round {index}: no checkpoint write within "
                                           f"{args.round_timeout:.0f} s\n{_tail(log_path)}")
                    time.sleep(0.005)
        if proc.poll() is None and kill:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            info["killed"] = True
        else:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            info["killed"] = False
            info["exit_code"] = rc
            if rc != 0:
                raise RuntimeError(f"round {index}: the driver exited with {rc}\n"
                                   f"{_tail(log_path)}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        info["stragglers_killed"] = _wait_until_gone(token)
    with open(log_path, errors="replace") as f:
        text = f.read()
    info["restored"] = "DRIVER restore" in text
    info["seconds"] = round(time.monotonic() - start, 2)
    info["rows_after"] = _rows_written(path)
    if info["killed"]:
        info["half_written_checkpoints"] = [d for d in _half_written(path)
                                            if d not in half_before]
        info["saves_cut_short"] = len([m for m in os.listdir(markers) if m.startswith("save_")])
    return info


# --------------------------------------------------------------------------- verifying

def verify(path: str, trials: int, iterations: int) -> Dict[str, Any]:
    """What was lost, read from the experiment's files (no Ray needed)."""
    from tune_core.experiment.experiment_state import read_experiment_json

    state = read_experiment_json(path)
    lrs = learning_rates(trials)
    wanted = list(range(1, iterations + 1))
    report: Dict[str, Any] = {
        "trials_found": len(state["trials"]), "terminated": 0, "not_terminated": {},
        "missing_iterations": {}, "duplicated_iterations": {}, "csv_missing_iterations": {},
        "csv_duplicated_iterations": {}, "row_mismatches": {}, "final_metric_mismatches": {},
        "discontinuities": {}, "incomplete_checkpoints": [], "failures": {},
        "resumed_rows": 0}
    seen_lrs = []
    for t in state["trials"]:
        tid = t["trial_id"]
        trial_dir = os.path.join(path, t["dirname"])
        lr = t["config"]["lr"]
        seen_lrs.append(lr)
        expected = expected_x(lr, iterations)
        if t["status"] == "TERMINATED":
            report["terminated"] += 1
        else:
            report["not_terminated"][tid] = t["status"]
        if t.get("num_failures"):
            report["failures"][tid] = t["num_failures"]
        rows = []
        result_file = os.path.join(trial_dir, "result.json")
        if os.path.exists(result_file):
            with open(result_file) as f:
                for line in f:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
        its = [r.get("training_iteration") for r in rows]
        counts = Counter(its)
        missing = [i for i in wanted if i not in counts]
        dups = sorted(i for i, c in counts.items() if c > 1)
        if missing:
            report["missing_iterations"][tid] = missing
        if dups:
            report["duplicated_iterations"][tid] = dups
        csv_its = []
        progress = os.path.join(trial_dir, "progress.csv")
        if os.path.exists(progress):
            with open(progress, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        csv_its.append(int(float(row["training_iteration"])))
                    except (KeyError, TypeError, ValueError):
                        pass
        csv_counts = Counter(csv_its)
        if [i for i in wanted if i not in csv_counts]:
            report["csv_missing_iterations"][tid] = [i for i in wanted if i not in csv_counts]
        if [i for i, c in csv_counts.items() if c > 1]:
            report["csv_duplicated_iterations"][tid] = sorted(
                i for i, c in csv_counts.items() if c > 1)
        bad, jumps = [], []
        for r in rows:
            it = r.get("training_iteration")
            if not isinstance(it, int) or not 1 <= it <= iterations:
                bad.append(it)
                continue
            if r.get("step") != it or r.get("x") != expected[it - 1]:
                bad.append(it)
            if r.get("restored_from", 0) + r.get("iterations_since_restore", 0) != it:
                jumps.append(it)
            if r.get("restored_from"):
                report["resumed_rows"] += 1
        if bad:
            report["row_mismatches"][tid] = bad
        if jumps:
            report["discontinuities"][tid] = jumps
        last = t.get("last_result") or {}
        if last.get("x") != expected[-1] or last.get("training_iteration") != iterations:
            report["final_metric_mismatches"][tid] = {
                "x": last.get("x"), "expected_x": expected[-1],
                "training_iteration": last.get("training_iteration")}
        if os.path.isdir(trial_dir):
            for entry in sorted(os.listdir(trial_dir)):
                full = os.path.join(trial_dir, entry)
                if entry.startswith("checkpoint_") and not entry.endswith(".tmp") and \
                        os.path.isdir(full) and not set(PARTS) <= set(os.listdir(full)):
                    report["incomplete_checkpoints"].append(os.path.relpath(full, path))
    report["configs_match"] = sorted(seen_lrs) == sorted(lrs)
    report["lost"] = bool(
        report["trials_found"] != trials or not report["configs_match"]
        or report["not_terminated"] or report["missing_iterations"]
        or report["duplicated_iterations"] or report["csv_missing_iterations"]
        or report["csv_duplicated_iterations"] or report["row_mismatches"]
        or report["final_metric_mismatches"] or report["discontinuities"]
        or report["incomplete_checkpoints"])
    return report


# --------------------------------------------------------------------------- main

def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="how many times to kill")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="release_tests/results/crash_test.json")
    parser.add_argument("--trainable", choices=("class", "function"), default="class")
    parser.add_argument("--step-s", type=float, default=0.1, help="seconds per iteration")
    parser.add_argument("--max-delay", type=float, default=2.0,
                        help="a random-delay kill comes within this many seconds of the "
                             "run's first progress")
    parser.add_argument("--checkpoint-kill-p", type=float, default=0.3,
                        help="chance that a kill comes during a checkpoint write")
    parser.add_argument("--save-pause", type=float, default=30.0,
                        help="how long an armed checkpoint write waits half-way (the kill "
                             "comes long before)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--round-timeout", type=float, default=900.0)
    parser.add_argument("--work-dir", default=None,
                        help="where the experiment goes (default: a new temporary dir, "
                             "deleted at the end unless something was lost)")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        run_driver(args)
        return {}
    if not os.path.isdir("/proc/self"):
        parser.error("this test finds the processes of a killed driver through /proc (Linux)")

    import tempfile

    args.work = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="tune_crash_test_"))
    args.storage = os.path.join(args.work, "storage")
    os.makedirs(args.storage, exist_ok=True)
    path = os.path.join(args.storage, NAME)
    if os.path.exists(path):
        parser.error(f"{path} exists; pass a new --work-dir")
    rng = random.Random(args.seed)
    print(f"{args.trials} trials x {args.iterations} iterations of {args.step_s:g} s "
          f"({args.trainable} trainable); up to {args.kills} kills; seed {args.seed}; "
          f"in {args.work}", flush=True)
    start = time.monotonic()
    rounds: List[Dict[str, Any]] = []
    finished_early = False
    while len([r for r in rounds if r["killed"]]) < args.kills:
        info = run_round(args, rng, len(rounds), kill=True)
        rounds.append(info)
        what = (f"killed ({info['mode']}" + (f", {len(info['half_written_checkpoints'])} "
                "checkpoint(s) half written" if info["mode"] == "checkpoint_write" else "")
                + ")") if info["killed"] else "finished before the kill"
        print(f"  round {info['round']:3d}: {'restore' if info['restored'] else 'fresh  '} "
              f"{info['seconds']:6.1f} s, results {info['rows_before']:5d} -> "
              f"{info['rows_after']:5d}, {what}", flush=True)
        if not info["killed"]:
            finished_early = True
            break
    if not finished_early:
        info = run_round(args, rng, len(rounds), kill=False)
        rounds.append(info)
        print(f"  round {info['round']:3d}: {'restore' if info['restored'] else 'fresh  '} "
              f"{info['seconds']:6.1f} s, results {info['rows_before']:5d} -> "
              f"{info['rows_after']:5d}, ran to the end", flush=True)
    wall = time.monotonic() - start
    report = verify(path, args.trials, args.iterations)
    killed = [r for r in rounds if r["killed"]]
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seed": args.seed,
        "trials": args.trials, "iterations": args.iterations, "step_s": args.step_s,
        "trainable": args.trainable, "kills_requested": args.kills,
        "kills": len(killed),
        "kills_during_checkpoint_write": sum(1 for r in killed
                                             if r["mode"] == "checkpoint_write"),
        "half_written_checkpoints_at_kills": sum(len(r["half_written_checkpoints"])
                                                 for r in killed),
        "restores": sum(1 for r in rounds if r["restored"]),
        "stragglers_killed": sum(r["stragglers_killed"] for r in rounds),
        "wall_s": round(wall, 2), "experiment_path": path,
        # a temporary work dir is deleted at the end unless something was lost
        "experiment_kept": args.work_dir is not None or report["lost"],
        **report, "ok": not report["lost"], "rounds": rounds}
    print(f"survived {figures['kills']} kills ({figures['kills_during_checkpoint_write']} during "
          f"a checkpoint write, {figures['half_written_checkpoints_at_kills']} checkpoint(s) "
          f"left half written) and {figures['restores']} restores in {wall:.1f} s")
    print(f"  trials TERMINATED {report['terminated']}/{args.trials}; retried failures "
          f"{sum(report['failures'].values())}; rows resumed from a checkpoint "
          f"{report['resumed_rows']}")
    if report["lost"]:
        for key in ("not_terminated", "missing_iterations", "duplicated_iterations",
                    "csv_missing_iterations", "csv_duplicated_iterations", "row_mismatches",
                    "final_metric_mismatches", "discontinuities", "incomplete_checkpoints"):
            if report[key]:
                print(f"  LOST {key}: {report[key]}")
        if report["trials_found"] != args.trials or not report["configs_match"]:
            print(f"  LOST trials: found {report['trials_found']} of {args.trials}, "
                  f"configs match: {report['configs_match']}")
    else:
        print("  nothing lost: every iteration exactly once, metrics as uninterrupted")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    if not figures["experiment_kept"]:
        import shutil

        shutil.rmtree(args.work, ignore_errors=True)  # kept when something was lost
    return figures


if __name__ == "__main__":
    figures = main()
    if figures and not figures["ok"]:
        sys.exit(1)
