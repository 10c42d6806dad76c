"""Benchmark 2: result throughput, this project against Ray Tune in the same run.

T concurrent trials (0.25 CPU each, so 8 fit on 2 CPUs) each call ``report`` R times as
fast as they can, with the default CSV and JSON loggers. Figures: results per second
over ``fit()`` (and over the span in which results were being decided on), and the lag
between a report (a wall-clock time the trainable puts in each result) and the
scheduler's decision on it (a FIFO scheduler subclass records ``time.time() - t_report``).
Each system runs in its own subprocess with a fresh Ray.

    python release_tests/result_throughput.py --num-trials 8 --results-per-trial 2000
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

SYSTEMS = ("tune_core", "ray_tune", "ray_tune_reuse")

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    system, n_trials, n_results, cpus, cpt, storage = sys.argv[1], int(sys.argv[2]), \\
        int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    LAGS = []       # seconds from a report to the scheduler's decision on it
    DECIDED = []    # wall-clock time of each decision
    if system == "tune_core":
        import tune_core as tune
        from tune_core.schedulers import FIFOScheduler

        class LagScheduler(FIFOScheduler):
            def on_trial_result(self, trial, result):
                now = time.time()
                LAGS.append(now - result["t_report"])
                DECIDED.append(now)
                return super().on_trial_result(trial, result)
        extra = {}
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler

        class LagScheduler(FIFOScheduler):
            def on_trial_result(self, tune_controller, trial, result):
                now = time.time()
                LAGS.append(now - result["t_report"])
                DECIDED.append(now)
                return super().on_trial_result(tune_controller, trial, result)
        extra = {"reuse_actors": system == "ray_tune_reuse"}

    def reporter(config):
        for i in range(config["n"]):
            tune.report({"i": i, "t_report": time.time()})

    tuner = tune.Tuner(
        tune.with_resources(reporter, {"cpu": cpt}),
        param_space={"n": n_results, "t": tune.grid_search(list(range(n_trials)))},
        tune_config=tune.TuneConfig(scheduler=LagScheduler(), **extra),
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    start, start_wall = time.perf_counter(), time.time()
    results = tuner.fit()
    wall = time.perf_counter() - start
    end_wall = time.time()
    lags = sorted(LAGS)
    def pct(q):
        return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None
    span = (DECIDED[-1] - DECIDED[0]) if len(DECIDED) > 1 else None
    print("RESULT " + json.dumps({
        "wall_s": wall, "trials": len(results),
        "errors": sum(1 for r in results if r.error),
        "results": len(LAGS),
        "results_per_s": len(LAGS) / wall,
        "results_per_s_steady": (len(LAGS) - 1) / span if span else None,
        # fit() outside that span: before the first decision (workers starting) and after
        # the last one (results, logs and state written, workers ended)
        "before_first_decision_s": DECIDED[0] - start_wall if DECIDED else None,
        "after_last_decision_s": end_wall - DECIDED[-1] if DECIDED else None,
        "lag_median_s": pct(0.5), "lag_p99_s": pct(0.99), "lag_max_s": lags[-1] if lags else None,
        "last_iterations": sorted(r.metrics.get("training_iteration", 0) for r in results)}))
    ray.shutdown()
""")


def run_system(system: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, system, str(args.num_trials),
             str(args.results_per_trial), str(args.cpus), str(args.cpus_per_trial), storage],
            capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{system} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _ms(value) -> str:
    return "    n/a" if value is None else f"{1000 * value:7.1f}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=8)
    parser.add_argument("--results-per-trial", type=int, default=2000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=0.25)
    parser.add_argument("--systems", nargs="+", default=["tune_core", "ray_tune"],
                        choices=SYSTEMS)
    parser.add_argument("--output", default="release_tests/results/result_throughput.json")
    args = parser.parse_args(argv)

    total = args.num_trials * args.results_per_trial
    figures = {"num_trials": args.num_trials, "results_per_trial": args.results_per_trial,
               "cpus": args.cpus, "cpus_per_trial": args.cpus_per_trial,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"{args.num_trials} trials x {args.results_per_trial} results ({total} in all), "
          f"{args.cpus_per_trial:g} CPU each on {args.cpus} CPUs")
    for system in args.systems:
        out = run_system(system, args)
        figures["systems"][system] = out
        steady = out["results_per_s_steady"]
        print(f"  {system:16s} wall {out['wall_s']:7.2f} s   {out['results_per_s']:8.0f} "
              f"results/s   steady {steady or 0:8.0f}/s   lag median {_ms(out['lag_median_s'])}"
              f" ms  p99 {_ms(out['lag_p99_s'])} ms   results {out['results']}"
              f"   errors {out['errors']}")
        if out.get("before_first_decision_s") is not None:
            print(f"  {'':16s} first decision {out['before_first_decision_s']:.2f} s into "
                  f"fit(); fit() returned {out['after_last_decision_s']:.2f} s after the last")
    ours = figures["systems"].get("tune_core")
    for other in ("ray_tune", "ray_tune_reuse"):
        if ours and other in figures["systems"]:
            ratio = ours["results_per_s"] / figures["systems"][other]["results_per_s"]
            figures[f"throughput_ratio_vs_{other}"] = ratio
            steady = [figures["systems"][s]["results_per_s_steady"] for s in ("tune_core", other)]
            if all(steady):
                figures[f"steady_throughput_ratio_vs_{other}"] = steady[0] / steady[1]
            print(f"  tune_core / {other} results per second: {ratio:.1f}x over fit(), "
                  + (f"{steady[0] / steady[1]:.1f}x steady" if all(steady) else "steady n/a")
                  + " (target >= 10x)")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
