"""Benchmark: sample efficiency of the search algorithms against random search.

The problems are two standard test functions whose global minima are known, so the
**regret** of a run, the best value it found minus the optimum, says how far it got:

* Branin, 2-d, x1 in [-5, 10], x2 in [0, 15], minimum 0.397887 (three global minima);
* Hartmann-6, 6-d in [0, 1]^6, minimum -3.32237 (narrow basin, several local minima).

Each method gets the same fixed budget of evaluations per problem and runs once per seed
(0, 1, ...). Our searchers are built by name with ``searchers.create_searcher(name,
metric="loss", mode="min", <seed keyword>)`` and driven directly, sequentially and without
Ray: ``set_search_properties("loss", "min", space)`` with the space as tune domains, then
``budget`` times ``suggest(f"t{i}")``, evaluate, ``on_trial_complete`` with the loss. Random
search is our ``BasicVariantGenerator(random_state=seed)`` (a SearchAlgorithm: it is asked
with ``next_trial``). As a reference, Optuna's and HyperOpt's own loops (no Ray, no
tune_core) run TPE on the same problems and budgets: ``optuna_native`` is
``study.optimize`` with ``TPESampler(seed=seed)``, ``hyperopt_native`` is
``fmin(tpe.suggest, max_evals=budget, rstate=np.random.default_rng(seed))``. Their
default settings match our wrappers' (10 random startup trials for Optuna, 20 for
HyperOpt). Optuna's two rows come out identical (the same seeded sampler sees the same
trials); HyperOpt's differ only by their random streams (our wrapper draws each
suggestion's seed from ``RandomState(seed)``, ``fmin`` from ``default_rng(seed)``).

How the seed reaches each method (``SEED_KWARGS``)::

    random           BasicVariantGenerator(random_state=seed)
    optuna           OptunaSearch(seed=seed)              TPE
    hyperopt         HyperOptSearch(random_state_seed=seed)
    bayesopt         BayesOptSearch(random_state=seed)
    bohb             TuneBOHB(seed=seed)
    rea              RegularizedEvolution(random_seed=seed, population_size=20, sample_size=5)
    optuna_native    optuna.samplers.TPESampler(seed=seed)
    hyperopt_native  fmin(..., rstate=np.random.default_rng(seed))

Every searcher runs with its defaults except ``RegularizedEvolution`` (``EXTRA_KWARGS``):
its default population of 100 is more than the budgets here, so it would only ever sample
at random (it then suggests exactly what ``random`` does: both draw from a
``random.Random(seed)`` in the same order). It gets a population of 20 and tournaments
of 5, the paper's ratio of sample to population size (25 / 100), so it evolves for most
of the budget. ``BayesOptSearch`` may end a run early: with ``skip_duplicate`` it
finishes after ``patience`` (5) suggestions in a row repeat a tried configuration, which
happens on these continuous spaces too once its GP has converged (after some 35 to 80
evaluations); the "evals" column shows the mean number of evaluations actually made.

A searcher whose module is not there (or whose library is not installed) is reported as
skipped, in the table and in the JSON; one that fails while running is reported with its
error. The table gives per problem and method the median final regret over the seeds, its
interquartile range and min/max, the mean wall time of a run, and "vs random": the
method's median regret over random search's (below 1 is better).

The default budgets are 60 evaluations on Branin and 200 on Hartmann-6, with 5 seeds:
HyperOpt spends its first 20 evaluations at random (``n_initial_points``, as in Ray Tune
and in HyperOpt's own ``fmin``), and on Hartmann-6 its TPE needs about 200 evaluations to
be clearly ahead of random search (its median regret is about 0.55 of random's at 80 to
120 evaluations, 0.3 to 0.45 at 200), while random search itself improves only slowly
there. Optuna's TPE and the GP are far ahead long before. All methods at these sizes
take 2.5 minutes on 2 cores, and took 6.5 when others loaded them (load average about
4): most of it is BayesOptSearch's GP fits (0.1 to 0.6 s per suggestion, much slower on
a busy machine); leave ``bayesopt`` out of ``--methods`` for a quick look. Runs are
deterministic: the same seeds give the same regrets (wall times aside).

    python release_tests/searcher_efficiency.py
    python release_tests/searcher_efficiency.py --seeds 10 --budget-hartmann 150
    python release_tests/searcher_efficiency.py --methods random optuna --problems branin
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

import tune_core as tune  # noqa: E402


# --- the problems ---------------------------------------------------------------------------------
def branin(config: Dict[str, float]) -> float:
    x1, x2 = config["x1"], config["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H_A = ((10, 3, 17, 3.5, 1.7, 8),
        (0.05, 10, 17, 0.1, 8, 14),
        (3, 3.5, 1.7, 10, 17, 8),
        (17, 8, 0.05, 10, 0.1, 14))
_H_P = ((0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
        (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
        (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
        (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381))


def hartmann6(config: Dict[str, float]) -> float:
    x = [config[f"x{j}"] for j in range(1, 7)]
    return -sum(alpha * math.exp(-sum(a * (xj - p) ** 2 for a, xj, p in zip(row, x, prow)))
                for alpha, row, prow in zip(_H_ALPHA, _H_A, _H_P))


class Problem:
    """A test function over a box, with its known minimum."""

    def __init__(self, name: str, fn: Callable[[Dict[str, float]], float],
                 bounds: Dict[str, Tuple[float, float]], optimum: float) -> None:
        self.name, self.fn, self.bounds, self.optimum = name, fn, bounds, optimum

    def space(self) -> Dict[str, Any]:
        """The search space as tune domains (a fresh dict for every run)."""
        return {k: tune.uniform(lo, hi) for k, (lo, hi) in self.bounds.items()}

    def __call__(self, config: Dict[str, Any]) -> float:
        return self.fn(config)


PROBLEMS: Dict[str, Problem] = {
    "branin": Problem("branin", branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)},
                      0.39788735772973816),
    "hartmann6": Problem("hartmann6", hartmann6, {f"x{j}": (0.0, 1.0) for j in range(1, 7)},
                         -3.3223680114155156),
}

# --- the methods ----------------------------------------------------------------------------------
#: How each method takes its seed: (keyword, "module:Class" it comes from).
SEED_KWARGS: Dict[str, Tuple[str, str]] = {
    "random": ("random_state", "tune_core.search.basic_variant:BasicVariantGenerator"),
    "optuna": ("seed", "searchers.optuna:OptunaSearch"),
    "hyperopt": ("random_state_seed", "searchers.hyperopt:HyperOptSearch"),
    "bayesopt": ("random_state", "searchers.bayesopt:BayesOptSearch"),
    "bohb": ("seed", "searchers.bohb:TuneBOHB"),
    "rea": ("random_seed", "searchers.rea:RegularizedEvolution"),
    "optuna_native": ("TPESampler(seed=)", "optuna"),
    "hyperopt_native": ("rstate=default_rng()", "hyperopt"),
}
METHODS = tuple(SEED_KWARGS)
#: Settings other than the seed, and why (see the module docstring).
EXTRA_KWARGS: Dict[str, Dict[str, Any]] = {
    "rea": {"population_size": 20, "sample_size": 5},  # the default 100 > the budgets
}
#: Our model-based searchers: the ones expected to beat random search.
MODEL_BASED = ("optuna", "hyperopt", "bayesopt", "bohb", "rea")
NATIVE = ("optuna_native", "hyperopt_native")


class Skipped(Exception):
    """The method cannot run here (module or library missing); the message says why."""


def make_searcher(method: str, seed: int) -> Any:
    """Our searcher ``method`` seeded with ``seed``, its space not yet set.

    Raises:
        Skipped: its module is not there, or the library it needs is not installed.
    """
    from searchers import create_searcher

    keyword, target = SEED_KWARGS[method]
    module_name, _, class_name = target.partition(":")
    try:
        found = importlib.util.find_spec(module_name) is not None
    except ImportError:
        found = False
    if not found:
        raise Skipped(f"module {module_name} is not there")
    kwargs: Dict[str, Any] = {keyword: seed, **EXTRA_KWARGS.get(method, {})}
    if method != "random":  # BasicVariantGenerator takes metric/mode from set_search_properties
        kwargs.update(metric="loss", mode="min")
    try:
        return create_searcher(method, **kwargs)
    except ImportError as exc:
        raise Skipped(f"{target} cannot be imported ({exc})") from exc
    except ValueError as exc:
        if "is not valid" not in str(exc):
            raise
    # The module exists but is not yet registered in searchers._SEARCHER_IMPORTS.
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise Skipped(f"{target} cannot be imported ({exc})") from exc
    return cls(**kwargs)


def run_ours(method: str, problem: Problem, budget: int, seed: int) -> List[float]:
    """The values of ``budget`` evaluations suggested by our searcher ``method``, in order."""
    from tune_core.search.search_algorithm import SearchAlgorithm
    from tune_core.search.searcher import Searcher

    searcher = make_searcher(method, seed)
    space = problem.space()
    searcher.set_search_properties("loss", "min", space)
    values: List[float] = []
    if isinstance(searcher, SearchAlgorithm):  # random search: BasicVariantGenerator
        searcher.add_configurations(space, budget)
        for i in range(budget):
            suggestion = searcher.next_trial(f"t{i}")
            if suggestion is None:
                raise RuntimeError(f"{method}: next_trial returned None after {i} of "
                                   f"{budget} configurations")
            value = problem(suggestion.config)
            searcher.on_trial_complete(f"t{i}", {"loss": value, "training_iteration": 1,
                                                 "config": suggestion.config})
            values.append(value)
        return values
    for i in range(budget):
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            break  # it has nothing more to try: the run ends short of the budget
        if config is None:
            raise RuntimeError(f"{method}: suggest({trial_id!r}) returned None ('not now') "
                               "with no trial running")
        value = problem(config)
        searcher.on_trial_complete(trial_id, {"loss": value, "training_iteration": 1,
                                              "config": config})
        values.append(value)
    return values


def run_optuna_native(problem: Problem, budget: int, seed: int) -> List[float]:
    try:
        import optuna
    except ImportError as exc:
        raise Skipped(f"optuna is not installed ({exc})") from exc

    def objective(trial: Any) -> float:
        return problem({k: trial.suggest_float(k, lo, hi)
                        for k, (lo, hi) in problem.bounds.items()})

    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=budget)
    return [t.value for t in study.trials]


def run_hyperopt_native(problem: Problem, budget: int, seed: int) -> List[float]:
    try:
        import hyperopt
        import numpy as np
    except ImportError as exc:
        raise Skipped(f"hyperopt is not installed ({exc})") from exc
    logging.getLogger("hyperopt").setLevel(logging.WARNING)
    space = {k: hyperopt.hp.uniform(k, lo, hi) for k, (lo, hi) in problem.bounds.items()}
    trials = hyperopt.Trials()
    hyperopt.fmin(problem, space, algo=hyperopt.tpe.suggest, max_evals=budget, trials=trials,
                  rstate=np.random.default_rng(seed), show_progressbar=False)
    return [float(loss) for loss in trials.losses()]


def quiet_optuna() -> None:
    """Optuna logs a line for every study created (one per run of four methods here)."""
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_method(method: str, problem: Problem, budget: int, seed: int) -> Dict[str, Any]:
    """One run: its final regret, best-so-far regret curve and wall time.

    Raises:
        Skipped: the method cannot run here.
    """
    if method != "random":
        quiet_optuna()
    start = time.perf_counter()
    if method == "optuna_native":
        values = run_optuna_native(problem, budget, seed)
    elif method == "hyperopt_native":
        values = run_hyperopt_native(problem, budget, seed)
    else:
        values = run_ours(method, problem, budget, seed)
    wall = time.perf_counter() - start
    curve, best = [], math.inf
    for value in values:
        best = min(best, value)
        curve.append(best - problem.optimum)
    if not curve:
        raise RuntimeError(f"{method} made no evaluation on {problem.name}")
    return {"seed": seed, "evaluations": len(values), "final_regret": curve[-1],
            "wall_s": wall, "regret_curve": curve}


# --- the table ------------------------------------------------------------------------------------
def quartiles(xs: Sequence[float]) -> Tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    regrets = [r["final_regret"] for r in runs]
    q1, q3 = quartiles(regrets)
    return {"median_regret": statistics.median(regrets), "q1_regret": q1, "q3_regret": q3,
            "min_regret": min(regrets), "max_regret": max(regrets),
            "mean_wall_s": statistics.fmean(r["wall_s"] for r in runs),
            "mean_evaluations": statistics.fmean(r["evaluations"] for r in runs), "seeds": runs}


def run_problem(problem: Problem, methods: Sequence[str], budget: int, seeds: Sequence[int],
                verbose: bool = True) -> Dict[str, Any]:
    """Every method on ``problem``: {method: summary | {"skipped": why} | {"error": ...}}."""
    out: Dict[str, Any] = {}
    for method in methods:
        runs = []
        try:
            for seed in seeds:
                runs.append(run_method(method, problem, budget, seed))
                if verbose:
                    print(f"  {problem.name:9s} {method:16s} seed {seed}: final regret "
                          f"{runs[-1]['final_regret']:.4g} ({runs[-1]['wall_s']:.1f} s)",
                          flush=True)
        except Skipped as exc:
            out[method] = {"skipped": str(exc)}
            if verbose:
                print(f"note: {method} skipped: {exc}", flush=True)
            continue
        except Exception as exc:  # a broken searcher must not lose the other figures
            out[method] = {"error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()}
            print(f"error: {method} on {problem.name} failed:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            continue
        out[method] = summarize(runs)
    rand = out.get("random", {}).get("median_regret")
    for m in out.values():
        if "median_regret" in m and rand is not None:
            m["vs_random"] = m["median_regret"] / rand if rand > 0 else None
    return out


def print_table(figures: Dict[str, Any]) -> None:
    s = figures["settings"]
    for name, result in figures["problems"].items():
        print(f"\n{name}: final regret (best value - {result['optimum']:g}) after "
              f"{result['budget']} evaluations, {len(s['seeds'])} seeds")
        head = (f"{'method':16s} {'median':>9s} {'IQR':>21s} {'min':>9s} {'max':>9s} "
                f"{'evals':>6s} {'wall s':>7s} {'vs random':>10s}")
        print(head)
        print("-" * len(head))
        for method, m in result["methods"].items():
            if "skipped" in m:
                print(f"{method:16s} skipped: {m['skipped']}")
                continue
            if "error" in m:
                print(f"{method:16s} failed: {m['error']}")
                continue
            iqr = f"[{m['q1_regret']:.3g}, {m['q3_regret']:.3g}]"
            ratio = f"{m['vs_random']:.3f}" if m.get("vs_random") is not None else "-"
            print(f"{method:16s} {m['median_regret']:9.4g} {iqr:>21s} {m['min_regret']:9.3g} "
                  f"{m['max_regret']:9.3g} {m['mean_evaluations']:6.1f} {m['mean_wall_s']:7.2f} "
                  f"{ratio:>10s}")
    print("(median, interquartile range, min and max of the final regret over the seeds; "
          "evals: mean evaluations made;\n wall s: mean seconds per run; vs random: median "
          "regret / random's; *_native: the library's own loop, no tune_core)")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds (0, 1, ...)")
    parser.add_argument("--budget-branin", type=int, default=60,
                        help="evaluations per run on Branin")
    parser.add_argument("--budget-hartmann", type=int, default=200,
                        help="evaluations per run on Hartmann-6")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--output",
                        default=os.path.join(ROOT, "release_tests/results/"
                                             "searcher_efficiency.json"))
    args = parser.parse_args(argv)
    for name in ("seeds", "budget_branin", "budget_hartmann"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: use an integer >= 1")
    budgets = {"branin": args.budget_branin, "hartmann6": args.budget_hartmann}
    seeds = list(range(args.seeds))
    figures: Dict[str, Any] = {
        "settings": {"seeds": seeds, "budgets": {p: budgets[p] for p in args.problems},
                     "methods": list(args.methods),
                     "seed_kwargs": {m: SEED_KWARGS[m][0] for m in args.methods},
                     "extra_kwargs": {m: EXTRA_KWARGS[m] for m in args.methods
                                      if m in EXTRA_KWARGS},
                     "date": time.strftime("%Y-%m-%d %H:%M:%S")},
        "problems": {}}
    for name in args.problems:
        problem = PROBLEMS[name]
        figures["problems"][name] = {
            "optimum": problem.optimum, "budget": budgets[name],
            "methods": run_problem(problem, args.methods, budgets[name], seeds)}
    print_table(figures)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=1)
    print(f"figures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
