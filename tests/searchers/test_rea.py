"""RegularizedEvolution: the random and evolution phases, mutation, tournament, aging,
refusals and argument checks, state, a quality check against random search, real runs."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import statistics
import time

import pytest

import tune_core as tune
from searchers import create_searcher
from searchers.rea import RegularizedEvolution
from tune_core.experiment.experiment_state import load_experiment_state
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

# Every parameter has more than one value, so a mutation always changes exactly one.
MIXED = {
    "model": {"act": tune.choice(["relu", "tanh", "gelu"]), "depth": tune.randint(1, 8),
              "lr": tune.loguniform(1e-4, 1e-1)},
    "width": tune.qrandint(16, 256, 16),
    "dropout": tune.quniform(0.0, 0.5, 0.1),
    "x": tune.uniform(-1.0, 1.0),
}
LEAVES = [("model", "act"), ("model", "depth"), ("model", "lr"), ("width",), ("dropout",),
          ("x",)]


def leaf(config, path):
    for p in path:
        config = config[p]
    return config


def differing(a, b):
    """The paths of ``LEAVES`` where configs ``a`` and ``b`` differ (types count)."""
    return [p for p in LEAVES if type(leaf(a, p)) is not type(leaf(b, p))
            or leaf(a, p) != leaf(b, p)]


def loss(config):
    """Depends on every parameter, so that members seldom tie."""
    model = config["model"]
    return ((config["x"] - 0.3) ** 2 + model["depth"] / 10 + config["dropout"] + model["lr"]
            + config["width"] / 1000 + {"relu": 0.0, "tanh": 0.01, "gelu": 0.02}[model["act"]])


def cycle(searcher, n, score=loss, metric="loss", prefix="t"):
    """Suggest and complete ``n`` trials one at a time; the configs."""
    configs = []
    for i in range(n):
        tid = f"{prefix}{i}"
        config = searcher.suggest(tid)
        configs.append(config)
        searcher.on_trial_complete(tid, {metric: score(config)})
    return configs


def make(space=MIXED, **kw):
    kw = {"metric": "loss", "mode": "min", "random_seed": 0, **kw}
    return RegularizedEvolution(space, **kw)


# -- the two phases, mutation, tournament, aging ------------------------------------------

def test_random_phase_then_evolution():
    s = make(population_size=5, sample_size=2)
    # Suggested but not completed: the population is empty, so still random.
    pending = [s.suggest(f"p{i}") for i in range(7)]
    for a in range(7):
        for b in range(a):  # independent samples: the float differs everywhere
            assert leaf(pending[a], ("x",)) != leaf(pending[b], ("x",))
    for i in range(7):
        s.on_trial_complete(f"p{i}", {"loss": loss(pending[i])})
    assert len(s.population) == 5
    for i in range(10):  # now each suggestion is a child of a member
        members = [c for c, _ in s.population]
        child = s.suggest(f"e{i}")
        assert any(len(differing(child, m)) == 1 for m in members), child
        s.on_trial_complete(f"e{i}", {"loss": loss(child)})


def test_a_child_differs_from_its_parent_in_exactly_one_hyperparameter():
    # sample_size == population_size: the parent is always the best of the population.
    s = make(population_size=6, sample_size=6, random_seed=3)
    cycle(s, 6)
    for i in range(40):
        best = min(s.population, key=lambda m: m[1])[0]
        child = s.suggest(f"c{i}")
        assert len(differing(child, best)) == 1, (child, best)
        s.on_trial_complete(f"c{i}", {"loss": loss(child)})


def test_every_hyperparameter_gets_mutated_and_single_values_never():
    space = {"a": tune.choice(["only"]), "b": tune.randint(3, 4), "c": tune.choice([1, 2]),
             "d": tune.uniform(0, 1)}
    s = make(space, population_size=2, sample_size=2)
    cycle(s, 2, score=lambda c: 0.0)
    changed = set()
    for i in range(60):
        child = s.suggest(f"c{i}")  # all tie: the parent is either member
        diffs = [{k for k in space if child[k] != m[k] or type(child[k]) is not type(m[k])}
                 for m, _ in s.population]
        assert any(len(d) == 1 for d in diffs), (child, s.population)
        changed |= set().union(*[d for d in diffs if len(d) == 1])
        assert child["a"] == "only" and child["b"] == 3
        s.on_trial_complete(f"c{i}", {"loss": 0.0})
    assert changed == {"c", "d"}


@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_tournament_takes_the_best_of_its_sample(mode):
    space = {"x": tune.uniform(0, 1), "y": tune.uniform(0, 1)}
    s = make(space, mode=mode, population_size=4, sample_size=4)
    scores = {0.1: 5.0, 0.2: 1.0, 0.3: 9.0, 0.4: 3.0}
    for x, v in scores.items():
        s.add_evaluated_point({"x": x, "y": 0.5}, v)
    best_x = 0.2 if mode == "min" else 0.3
    for i in range(20):
        child = s.suggest(f"t{i}")
        # the child of the best: it keeps x (y mutated) or keeps y (x mutated)
        assert (child["x"] == best_x) != (child["y"] == 0.5), child
    # With a sample of 1 the parent is any member: all four get children.
    s = make(space, mode=mode, population_size=4, sample_size=1)
    for x, v in scores.items():
        s.add_evaluated_point({"x": x, "y": 0.5}, v)
    parents = {s.suggest(f"t{i}")["x"] for i in range(60)}
    assert set(scores) <= parents


def test_aging_drops_the_oldest_even_if_it_is_the_best():
    s = make({"x": tune.uniform(0, 1)}, population_size=3, sample_size=3)
    configs = [s.suggest(f"t{i}") for i in range(3)]
    values = [0.0, 5.0, 6.0]  # the first is by far the best
    for i in (0, 1, 2):
        s.on_trial_complete(f"t{i}", {"loss": values[i]})
    assert [c for c, _ in s.population] == configs
    assert [v for _, v in s.population] == values
    child = s.suggest("t3")  # the parent is the best, t0
    s.on_trial_complete("t3", {"loss": 7.0})
    assert [c for c, _ in s.population] == configs[1:] + [child]
    assert min(v for _, v in s.population) == 5.0


def test_errored_trials_and_results_without_the_metric_are_skipped(caplog):
    s = make({"x": tune.uniform(0, 1)}, population_size=10)
    for i in range(6):
        s.suggest(f"t{i}")
    s.on_trial_complete("t0", {"loss": 1.0})
    s.on_trial_complete("t1", None, error=True)
    s.on_trial_complete("t2", {"acc": 1.0})
    s.on_trial_complete("t3", {"loss": float("nan")})
    s.on_trial_complete("t4", {"loss": "bad"})
    s.on_trial_complete("t5", {"loss": True})
    s.on_trial_complete("unknown", {"loss": 0.0})
    assert [v for _, v in s.population] == [1.0]
    assert "without a number for 'loss'" in caplog.text
    # An errored trial that is run again (restart_errored) joins when the rerun completes.
    s.on_trial_complete("t1", {"loss": 2.0})
    assert [v for _, v in s.population] == [1.0, 2.0]
    s.on_trial_complete("t1", {"loss": 3.0})  # only once
    assert len(s.population) == 2


def test_nested_spaces_and_constants():
    space = {"opt": {"lr": tune.loguniform(1e-3, 1), "inner": {"m": tune.choice([0.9, 0.99]),
                                                                "name": "sgd"}},
             "epochs": 3, "layers": [1, 2]}
    s = make(space, population_size=2, sample_size=2)
    for config in cycle(s, 8, score=lambda c: c["opt"]["lr"]):
        assert set(config) == {"opt"} and set(config["opt"]) == {"lr", "inner"}
        assert set(config["opt"]["inner"]) == {"m"}  # constants are left to the Tuner
    # Through the SearchGenerator (as in a Tuner) the constants are merged in.
    s = RegularizedEvolution(metric="loss", mode="min", random_seed=0)
    alg = SearchGenerator(s)
    assert alg.set_search_properties(None, None, space)
    alg.add_configurations(space, 2)
    config = alg.next_trial("t0").config
    assert config["epochs"] == 3 and config["layers"] == [1, 2]
    assert config["opt"]["inner"]["name"] == "sgd" and config["opt"]["inner"]["m"] in (0.9, 0.99)


def test_values_come_from_the_domains_own_sampler():
    space = {"i": tune.randint(0, 10), "li": tune.lograndint(1, 1000),
             "qi": tune.qrandint(5, 50, 5), "qli": tune.qlograndint(2, 64, 2),
             "f": tune.quniform(0, 1, 0.1),
             "lf": tune.qloguniform(1e-3, 1, 1e-3), "n": tune.randn(0, 1),
             "c": tune.choice([[1], {"a": 1}, 1.0, 1, True])}
    rng = random.Random(11)
    expected = {k: d.sample(rng) for k, d in space.items()}
    s = make(space, random_seed=11, population_size=3, sample_size=2)
    assert s.suggest("first") == expected
    s.on_trial_complete("first", {"loss": 0.0})
    for config in cycle(s, 40, score=lambda c: float(c["i"])):
        assert isinstance(config["i"], int) and 0 <= config["i"] < 10
        assert isinstance(config["li"], int) and 1 <= config["li"] < 1000
        assert config["qi"] % 5 == 0 and 5 <= config["qi"] <= 50
        assert config["qli"] % 2 == 0 and 2 <= config["qli"] <= 64
        assert config["f"] in [round(k / 10, 7) for k in range(11)]
        assert config["lf"] == round(round(config["lf"] / 1e-3) * 1e-3, 9)
        assert isinstance(config["n"], float)
        assert any(type(config["c"]) is type(c) and config["c"] == c
                   for c in space["c"].categories)
    # Suggestions are copies: changing one changes neither the space nor the population.
    space = {"c": tune.choice([[1], [2]])}
    s = make(space)
    config = s.suggest("t0")
    config["c"].append(99)
    s.on_trial_complete("t0", {"loss": 0.0})
    assert space["c"].categories == [[1], [2]] and s.population[0][0]["c"] in ([1], [2])


def test_points_to_evaluate_come_first_and_missing_values_are_sampled():
    points = [{"x": 0.25}, {"x": 0.5, "y": "b"}]
    s = make({"x": tune.uniform(0, 1), "y": tune.choice(["a", "b"])},
             points_to_evaluate=points, population_size=2, sample_size=2)
    a, b = s.suggest("t0"), s.suggest("t1")
    assert a["x"] == 0.25 and a["y"] in ("a", "b")
    assert b == {"x": 0.5, "y": "b"}
    assert points == [{"x": 0.25}, {"x": 0.5, "y": "b"}]  # the caller's points untouched
    with pytest.raises(ValueError, match="'y'='c' is not a value of choice"):
        make({"x": tune.uniform(0, 1), "y": tune.choice(["a", "b"])},
             points_to_evaluate=[{"y": "c"}])
    # Checked also when the space arrives from the Tuner.
    s = RegularizedEvolution(metric="loss", mode="min", points_to_evaluate=[{"x": 7.0}])
    with pytest.raises(ValueError, match="'x'=7.0 is not a value of uniform"):
        s.set_search_properties(None, None, {"x": tune.uniform(0, 1)})


def test_add_evaluated_point():
    s = make({"x": tune.uniform(0, 1), "n": tune.randint(0, 3)}, population_size=2,
             sample_size=2)
    s.add_evaluated_point({"x": 0.5, "n": 1}, 2.0)
    s.add_evaluated_point({"x": 0.6, "n": 1}, 1.0, error=True)
    assert s.population == [({"x": 0.5, "n": 1}, 2.0)]
    with pytest.raises(ValueError, match="lacks 'n'"):
        s.add_evaluated_point({"x": 0.5}, 1.0)
    with pytest.raises(ValueError, match="'n'=5 is not a value of randint"):
        s.add_evaluated_point({"x": 0.5, "n": 5}, 1.0)


# -- refusals and argument checks ----------------------------------------------------------

@pytest.mark.parametrize("domain, words", [
    (tune.grid_search([1, 2]), "grid_search"),
    (tune.sample_from(lambda spec: 1), "sample_from"),
    (tune.choice([{"a": tune.uniform(0, 1)}, 2]), "domain in category 0"),
    ([tune.uniform(0, 1), 2], "a list holding domains"),
    (tune.loguniform(-1, 1), "needs lower > 0"),
])
def test_refusals_name_the_parameter(domain, words):
    space = {"model": {"lr": domain}, "ok": tune.uniform(0, 1)}
    with pytest.raises(ValueError, match="'model/lr'") as e:
        RegularizedEvolution(space, metric="loss", mode="min")
    assert words in str(e.value)
    s = RegularizedEvolution(metric="loss", mode="min")
    with pytest.raises(ValueError, match="'model/lr'") as e:
        s.set_search_properties(None, None, space)
    assert words in str(e.value)


def test_refusal_reaches_the_user_before_the_first_trial(tmp_path):
    ran = []
    tuner = tune.Tuner(lambda c: ran.append(1),
                       param_space={"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min",
                                                   search_alg=RegularizedEvolution()),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match="'a'.*grid_search"):
        tuner.fit()
    assert not ran


@pytest.mark.parametrize("kwargs, words", [
    ({"population_size": 0}, "population_size=0): use an int >= 1"),
    ({"population_size": 2.5}, "population_size=2.5): use an int >= 1"),
    ({"population_size": True}, "population_size=True)"),
    ({"sample_size": 0}, "sample_size=0): use an int from 1 to population_size (100)"),
    ({"population_size": 5, "sample_size": 6}, "sample_size=6): use an int from 1 to "
                                                "population_size (5)"),
    ({"random_seed": "abc"}, "random_seed='abc'): use an int or None"),
    ({"mode": "maximize"}, "mode='maximize'"),
    ({"metric": ["a", "b"]}, "several objectives are not supported"),
    ({"points_to_evaluate": {"x": 1}}, "points_to_evaluate={'x': 1}): use a list of dicts"),
    ({"space": [1, 2]}, "space=[1, 2]): use a dict of tune domains"),
    ({"space": {"a": 1}}, "holds no domains to search"),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError) as e:
        RegularizedEvolution(**kwargs)
    assert words in str(e.value)


def test_missing_metric_mode_space_and_a_space_given_twice():
    s = RegularizedEvolution({"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError) as e:
        s.suggest("t0")
    assert "metric" in str(e.value) and "mode" in str(e.value)
    with pytest.raises(ValueError, match="metric.*mode"):
        RegularizedEvolution().set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match="no search space"):
        RegularizedEvolution(metric="loss", mode="min").suggest("t0")
    s = RegularizedEvolution({"x": tune.uniform(0, 1)}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="in one place"):
        s.set_search_properties(None, None, {"y": tune.uniform(0, 1)})
    assert s.set_search_properties(None, None, {"const": 1})  # constants only: fine
    assert not s.set_search_properties("acc", None, {})  # conflicting metric


def test_create_searcher_by_name():
    s = create_searcher("rea", metric="loss", mode="max", population_size=3, sample_size=2)
    assert isinstance(s, RegularizedEvolution) and isinstance(s, Searcher)


# -- state --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["pickle", "save", "get_state"])
def test_a_restored_copy_goes_on_exactly_as_the_original(how, tmp_path):
    s = make(population_size=4, sample_size=2, random_seed=None)  # even unseeded
    cycle(s, 7)
    running = s.suggest("live")
    if how == "pickle":
        copy = pickle.loads(pickle.dumps(s))
    elif how == "save":
        s.save(str(tmp_path / "rea.pkl"))
        copy = RegularizedEvolution(metric="loss", mode="min")
        copy.restore(str(tmp_path / "rea.pkl"))
    else:
        copy = RegularizedEvolution(metric="loss", mode="min")
        copy.set_state(s.get_state())
    for searcher in (s, copy):
        searcher.on_trial_complete("live", {"loss": loss(running)})
    assert cycle(s, 10, prefix="n") == cycle(copy, 10, prefix="n")
    assert s.population == copy.population


def test_get_state_is_a_snapshot():
    s = make(population_size=3, sample_size=2)
    state = s.get_state()
    cycle(s, 4)
    assert state["_population"] == [] and len(s.population) == 3


# -- quality --------------------------------------------------------------------------------

def test_beats_random_search_on_a_sphere():
    space = {f"x{i}": tune.uniform(-5.0, 5.0) for i in range(4)}

    def sphere(config):
        return sum(config[k] ** 2 for k in space)

    def rea_best(seed):
        s = RegularizedEvolution(space, metric="loss", mode="min", population_size=20,
                                 sample_size=5, random_seed=seed)
        return min(sphere(c) for c in cycle(s, 150, score=sphere))

    def random_best(seed):
        rng = random.Random(seed)
        return min(sphere({k: d.sample(rng) for k, d in space.items()}) for _ in range(150))

    seeds = range(8)
    rea = statistics.median(rea_best(seed) for seed in seeds)
    rand = statistics.median(random_best(seed) for seed in seeds)
    assert rea < rand / 2, (rea, rand)
    # and in "max" mode on the negated function
    s = RegularizedEvolution(space, metric="score", mode="max", population_size=20,
                             sample_size=5, random_seed=0)
    best = max(-sphere(c) for c in cycle(s, 150, score=lambda c: -sphere(c), metric="score"))
    assert -best < rand


# -- end to end on a real local Ray -------------------------------------------------------------

def timed(config):
    start = time.time()
    time.sleep(0.4)
    tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"], "start": start,
                 "end": time.time()})


def max_overlap(rows):
    events = sorted([(r["start"], 1) for r in rows] + [(r["end"], -1) for r in rows])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("limit", [1, 4])
def test_max_concurrent_trials_is_honoured(tmp_path, limit):
    trainable = tune.with_resources(timed, {"cpu": 0.25})
    searcher = RegularizedEvolution(population_size=3, sample_size=2, random_seed=0)
    results = tune.Tuner(
        trainable, param_space={"x": tune.uniform(0, 1), "y": tune.uniform(0, 1), "const": 7},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8,
                                    max_concurrent_trials=limit, search_alg=searcher),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="e2e", verbose=0)).fit()
    rows = [r.metrics for r in results]
    assert len(rows) == 8 and not results.errors
    assert all(r.config["const"] == 7 for r in results)
    configs = [(r.config["x"], r.config["y"]) for r in results]
    assert len(set(configs)) == 8
    # Evolution ran: some configurations share a value with an earlier one (a child
    # keeps all but one of its parent's values).
    assert len({x for x, _ in configs}) < 8 or len({y for _, y in configs}) < 8
    peak = max_overlap(rows)
    assert peak <= limit
    if limit == 4:
        assert peak >= 2  # really concurrent
    _, state = load_experiment_state(os.path.join(str(tmp_path), "e2e"))
    population = state["search_alg"].searcher.population
    assert len(population) == 3
    by_config = {(r.config["x"], r.config["y"]): r.metrics["loss"] for r in results}
    assert all(by_config[(c["x"], c["y"])] == v for c, v in population)


def failing_third(config):
    marker = config["marker"]
    with open(marker + ".count", "a") as f:
        f.write("x")
    with open(marker + ".count") as f:
        n = len(f.read())
    if n == 3 and os.path.exists(marker):
        raise RuntimeError("planned failure of the third trial")
    tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"]})


def config_of(result):
    if result.config is not None:
        return result.config
    with open(os.path.join(result.path, "params.json")) as f:
        return json.load(f)


@pytest.mark.usefixtures("ray_local")
def test_restore_mid_run_continues_the_population_without_repeats(tmp_path):
    marker = str(tmp_path / "fail")
    open(marker, "w").close()
    space = {"x": tune.uniform(0, 1), "y": tune.uniform(0, 1), "marker": marker}
    path = os.path.join(str(tmp_path), "restore")
    searcher = RegularizedEvolution(population_size=3, sample_size=2, random_seed=0)
    results = tune.Tuner(
        failing_third, param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6,
                                    max_concurrent_trials=1, search_alg=searcher),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="restore", verbose=0,
                                  failure_config=tune.FailureConfig(fail_fast=True))).fit()
    assert len(results.errors) == 1
    assert len(results) < 6  # stopped mid-run
    _, state = load_experiment_state(path)
    before = state["search_alg"].searcher.population
    assert len(before) == 2  # the errored third trial did not join
    # An errored trial's Result has no metrics, so no .config: read its params.json.
    first = [(c["x"], c["y"]) for c in map(config_of, results)]
    assert len(first) == 3
    os.remove(marker)

    results = tune.Tuner.restore(path, failing_third, restart_errored=True).fit()
    assert len(results) == 6 and not results.errors
    configs = [(r.config["x"], r.config["y"]) for r in results]
    assert len(set(configs)) == 6  # no suggestion repeated (a restarted seed would repeat)
    assert set(first) <= set(configs)
    new = [c for c in configs if c not in first]
    assert len(new) == 3
    # The population continued: the rerun third trial completed it (3 members), so the
    # three new suggestions are children, each sharing a value with an earlier config.
    for i, (x, y) in enumerate(new):
        earlier = first + new[:i]
        assert any((x == ex) != (y == ey) for ex, ey in earlier), (x, y)
    _, state = load_experiment_state(path)
    after = state["search_alg"].searcher.population
    losses = {(r.config["x"], r.config["y"]): r.metrics["loss"] for r in results}
    assert [((c["x"], c["y"]), v) for c, v in after] == [(c, losses[c]) for c in new]
    assert all(math.isfinite(v) for _, v in after)
