"""Benchmark: how fast the `tune` command starts and lists a large experiment.

Synthesises an experiment directory with N trials (default 10,000) in the real format:
the trials are ``Trial`` objects turned into state by ``trial_to_state`` and written by
the project's own ``ExperimentStateWriter``, and each trial gets a directory with
``params.json`` and ``result.json`` like a real run. Then it times whole commands, each
a fresh subprocess (interpreter start, imports, reading, printing), several times:

* ``tune --help`` (startup alone);
* ``tune list-trials DIR`` (every trial, default columns);
* ``tune list-trials DIR --sort loss --filter "status == TERMINATED" --limit 20``;
* ``tune show DIR --metric loss --mode min``.

Targets: startup well under a second; listing 10,000 trials under a second.

    python release_tests/cli_benchmark.py --num-trials 10000 --output cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGET_S = 1.0


def synthesise(path: str, num_trials: int, *, trial_dirs: bool = True, seed: int = 0) -> int:
    """Writes an experiment with ``num_trials`` finished trials into ``path``.

    Returns the size of the JSON state (``experiment_state.json`` and its finished
    trials' file) in bytes.
    """
    from tune_core.experiment.experiment_state import (
        STATE_FILE, ExperimentStateWriter, encode_finished, trial_to_state)
    from tune_core.experiment.trial import Trial, TrialStatus

    rng = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    start = time.time() - 3600
    trials: List[Trial] = []
    for i in range(num_trials):
        lr = 10 ** rng.uniform(-5, -1)
        width = rng.choice([32, 64, 128, 256])
        optimizer = rng.choice(["sgd", "adam"])
        config = {"lr": lr, "model": {"width": width}, "optimizer": optimizer, "epochs": 10}
        trial_id = f"bench_{i:05d}"
        tag = f"{i}_lr={lr:.4g},width={width},optimizer={optimizer}"
        trial = Trial(trial_id, config, trainable_name="train", experiment_tag=tag,
                      evaluated_params={"lr": lr, "model/width": width,
                                        "optimizer": optimizer},
                      experiment_path=path, dirname=f"train_{trial_id}_{tag}"[:120])
        errored = rng.random() < 0.02
        iterations = rng.randint(1, 10) if not errored else rng.randint(1, 3)
        t0 = start + i * 0.3
        history = []
        for it in range(1, iterations + 1):
            loss = 2.0 / it + rng.random() * 0.1 + lr * 10
            history.append({
                "loss": loss, "accuracy": 1.0 - loss / 3, "time_this_iter_s": 0.01,
                "done": it == iterations and not errored, "training_iteration": it,
                "trial_id": trial_id, "time_total_s": 0.01 * it, "timestamp": int(t0 + it),
                "date": time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(t0 + it)),
                "pid": 1000 + i % 8, "hostname": "bench", "node_ip": "127.0.0.1",
                "time_since_restore": 0.01 * it, "iterations_since_restore": it,
                "config": config, "experiment_tag": tag})
        trial.last_result = history[-1]
        trial.metric_analysis = {
            key: {"max": max(h[key] for h in history), "min": min(h[key] for h in history),
                  "last": history[-1][key]}
            for key in ("loss", "accuracy", "time_this_iter_s", "training_iteration",
                        "time_total_s", "timestamp", "pid", "time_since_restore",
                        "iterations_since_restore")}
        trial.num_results = iterations
        trial.start_time, trial.end_time = t0, t0 + iterations
        if errored:
            trial.status = TrialStatus.ERROR
            trial.num_failures = 1
            trial.error_msg = ("Traceback (most recent call last):\n  File \"train.py\", "
                               "line 12, in train\n    raise RuntimeError(\"diverged\")\n"
                               "RuntimeError: diverged\n")
            trial.error_file = os.path.join(path, trial.dirname, "error.txt")
        else:
            trial.status = TrialStatus.TERMINATED
        trials.append(trial)
        if trial_dirs:
            trial_dir = os.path.join(path, trial.dirname)
            os.makedirs(trial_dir, exist_ok=True)
            with open(os.path.join(trial_dir, "params.json"), "w") as f:
                json.dump(config, f)
            with open(os.path.join(trial_dir, "result.json"), "w") as f:
                f.writelines(json.dumps(h) + "\n" for h in history)
            if errored:
                with open(os.path.join(trial_dir, "error.txt"), "w") as f:
                    f.write(trial.error_msg)
    counts: Dict[str, int] = {}
    for t in trials:
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    # The same keys TuneController.save_state writes.
    json_state = {
        "experiment_name": os.path.basename(path), "trainable_name": "train",
        "search_alg": "BasicVariantGenerator", "scheduler": "FIFOScheduler",
        "status_counts": counts, "finished": True, "interrupted": False,
        "trials": [],
    }
    # As the engine writes them: finished trials in the append-only files, once. The CLI
    # never reads the pickles; an empty state pickle keeps the pair consistent.
    finished = [encode_finished(dict(trial_to_state(t), order=i)) for i, t in enumerate(trials)]
    ExperimentStateWriter(path).write(json_state, b"", finished=finished)
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
               if n == STATE_FILE or n.endswith(".jsonl"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(cmd: List[str], repeats: int) -> Dict[str, Any]:
    """Wall time and CPU time (user + sys) of ``cmd``, each run a fresh process.

    On a busy machine the wall time includes waiting for a core; the CPU time does not,
    and is close to what the wall time is on an idle one.
    """
    env = dict(os.environ, COLUMNS="160")
    times, cpus = [], []
    for _ in range(repeats):
        cpu0 = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return {"cmd": cmd, "wall_s": [round(t, 4) for t in times],
            "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "cpu_s": [round(t, 4) for t in cpus],
            "median_cpu_s": round(statistics.median(cpus), 4),
            "stdout_lines": proc.stdout.count("\n")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-trial-dirs", action="store_true",
                        help="write only the experiment state, no trial directories")
    parser.add_argument("--dir", help="where to write the experiment (default: a temporary "
                                      "directory, deleted afterwards)")
    parser.add_argument("--output", help="write the figures to this JSON file")
    args = parser.parse_args()

    tmp = None
    if args.dir:
        path = os.path.abspath(args.dir)
    else:
        tmp = tempfile.mkdtemp(prefix="tune_cli_bench_")
        path = os.path.join(tmp, "bench_experiment")
    try:
        start = time.perf_counter()
        size = synthesise(path, args.num_trials, trial_dirs=not args.no_trial_dirs)
        synth_s = time.perf_counter() - start
        print(f"Synthesised {args.num_trials} trials in {synth_s:.1f} s "
              f"(JSON state: {size / 1e6:.1f} MB) at {path}")
        module = [sys.executable, "-m", "tune_core"]
        script = os.path.join(os.path.dirname(sys.executable), "tune")
        commands = {
            "help (python -m tune_core --help)": module + ["--help"],
            "list_trials_all": module + ["list-trials", path],
            "list_trials_sort_filter_limit": module + [
                "list-trials", path, "--sort", "loss", "--filter", "status == TERMINATED",
                "--limit", "20"],
            "show": module + ["show", path, "--metric", "loss", "--mode", "min"],
        }
        if os.path.exists(script):
            commands["help (tune --help)"] = [script, "--help"]
            commands["list_trials_all (tune script)"] = [script, "list-trials", path]
        runs = {name: time_command(cmd, args.repeats) for name, cmd in commands.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"Load average {load:.2f} on {os.cpu_count()} CPUs (wall times include waiting "
              "for a core; CPU time does not)")
        print(f"{'command':<36} {'wall med':>9} {'wall min':>9} {'CPU med':>8}  "
              f"target < {TARGET_S:g} s")
        for name, r in runs.items():
            verdict = "OK" if r["median_s"] < TARGET_S else \
                "OK in CPU time" if r["median_cpu_s"] < TARGET_S else "MISSED"
            print(f"{name:<36} {r['median_s']:>9.3f} {r['min_s']:>9.3f} "
                  f"{r['median_cpu_s']:>8.3f}  {verdict}")
        figures = {"num_trials": args.num_trials, "state_bytes": size,
                   "synthesise_s": round(synth_s, 2), "repeats": args.repeats,
                   "target_s": TARGET_S, "python": sys.version.split()[0],
                   "load_average": load, "cpus": os.cpu_count(), "runs": runs}
        if args.output:
            with open(args.output, "w") as f:
                json.dump(figures, f, indent=2)
            print(f"Wrote {args.output}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
