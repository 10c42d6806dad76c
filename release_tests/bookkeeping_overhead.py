"""Benchmark 1: trial bookkeeping overhead, this project against Ray Tune in the same run.

N trials of a function that sleeps D seconds, 1 CPU each, on a local Ray with C CPUs.
The ideal wall time is N*D/C; the overhead is how much longer `fit()` takes.
Each system runs in its own subprocess with a fresh Ray, so neither warms the other up.

    python release_tests/bookkeeping_overhead.py --num-trials 40 --duration 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

SYSTEMS = {
    "tune_core": "",
    "ray_tune": "reuse_actors=False",
    "ray_tune_reuse": "reuse_actors=True",
}

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    system, n, d, cpus, storage = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \\
        int(sys.argv[4]), sys.argv[5]
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    if system == "tune_core":
        import tune_core as tune
        extra = {}
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        extra = {"reuse_actors": system == "ray_tune_reuse"}

    def sleeper(config):
        time.sleep(config["d"])
        tune.report({"done_sleeping": 1})

    tuner = tune.Tuner(
        sleeper, param_space={"d": d, "i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(**extra),
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    errors = sum(1 for r in results if r.error)
    pids = len({r.metrics.get("pid") for r in results})
    print("RESULT " + json.dumps({"wall_s": wall, "errors": errors, "pids": pids,
                                  "trials": len(results)}))
    ray.shutdown()
""")


def run_system(system: str, n: int, d: float, cpus: int) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.run([sys.executable, "-c", _CHILD, system, str(n), str(d), str(cpus),
                               storage], capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{system} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=40)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--output", default="release_tests/results/bookkeeping_overhead.json")
    args = parser.parse_args(argv)

    ideal = args.num_trials * args.duration / args.cpus
    figures = {"num_trials": args.num_trials, "duration_s": args.duration, "cpus": args.cpus,
               "ideal_s": ideal, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"{args.num_trials} trials x {args.duration:g} s on {args.cpus} CPUs; "
          f"ideal {ideal:.2f} s")
    for system in args.systems:
        out = run_system(system, args.num_trials, args.duration, args.cpus)
        out["overhead_pct"] = 100.0 * (out["wall_s"] / ideal - 1.0)
        figures["systems"][system] = out
        print(f"  {system:16s} wall {out['wall_s']:7.2f} s   overhead {out['overhead_pct']:6.1f}%"
              f"   worker processes {out['pids']:3d}   errors {out['errors']}")
    ours = figures["systems"].get("tune_core")
    for other in ("ray_tune", "ray_tune_reuse"):
        if ours and other in figures["systems"]:
            ratio = figures["systems"][other]["wall_s"] / ours["wall_s"]
            figures[f"speedup_vs_{other}"] = ratio
            print(f"  {other} / tune_core wall time: {ratio:.2f}x")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
