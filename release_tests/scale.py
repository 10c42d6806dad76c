"""Benchmark 4: many trials, this project against Ray Tune in the same run.

N trials of a trivial function (fractional CPUs), default logging. Figures for the driver
process: peak memory (``getrusage`` maxrss, and RSS sampled every 50 ms from /proc/self/statm
by a background thread), RSS at every 1,000 completed trials (a callback's
``on_trial_complete``) and its growth per 1,000 trials, the time spent writing the experiment
state (``TuneController.save_state``, wrapped in the child process only, with the
``ExperimentStateWriter.write`` and loggers' flush inside it; Ray Tune's
``TuneController.save_to_dir``), and the total time. Ray Tune runs ``--ray-tune-trials``
trials (fewer: it is slow at this); its time for N trials is extrapolated at its marginal
per-trial rate and labelled as such.

    python release_tests/scale.py --num-trials 10000 --ray-tune-trials 2000
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
    import json, os, resource, sys, threading, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    system, n, cpus, cpt, every, storage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20

    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    SNAP = {"time": 0.0, "count": 0}    # the whole snapshot: serialising and writing
    WRITE = {"time": 0.0, "count": 0}   # tune_core: ExperimentStateWriter.write alone
    FLUSH = {"time": 0.0, "count": 0}   # tune_core: the loggers' flush (save_state does it)

    def timed(fn, acc):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc["time"] += time.perf_counter() - t
                acc["count"] += 1
        return wrapper

    if system == "tune_core":
        import tune_core as tune
        from tune_core.callback import CallbackList
        from tune_core.execution.tune_controller import TuneController
        from tune_core.experiment.experiment_state import ExperimentStateWriter
        TuneController.save_state = timed(TuneController.save_state, SNAP)
        ExperimentStateWriter.write = timed(ExperimentStateWriter.write, WRITE)
        CallbackList.flush = timed(CallbackList.flush, FLUSH)
        extra = {}
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        from ray.tune.execution.tune_controller import TuneController
        TuneController.save_to_dir = timed(TuneController.save_to_dir, SNAP)
        extra = {"reuse_actors": system == "ray_tune_reuse"}

    CHECKPOINTS = []   # (trials completed, RSS MB, seconds since fit() was called)
    DONE = [0]
    START = [0.0]

    class Count(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            DONE[0] += 1
            if DONE[0] % every == 0:
                CHECKPOINTS.append((DONE[0], rss_mb(), time.perf_counter() - START[0]))

    SAMPLES = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            SAMPLES.append(rss_mb())
            stop.wait(0.05)

    def trivial(config):
        tune.report({"y": config["i"] * 2})

    tuner = tune.Tuner(
        tune.with_resources(trivial, {"cpu": cpt}),
        param_space={"i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(**extra),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[Count()]))
    rss_before = rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = START[0] = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    sampler.join()
    print("RESULT " + json.dumps({
        "trials": len(results), "errors": sum(1 for r in results if r.error),
        "wall_s": wall, "per_trial_ms": 1000 * wall / max(1, len(results)),
        "driver_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "maxrss_mb": cpu1.ru_maxrss / 1024, "rss_before_fit_mb": rss_before,
        "rss_sampled_peak_mb": max(SAMPLES) if SAMPLES else None,
        "rss_end_mb": rss_mb(), "rss_at_completed": CHECKPOINTS,
        "snapshot_s": SNAP["time"], "snapshots": SNAP["count"],
        "snapshot_pct_of_wall": 100 * SNAP["time"] / wall,
        "state_write_s": WRITE["time"] if system == "tune_core" else None,
        "logger_flush_s": FLUSH["time"] if system == "tune_core" else None,
        "logger_flushes": FLUSH["count"] if system == "tune_core" else None}))
    ray.shutdown()
""")


def run_system(system: str, n: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, system, str(n), str(args.cpus),
             str(args.cpus_per_trial), str(args.checkpoint_every), storage],
            capture_output=True, text=True, timeout=6 * 3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{system} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _slope(xs: list, ys: list) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def memory_growth(points: list, per: int, start_at: int) -> dict:
    """RSS growth per ``per`` completed trials (least squares over the checkpoints from
    ``start_at`` on) and the relative change from the first of them to the last."""
    pts = [p for p in points if p[0] >= start_at] or list(points)
    if len(pts) < 2:
        return {"growth_mb_per_1000": None, "change_pct": None}
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return {"growth_mb_per_1000": _slope(xs, ys) * per, "from_trials": pts[0][0],
            "to_trials": pts[-1][0], "change_pct": 100 * (ys[-1] / ys[0] - 1)}


