"""Benchmark: multi-fidelity schedulers against random search on a synthetic learning curve.

The problem: a configuration (x1, x2) in [-5, 10] x [0, 15] trains for up to ``max_t``
iterations. Its loss decays exponentially from ``branin(x) + gap(x)`` to exactly
``branin(x)`` at ``max_t``, with a config-dependent rate, plus Gaussian noise that
shrinks as training goes on. So the final loss is Branin's, whose optimum 0.397887 is
known, and early losses rank configurations only roughly (the curves cross).

Each method runs the same random configurations (``BasicVariantGenerator(random_state=
seed)``): FIFO (every trial to ``max_t``), ASHA (stopping), promotion ASHA and HyperBand,
all with ``reduction_factor`` 3. **Trial time** is the number of iterations run, summed
over trials as results arrive (not wall time). The regret after a result is the lowest
loss reported so far minus the optimum: what the tuner has actually observed, so a good
configuration counts only once it has trained long enough for its loss to come down.
The table gives, over the seeds, the trial time until the regret is at most ``--regret``
(mean over the seeds that reached it), the total trial time of the run, and the speed-up
over FIFO.

Backends: ``simulated`` (default) drives the real TuneController and schedulers with an
in-process executor that computes one iteration per running trial per step (no Ray,
seconds per run); ``ray`` runs a function trainable (checkpointing every iteration) with
``tune.Tuner`` on a local Ray.

    python release_tests/multifidelity_benchmark.py --seeds 5 --num-samples 243 --max-t 27
    python release_tests/multifidelity_benchmark.py --backend ray --seeds 2 --num-samples 81
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

import tune_core as tune  # noqa: E402
from tune_core.callback import Callback  # noqa: E402
from tune_core.execution.executor import (  # noqa: E402
    Executor, TrialFinished, TrialLaunch, TrialPaused, TrialResults, TrialStarted, TrialStopped)
from tune_core.execution.placement_groups import PlacementGroupFactory  # noqa: E402

OPTIMUM = 0.39788735772973816  # Branin's global minimum
METHODS = ("fifo", "asha", "asha_promotion", "hyperband")


# --- the learning curve ---------------------------------------------------------------------------
def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def loss_at(config: Dict[str, Any], t: int) -> float:
    """The loss reported at iteration ``t`` (1..max_t); equals branin(x) at max_t, up to
    noise of standard deviation 0.02 there (0.5 at the start)."""
    x1, x2, max_t, seed = config["x1"], config["x2"], config["max_t"], config["seed"]
    gap = 10 + 20 * (0.5 + 0.5 * math.sin(0.7 * x1 + 0.3 * x2))      # 10 .. 30
    rate = 2 + 4 * (0.5 + 0.5 * math.cos(0.4 * x1 - 0.5 * x2))      # 2 .. 6
    frac = t / max_t
    decay = (math.exp(-rate * frac) - math.exp(-rate)) / (1 - math.exp(-rate))
    noise = random.Random(f"{seed}:{x1!r}:{x2!r}:{t}").gauss(0.0, 0.5 * (1 - frac) + 0.02)
    return branin(x1, x2) + gap * decay + noise


def param_space(seed: int, max_t: int) -> Dict[str, Any]:
    return {"x1": tune.uniform(-5, 10), "x2": tune.uniform(0, 15), "max_t": max_t,
            "seed": seed}


def train_fn(config: Dict[str, Any]) -> None:
    """The trainable of the ``ray`` backend: one iteration per report, checkpointed."""
    t = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "t.json")) as f:
            t = json.load(f)["t"]
    sleep = config.get("sleep", 0.0)
    while t < config["max_t"]:
        t += 1
        if sleep:
            time.sleep(sleep)
        d = os.path.join(tune.get_context().get_trial_dir(), "scratch")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "t.json"), "w") as f:
            json.dump({"t": t}, f)
        # report() copies the directory into the trial's checkpoint before it returns
        tune.report({"loss": loss_at(config, t)}, checkpoint=tune.Checkpoint.from_directory(d))


# --- what is measured -----------------------------------------------------------------------------
class Ledger(Callback):
    """Counts iterations as results arrive and follows the regret of the best loss seen."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.iterations = 0
        self.best_loss = math.inf
        self.regret = math.inf
        self.time_to_target: Optional[int] = None
        self.trajectory: List[Tuple[int, float]] = []   # (trial time, incumbent regret)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.iterations += 1
        loss = result.get("loss")
        if loss is None or not loss < self.best_loss:
            return
        self.best_loss = loss
        self.regret = loss - OPTIMUM
        self.trajectory.append((self.iterations, self.regret))
        if self.time_to_target is None and self.regret <= self.target:
            self.time_to_target = self.iterations


