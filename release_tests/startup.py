"""Benchmark 3: start-up, this project against Ray Tune in the same run.

Two figures per system:

* import time of ``import tune_core`` (and every name of its ``__all__``, which it loads on
  first use) / ``from ray import tune`` in a fresh interpreter, with
  ``ray`` already imported ("after ray") and without ("cold": the interpreter imports
  whatever the package needs; the OS file cache is warm, so this is not a cold disk);
  the median of several subprocesses;
* time from ``Tuner.fit()`` to the first result reaching the driver (a callback's
  ``on_trial_result``), with Ray already running, for a trainable that reports at once.
  Each child process runs ``fit()`` several times: the first in a fresh Ray (its worker
  processes still starting) and the rest once Ray is warm. ``tune_core_keep`` is
  tune_core with ``TuneConfig(keep_workers_s=60)``: a fit() after the first one starts
  its trial in the worker process the previous fit() left;
* Ray's own floor under that: a 1-CPU placement group and a trivial actor in it, from the
  request to the actor's first reply (every trial's worker is such an actor), measured in
  the same process after the fits. Ray reuses an idle worker process it started ahead
  when there is one and starts a new Python process otherwise, hence its spread.

    python release_tests/startup.py --import-runs 7 --fits 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

SYSTEMS = ("tune_core", "tune_core_keep", "ray_tune", "ray_tune_reuse")
# tune_core loads each public name's module on first use: its figure includes touching
# every name of ``tune_core.__all__``, so that it counts what ``from ray import tune``
# (which loads its API at once) counts.
_IMPORTS = {"tune_core": "import tune_core; [getattr(tune_core, n) for n in tune_core.__all__]",
            "ray_tune": "from ray import tune"}

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    system, fits, cpus, storage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    FIRST = []
    if system.startswith("tune_core"):
        import tune_core as tune
        # tune_core_keep: idle workers outlive fit() for the next one (keep_workers_s)
        base, extra = tune.Callback, {"keep_workers_s": 60.0} if system == "tune_core_keep" \
            else {}
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        base, extra = tune.Callback, {"reuse_actors": system == "ray_tune_reuse"}

    class FirstResult(base):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not FIRST:
                FIRST.append(time.perf_counter())

    def quick(config):
        tune.report({"x": config["x"]})

    to_first, walls = [], []
    for i in range(fits):
        FIRST.clear()
        tuner = tune.Tuner(quick, param_space={"x": i},
                           tune_config=tune.TuneConfig(**extra),
                           run_config=tune.RunConfig(storage_path=storage, name=f"fit{i}",
                                                     verbose=0, callbacks=[FirstResult()]))
        start = time.perf_counter()
        results = tuner.fit()
        walls.append(time.perf_counter() - start)
        to_first.append(FIRST[0] - start if FIRST else None)
        assert not results.errors, results.errors
    if system == "tune_core_keep":
        tune.release_workers()  # they hold the CPUs the floor's probe needs
    # Ray's own floor: a 1-CPU placement group and an actor in it, to its first reply
    # (what any trial's worker costs before tune_core's code runs in it).
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote
    class Probe:
        def ready(self):
            return os.getpid()

    floor = []
    for i in range(fits):
        t = time.perf_counter()
        pg = placement_group([{"CPU": 1}])
        probe = Probe.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=0)).remote()
        ray.get(probe.ready.remote())
        floor.append(time.perf_counter() - t)
        ray.kill(probe)
        remove_placement_group(pg)
        time.sleep(0.5)
    print("RESULT " + json.dumps({"first_result_s": to_first, "fit_wall_s": walls,
                                  "ray_actor_start_s": floor}))
    ray.shutdown()
""")


def import_time(statement: str, after_ray: bool, runs: int) -> dict:
    pre = "import ray; " if after_ray else ""
    code = f"import time; {pre}t = time.perf_counter(); {statement}; " \
           "print(time.perf_counter() - t)"
    times = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, env=dict(os.environ, RAY_AIR_NEW_OUTPUT="0"))
        if proc.returncode != 0:
            raise RuntimeError(f"{statement!r} failed:\n{proc.stderr[-3000:]}")
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return {"median_s": statistics.median(times), "runs_s": times}


def first_result(system: str, fits: int, cpus: int) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.run([sys.executable, "-c", _CHILD, system, str(fits), str(cpus),
                               storage], capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            warm = [t for t in out["first_result_s"][1:] if t is not None]
            out["first_result_cold_ray_s"] = out["first_result_s"][0]
            out["first_result_warm_median_s"] = statistics.median(warm) if warm else None
            out["ray_actor_start_median_s"] = statistics.median(out["ray_actor_start_s"])
            return out
    raise RuntimeError(f"{system} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _s(value) -> str:
    return "  n/a" if value is None else f"{value:6.3f}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--fits", type=int, default=3, help="fit() calls per child process")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=["tune_core", "tune_core_keep",
                                                         "ray_tune"],
                        choices=SYSTEMS)
    parser.add_argument("--output", default="release_tests/results/startup.json")
    args = parser.parse_args(argv)

    figures = {"import_runs": args.import_runs, "fits": args.fits, "cpus": args.cpus,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"import: median of {args.import_runs} fresh interpreters; first result: "
          f"{args.fits} fit() calls per process (the first in a fresh Ray)")
    for system in args.systems:
        out = {}
        statement = _IMPORTS.get(system)  # ray_tune_reuse imports what ray_tune does
        if statement:
            out["import_after_ray"] = import_time(statement, True, args.import_runs)
            out["import_cold"] = import_time(statement, False, args.import_runs)
        out.update(first_result(system, args.fits, args.cpus))
        figures["systems"][system] = out
        imports = (f"import after ray {_s(out['import_after_ray']['median_s'])} s   cold "
                   f"{_s(out['import_cold']['median_s'])} s   ") if "import_cold" in out \
            else " " * 44
        print(f"  {system:16s} {imports}first result: fresh Ray "
              f"{_s(out['first_result_cold_ray_s'])} s   warm "
              f"{_s(out['first_result_warm_median_s'])} s")
        print(f"  {'':16s} Ray alone, a placement group and an actor to its first reply "
              f"(median of {len(out['ray_actor_start_s'])}): "
              f"{_s(out['ray_actor_start_median_s'])} s "
              f"({', '.join(f'{t:.2f}' for t in out['ray_actor_start_s'])})")
    ours = figures["systems"].get("tune_core")
    for other in ("ray_tune", "ray_tune_reuse"):
        theirs = figures["systems"].get(other)
        if not (ours and theirs):
            continue
        if "import_cold" in theirs:
            for kind in ("import_after_ray", "import_cold"):
                ratio = theirs[kind]["median_s"] / ours[kind]["median_s"]
                figures[f"{kind}_speedup_vs_{other}"] = ratio
                print(f"  {other} / tune_core {kind.replace('_', ' ')}: {ratio:.1f}x")
        key = "first_result_warm_median_s" if ours["first_result_warm_median_s"] and \
            theirs["first_result_warm_median_s"] else "first_result_cold_ray_s"
        ratio = theirs[key] / ours[key]
        figures[f"first_result_speedup_vs_{other}"] = ratio
        print(f"  {other} / tune_core time to first result ({key}): {ratio:.1f}x")
    print("  targets: import < 0.3 s, first result < 0.5 s")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