def marginal_ms_per_trial(points: list):
    """Milliseconds per trial once running: the slope of fit() time over completed
    trials, from the second checkpoint on when there are three or more (the first one
    still holds the start-up), or None with fewer than two checkpoints."""
    pts = list(points)[1:] if len(points) >= 3 else list(points)
    if len(pts) < 2:
        return None
    return 1000 * _slope([p[0] for p in pts], [p[2] for p in pts])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=10000)
    parser.add_argument("--ray-tune-trials", type=int, default=2000,
                        help="trials Ray Tune runs (its time for --num-trials is extrapolated)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=0.5)
    parser.add_argument("--checkpoint-every", type=int, default=1000,
                        help="record the driver's RSS every this many completed trials")
    parser.add_argument("--flat-from", type=int, default=None,
                        help="trials from which memory should be flat (default: N/5)")
    parser.add_argument("--systems", nargs="+", default=["tune_core", "ray_tune_reuse"],
                        choices=SYSTEMS)
    parser.add_argument("--output", default="release_tests/results/scale.json")
    args = parser.parse_args(argv)
    flat_from = args.flat_from if args.flat_from is not None else args.num_trials // 5

    figures = {"num_trials": args.num_trials, "ray_tune_trials": args.ray_tune_trials,
               "cpus": args.cpus, "cpus_per_trial": args.cpus_per_trial,
               "checkpoint_every": args.checkpoint_every, "flat_from": flat_from,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"{args.num_trials} trivial trials ({args.ray_tune_trials} for Ray Tune), "
          f"{args.cpus_per_trial:g} CPU each on {args.cpus} CPUs")
    for system in args.systems:
        n = args.num_trials if system == "tune_core" else min(args.num_trials,
                                                               args.ray_tune_trials)
        out = run_system(system, n, args)
        out.update(memory_growth(out["rss_at_completed"], 1000, flat_from))
        out["extrapolated"] = n != args.num_trials
        out["marginal_ms_per_trial"] = marginal_ms_per_trial(out["rss_at_completed"])
        # Extrapolated: the measured run, then the missing trials at the marginal rate
        # (at the average rate when there are too few checkpoints for a marginal one).
        rate = out["marginal_ms_per_trial"] or out["per_trial_ms"]
        out["wall_for_num_trials_s"] = out["wall_s"] + \
            (args.num_trials - out["trials"]) * rate / 1000
        figures["systems"][system] = out
        growth = out["growth_mb_per_1000"]
        change = out["change_pct"]
        label = " (extrapolated)" if out["extrapolated"] else ""
        marginal = out["marginal_ms_per_trial"]
        print(f"  {system:16s} {out['trials']:6d} trials  wall {out['wall_s']:8.2f} s "
              f"({out['per_trial_ms']:6.1f} ms/trial, marginal "
              f"{'n/a' if marginal is None else f'{marginal:.1f}'} ms; {args.num_trials} trials: "
              f"{out['wall_for_num_trials_s']:.1f} s{label})   errors {out['errors']}")
        print(f"  {'':16s} driver maxrss {out['maxrss_mb']:7.1f} MB   sampled peak "
              f"{out['rss_sampled_peak_mb'] or 0:7.1f} MB   growth "
              f"{'n/a' if growth is None else f'{growth:+.2f}'} MB/1000 trials   change "
              f"{'n/a' if change is None else f'{change:+.1f}%'} (target within 10%)")
        print(f"  {'':16s} state snapshots {out['snapshots']:5d} taking {out['snapshot_s']:6.2f}"
              f" s = {out['snapshot_pct_of_wall']:4.1f}% of wall (target < 5%)   driver CPU "
              f"{out['driver_cpu_s']:.1f} s")
        if out.get("state_write_s") is not None:
            print(f"  {'':16s} of which ExperimentStateWriter.write {out['state_write_s']:.2f} s;"
                  f" loggers' flush {out['logger_flush_s']:.2f} s ({out['logger_flushes']} "
                  "flushes, all of them, inside a snapshot or not)")
    ours = figures["systems"].get("tune_core")
    for other in ("ray_tune", "ray_tune_reuse"):
        if ours and other in figures["systems"]:
            theirs = figures["systems"][other]
            ratio = theirs["wall_for_num_trials_s"] / ours["wall_for_num_trials_s"]
            figures[f"speedup_vs_{other}"] = ratio
            label = f" (Ray Tune's extrapolated from {theirs['trials']} trials)" \
                if theirs["extrapolated"] else ""
            print(f"  {other} / tune_core time for {args.num_trials} trials: {ratio:.1f}x{label}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