# --- the schedulers -------------------------------------------------------------------------------
def make_scheduler(method: str, max_t: int, eta: float) -> Tuple[Any, str]:
    """The scheduler for ``method``, or None and why it is skipped."""
    if method == "fifo":
        from tune_core.schedulers.trial_scheduler import FIFOScheduler

        return FIFOScheduler(), ""
    if method == "hyperband":
        from schedulers.hyperband import HyperBandScheduler

        return HyperBandScheduler(max_t=max_t, reduction_factor=eta), ""
    try:  # built in parallel by another engineer
        from schedulers.async_hyperband import ASHAScheduler
    except ImportError as exc:
        return None, f"schedulers.async_hyperband.ASHAScheduler is not available ({exc})"
    kind = "promotion" if method == "asha_promotion" else "stopping"
    try:
        return ASHAScheduler(max_t=max_t, grace_period=1, reduction_factor=eta,
                             type=kind), ""
    except TypeError as exc:
        return None, f"ASHAScheduler(type={kind!r}) is not supported ({exc})"


# --- the simulated backend ------------------------------------------------------------------------
class CurveExecutor(Executor):
    """Runs trials in this process: each poll gives every running trial one iteration.

    Every result comes with a checkpoint (a path only; nothing is written), so a paused
    trial resumes exactly where it paused.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.running: Dict[str, Dict[str, Any]] = {}
        self.outbox: List[Any] = []

    def total_resources(self) -> Dict[str, float]:
        return {"CPU": float(self.workers)}

    def can_start(self, resources: PlacementGroupFactory) -> bool:
        return len(self.running) < self.workers

    def start_trial(self, launch: TrialLaunch) -> None:
        self.running[launch.trial_id] = {"launch": launch, "t": launch.restored_iteration,
                                         "ckpt": launch.checkpoint_index, "new": True}
        self.outbox.append(TrialStarted(launch.trial_id, "127.0.0.1", os.getpid()))

    def _checkpoint(self, state: Dict[str, Any]) -> str:
        return f"{state['launch'].trial_dir}/checkpoint_{state['ckpt'] - 1:06d}"

    def pause_trial(self, trial_id: str) -> None:
        state = self.running.pop(trial_id, None)
        if state is not None:
            path = self._checkpoint(state) if state["t"] else None
            self.outbox.append(TrialPaused(trial_id, path, state["t"], float(state["t"])))

    def stop_trial(self, trial_id: str) -> None:
        if self.running.pop(trial_id, None) is not None:
            self.outbox.append(TrialStopped(trial_id))

    def poll(self, timeout: float) -> List[Any]:
        events, self.outbox = self.outbox, []
        for trial_id, state in list(self.running.items()):
            if state.pop("new", False):
                continue  # results start with the next poll
            config = state["launch"].config
            if state["t"] >= config["max_t"]:
                del self.running[trial_id]
                events.append(TrialFinished(trial_id))
                continue
            state["t"] += 1
            name = f"checkpoint_{state['ckpt']:06d}"
            state["ckpt"] += 1
            events.append(TrialResults(trial_id, [{
                "loss": loss_at(config, state["t"]), "training_iteration": state["t"],
                "time_total_s": float(state["t"]), "checkpoint_dir_name": name}]))
        return events


def run_simulated(scheduler: Any, seed: int, args: argparse.Namespace, ledger: Ledger) -> int:
    from tune_core.execution.tune_controller import TuneController
    from tune_core.search.basic_variant import BasicVariantGenerator

    search = BasicVariantGenerator(random_state=seed)
    search.set_search_properties("loss", "min", param_space(seed, args.max_t))
    search.add_configurations(param_space(seed, args.max_t), args.num_samples)
    scheduler.set_search_properties("loss", "min")
    with tempfile.TemporaryDirectory() as path:
        controller = TuneController(executor=CurveExecutor(args.workers), search_alg=search,
                                    scheduler=scheduler, callbacks=[ledger],
                                    experiment_path=path, strict_metrics=["loss"],
                                    poll_timeout=0)
        trials = controller.run()
    return len(trials)


# --- the Ray backend ------------------------------------------------------------------------------
def run_ray(scheduler: Any, seed: int, args: argparse.Namespace, ledger: Ledger) -> int:
    from tune_core.search.basic_variant import BasicVariantGenerator

    space = dict(param_space(seed, args.max_t), sleep=args.sleep)
    with tempfile.TemporaryDirectory() as storage:
        results = tune.Tuner(
            train_fn, param_space=space,
            tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler,
                                        num_samples=args.num_samples,
                                        search_alg=BasicVariantGenerator(random_state=seed)),
            run_config=tune.RunConfig(storage_path=storage, name=f"mf_{seed}", verbose=0,
                                      callbacks=[ledger])).fit()
        if results.num_errors:
            raise RuntimeError(f"{results.num_errors} trials failed: {results.errors[0]}")
        return len(results)


# --- the table ------------------------------------------------------------------------------------
def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    reached = [r["time_to_regret"] for r in runs if r["time_to_regret"] is not None]
    return {
        "reached": len(reached),
        "mean_time_to_regret": statistics.fmean(reached) if reached else None,
        "median_time_to_regret": statistics.median(reached) if reached else None,
        "mean_total_time": statistics.fmean(r["total_time"] for r in runs),
        "mean_final_regret": statistics.fmean(r["final_regret"] for r in runs),
        "seeds": runs,
    }


def print_table(figures: Dict[str, Any]) -> None:
    s = figures["settings"]
    print(f"\nTrial time (iterations) until the best loss is within {s['regret']:g} of the "
          f"optimum; {s['num_samples']} samples, max_t={s['max_t']}, "
          f"eta={s['reduction_factor']:g}, {len(s['seeds'])} seeds, backend {s['backend']}")
    head = (f"{'method':16s} {'reached':>8s} {'mean time':>10s} {'median':>8s} "
            f"{'total time':>11s} {'final regret':>13s} {'vs FIFO':>8s}")
    print(head)
    print("-" * len(head))
    n = len(s["seeds"])
    for name, m in figures["methods"].items():
        if "skipped" in m:
            print(f"{name:16s} skipped: {m['skipped']}")
            continue
        mean = f"{m['mean_time_to_regret']:.0f}" if m["mean_time_to_regret"] else "-"
        median = f"{m['median_time_to_regret']:.0f}" if m["median_time_to_regret"] else "-"
        speed = f"{m['speedup_vs_fifo']:.2f}x" if m.get("speedup_vs_fifo") else "-"
        print(f"{name:16s} {m['reached']:>5d}/{n:<2d} {mean:>10s} {median:>8s} "
              f"{m['mean_total_time']:>11.0f} {m['mean_final_regret']:>13.3f} {speed:>8s}")
    print("(mean/median over the seeds that reached the regret; vs FIFO: FIFO's mean time "
          "to regret / the method's)")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds (0, 1, ...)")
    parser.add_argument("--num-samples", type=int, default=243)
    parser.add_argument("--max-t", type=int, default=27)
    parser.add_argument("--regret", type=float, default=1.0)
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--backend", default="simulated", choices=("simulated", "ray"))
    parser.add_argument("--workers", type=int, default=4,
                        help="trials running at once (CPUs of the local Ray for --backend ray)")
    parser.add_argument("--sleep", type=float, default=0.0,
                        help="seconds each iteration sleeps (--backend ray)")
    parser.add_argument("--output",
                        default=os.path.join(ROOT, "release_tests/results/"
                                             "multifidelity_benchmark.json"))
    args = parser.parse_args(argv)
    for name in ("seeds", "num_samples", "max_t", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: use an integer >= 1")
    if args.regret < 0 or args.reduction_factor <= 1:
        parser.error("--regret must be >= 0 and --reduction-factor > 1")

    run: Callable[..., int] = run_simulated
    if args.backend == "ray":
        import ray

        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
        run = run_ray
    seeds = list(range(args.seeds))
    figures: Dict[str, Any] = {
        "settings": {"seeds": seeds, "num_samples": args.num_samples, "max_t": args.max_t,
                     "regret": args.regret, "reduction_factor": args.reduction_factor,
                     "backend": args.backend, "workers": args.workers, "optimum": OPTIMUM,
                     "date": time.strftime("%Y-%m-%d %H:%M:%S")},
        "methods": {}}
    for method in args.methods:
        runs = []
        for seed in seeds:
            scheduler, why = make_scheduler(method, args.max_t, args.reduction_factor)
            if scheduler is None:
                print(f"note: {method} skipped: {why}")
                figures["methods"][method] = {"skipped": why}
                break
            ledger = Ledger(args.regret)
            start = time.perf_counter()
            trials = run(scheduler, seed, args, ledger)
            runs.append({"seed": seed, "time_to_regret": ledger.time_to_target,
                         "total_time": ledger.iterations, "final_regret": ledger.regret,
                         "trials": trials, "wall_s": time.perf_counter() - start,
                         "trajectory": ledger.trajectory})
            print(f"  {method:16s} seed {seed}: time to regret {ledger.time_to_target}, "
                  f"total {ledger.iterations}, final regret {ledger.regret:.3f} "
                  f"({runs[-1]['wall_s']:.1f} s)")
        else:
            figures["methods"][method] = summarize(runs)
    fifo = figures["methods"].get("fifo", {}).get("mean_time_to_regret")
    for m in figures["methods"].values():
        if fifo and m.get("mean_time_to_regret"):
            m["speedup_vs_fifo"] = fifo / m["mean_time_to_regret"]
    print_table(figures)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=1)
    print(f"figures written to {args.output}")
    if args.backend == "ray":
        import ray

        ray.shutdown()
    return figures


if __name__ == "__main__":
    main()
