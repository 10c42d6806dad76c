"""Benchmark 5: many small trials, this project against a plain in-process Optuna loop.

N trials of a trivial objective ``(x - 0.3) ** 2``, x uniform in [0, 1], suggested by
Optuna's TPE sampler with the same seed everywhere:

* ``optuna``: ``study.optimize`` in one process (the reference);
* ``tune_core``: ``searchers.optuna.OptunaSearch`` through ``tune.Tuner``;
* ``tune_core_keep``: the same, after an untimed ``fit()`` with
  ``TuneConfig(keep_workers_s=60)``, whose workers the timed ``fit()`` starts in (a driver
  that tunes again and again);
* ``ray_tune`` / ``ray_tune_reuse``: Ray Tune with its ``OptunaSearch`` (defaults, and
  ``reuse_actors=True``).

The tuners run as many trials at once as the CPUs allow (``--max-concurrent 0``: both
tuners' default, what a user who moves an Optuna loop into a ``Tuner`` gets; the issue's
Ray Tune figures are "with defaults" too): the driver then asks TPE for the next trial
while a worker runs the last one. ``--max-concurrent 1`` runs them one at a time like the
Optuna loop, every suggestion seeing every earlier result, which adds the driver's and
Ray's per-trial costs end to end. Wall time is that of ``fit()`` (or of ``create_study`` +
``optimize``), with Ray already running. ``--profile`` runs cProfile over tune_core's
``fit()`` in its child and prints the top entries by cumulative time;
``--phases`` times the parts of it instead (waiting for workers, creating trials,
callbacks, snapshots) without cProfile's slowdown.

    python release_tests/vs_inprocess.py --num-trials 100 --profile
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

SYSTEMS = ("optuna", "tune_core", "tune_core_keep", "ray_tune", "ray_tune_reuse")

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    system, n, cpus, seed, max_conc, mode, storage = sys.argv[1], int(sys.argv[2]), \\
        int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) or None, sys.argv[6], \\
        sys.argv[7]
    profile = mode == "profile"

    def objective_value(x):
        return (x - 0.3) ** 2

    if system == "optuna":
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        start = time.perf_counter()
        study = optuna.create_study(direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(lambda t: objective_value(t.suggest_float("x", 0.0, 1.0)), n_trials=n)
        wall = time.perf_counter() - start
        print("RESULT " + json.dumps({"wall_s": wall, "trials": len(study.trials),
                                      "errors": 0, "best": study.best_value}))
        sys.exit(0)

    import ray
    t = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - t
    if system.startswith("tune_core"):
        import tune_core as tune
        from searchers.optuna import OptunaSearch
        extra = {"keep_workers_s": 60.0} if system == "tune_core_keep" else {}
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
        extra = {"reuse_actors": True} if system == "ray_tune_reuse" else {}
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(config):
        tune.report({"loss": (config["x"] - 0.3) ** 2})

    # --phases: where the driver's time goes, summed over fit() (tune_core only).
    PHASES, FIRST_START = {}, []
    callbacks = []
    if mode == "phases":
        from tune_core.callback import CallbackList
        from tune_core.execution.tune_controller import TuneController

        def timed(owner, name, key):
            orig = getattr(owner, name)

            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return orig(*a, **k)
                finally:
                    PHASES[key] = PHASES.get(key, 0.0) + time.perf_counter() - t
            setattr(owner, name, wrapper)

        timed(ray, "wait", "waiting for workers (ray.wait)")
        timed(TuneController, "_create_trial", "creating trials (the searcher's suggestion)")
        timed(CallbackList, "_each", "callbacks (loggers, progress reporter)")
        timed(TuneController, "save_state", "experiment state snapshots")

        class FirstStart(tune.Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                if not FIRST_START:
                    FIRST_START.append(time.perf_counter())
        callbacks.append(FirstStart())

    if system == "tune_core_keep":  # an earlier fit() leaves its workers (untimed)
        workers = min(max_conc or cpus, cpus)  # as many as the timed fit() runs at once
        tune.Tuner(objective, param_space={"x": tune.grid_search([0.5] * workers)},
                   tune_config=tune.TuneConfig(**extra),
                   run_config=tune.RunConfig(storage_path=storage, name="earlier",
                                             verbose=0)).fit()
        PHASES.clear()
        FIRST_START.clear()
    tuner = tune.Tuner(
        objective, param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=n, max_concurrent_trials=max_conc,
            search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed)), **extra),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=callbacks))
    profile_text = None
    if profile:
        import cProfile, io, pstats
        prof = cProfile.Profile()
        prof.enable()
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    if profile:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
        profile_text = buf.getvalue()
    best = results.get_best_result()
    print("RESULT " + json.dumps({
        "wall_s": wall, "ray_init_s": ray_init_s, "trials": len(results),
        "errors": sum(1 for r in results if r.error), "best": best.metrics["loss"],
        "pids": len({r.metrics.get("pid") for r in results}), "profile": profile_text,
        "phases_s": PHASES or None,
        "first_worker_ready_s": FIRST_START[0] - start if FIRST_START else None}))
    ray.shutdown()
""")


def _mode(args: argparse.Namespace) -> str:
    return "profile" if args.profile else "phases" if args.phases else "none"


def run_system(system: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, system, str(args.num_trials), str(args.cpus),
             str(args.seed), str(args.max_concurrent),
             _mode(args) if system.startswith("tune_core") else "none", storage],
            capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{system} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=100)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-concurrent", type=int, default=0,
                        help="trials at once for the tuners (0, the default: as many as the "
                             "CPUs allow; 1: one at a time, like the Optuna loop)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile tune_core's fit() and print the top 15 (cumulative)")
    parser.add_argument("--phases", action="store_true",
                        help="time tune_core's fit() by phase (waiting for workers, creating "
                             "trials, callbacks, snapshots) and print them per trial")
    parser.add_argument("--output", default="release_tests/results/vs_inprocess.json")
    args = parser.parse_args(argv)

    figures = {"num_trials": args.num_trials, "cpus": args.cpus, "seed": args.seed,
               "max_concurrent": args.max_concurrent,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"{args.num_trials} trials of (x - 0.3)**2 with TPE (seed {args.seed}); tuners run "
          f"{args.max_concurrent or 'as many as fit'} at a time on {args.cpus} CPUs")
    for system in args.systems:
        out = run_system(system, args)
        profile = out.pop("profile", None)
        figures["systems"][system] = out
        print(f"  {system:16s} wall {out['wall_s']:8.3f} s   "
              f"{1000 * out['wall_s'] / max(1, out['trials']):7.1f} ms/trial   best "
              f"{out['best']:.2e}   trials {out['trials']}   errors {out['errors']}")
        if profile:
            figures["systems"][system]["profile_top15"] = profile
            print(f"  cProfile of tune_core's fit() (driver, main thread):\n{profile}")
        if out.get("phases_s"):
            n = max(1, out["trials"])
            print(f"  tune_core's fit() by phase: first trial's worker ready after "
                  f"{out['first_worker_ready_s']:.3f} s (inside the wait below)")
            for key, secs in sorted(out["phases_s"].items(), key=lambda kv: -kv[1]):
                print(f"    {1000 * secs / n:7.2f} ms/trial  {key}")
            rest = out["wall_s"] - sum(out["phases_s"].values())
            print(f"    {1000 * rest / n:7.2f} ms/trial  the rest (setup, controller, executor)")
    base = figures["systems"].get("optuna")
    if base:
        for system, out in figures["systems"].items():
            if system != "optuna":
                ratio = out["wall_s"] / base["wall_s"]
                figures[f"ratio_{system}_vs_optuna"] = ratio
                print(f"  {system} / optuna wall time: {ratio:.1f}x (target for tune_core: "
                      "within 3x)")
    ours = figures["systems"].get("tune_core")
    for other in ("ray_tune", "ray_tune_reuse"):
        if ours and other in figures["systems"]:
            ratio = figures["systems"][other]["wall_s"] / ours["wall_s"]
            figures[f"speedup_vs_{other}"] = ratio
            print(f"  {other} / tune_core wall time: {ratio:.1f}x")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
