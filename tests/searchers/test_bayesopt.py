"""BayesOptSearch: GP Bayesian optimisation on Optuna's GPSampler."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import optuna
import pytest

import tune_core as tune
from searchers import create_searcher
from searchers.bayesopt import BayesOptSearch
from tune_core.search.searcher import Searcher
from tests.searchers import e2e


def quadratic(config):
    return (config["x"] - 0.3) ** 2


def run(searcher, n, score=quadratic, metric="loss"):
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {metric: score(config)})
    return configs


def test_uses_optunas_gp_sampler_after_the_random_steps():
    s = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                       random_state=0, random_search_steps=4)
    assert isinstance(s.study.sampler, optuna.samplers.GPSampler)
    configs = run(s, 12)
    # After 4 random points the GP homes in on the minimum at 0.3.
    assert min(abs(c["x"] - 0.3) for c in configs[4:]) < 0.02
    assert abs(configs[-1]["x"] - 0.3) < 0.05


def test_log_integer_and_categorical_parameters_and_nested_dicts():
    space = {"lr": tune.loguniform(1e-5, 1e-1), "opt": {"layers": tune.randint(1, 5),
                                                         "act": tune.choice(["relu", "tanh"]),
                                                         "name": "mlp"}}

    def score(c):
        return (math.log10(c["lr"]) + 3) ** 2 + (c["opt"]["layers"] - 3) ** 2 + \
            (c["opt"]["act"] == "tanh")

    s = BayesOptSearch(space, metric="loss", mode="min", random_state=1, random_search_steps=5)
    configs = run(s, 25, score)
    for c in configs:
        assert isinstance(c["lr"], float) and 1e-5 <= c["lr"] <= 1e-1
        assert type(c["opt"]["layers"]) is int and 1 <= c["opt"]["layers"] <= 4
        assert c["opt"]["act"] in ("relu", "tanh")
        assert "name" not in c["opt"]  # constants are merged by the SearchGenerator
    best = min(configs, key=score)
    assert score(best) < 0.5
    assert best["opt"]["layers"] == 3 and best["opt"]["act"] == "relu"


def test_max_mode():
    s = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="acc", mode="max", random_state=0,
                       random_search_steps=3)
    configs = run(s, 12, lambda c: -quadratic(c), metric="acc")
    assert abs(configs[-1]["x"] - 0.3) < 0.05


def test_running_trials_get_different_points():
    s = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", random_state=0,
                       random_search_steps=3)
    run(s, 6)
    live = [s.suggest(f"live{i}")["x"] for i in range(4)]  # none completed yet
    assert len({round(x, 3) for x in live}) == 4


def test_duplicates_are_skipped_and_patience_finishes_the_search():
    s = BayesOptSearch({"c": tune.choice(["a", "b", "c"])}, metric="loss", mode="min",
                       random_state=0, random_search_steps=1, patience=3)
    configs = run(s, 20, lambda c: {"a": 1.0, "b": 0.0, "c": 2.0}[c["c"]])
    # Each configuration once; once all three are known every suggestion repeats one,
    # and the 3rd repeat in a row finishes the search (run() stops at FINISHED).
    assert sorted(c["c"] for c in configs) == ["a", "b", "c"]
    failed = [t for t in s.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 3
    assert all(t.params["c"] in ("a", "b", "c") for t in failed)


def test_duplicates_allowed_when_skip_duplicate_is_false():
    s = BayesOptSearch({"c": tune.choice(["a", "b"])}, metric="loss", mode="min",
                       random_state=0, random_search_steps=1, skip_duplicate=False)
    assert len(run(s, 6, lambda c: float(c["c"] == "a"))) == 6


def test_analysis_of_an_earlier_run_is_observed():
    earlier = [SimpleNamespace(config={"x": x, "const": 1}, metrics={"loss": quadratic({"x": x})},
                               error=None) for x in (0.1, 0.5, 0.9)]
    earlier.append(SimpleNamespace(config={"x": 0.2}, metrics={}, error=RuntimeError()))
    s = BayesOptSearch(metric="loss", mode="min", random_state=0, analysis=earlier)
    s.set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    s.suggest("t0")
    done = [t for t in s.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["x"] for t in done) == [0.1, 0.5, 0.9]


def test_points_to_evaluate_and_evaluated_rewards():
    s = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                       points_to_evaluate=[{"x": 0.25}, {"x": 0.75}], random_state=0)
    assert [c["x"] for c in run(s, 2)] == [0.25, 0.75]
    s = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                       points_to_evaluate=[{"x": 0.25}], evaluated_rewards=[0.1],
                       random_state=0)
    assert len(s.study.trials) == 1 and s.study.trials[0].value == 0.1


@pytest.mark.parametrize("kwargs, words", [
    ({"utility_kwargs": {"kind": "ucb", "kappa": 2.5, "xi": 0.0}}, ["'ucb'", "'ei'"]),
    ({"utility_kwargs": {"kind": "ei", "xi": 0.1}}, ["xi", "0.1"]),
    ({"utility_kwargs": {"kindd": "ei"}}, ["kindd", "accepted"]),
    ({"random_search_steps": 0}, ["random_search_steps=0", ">= 1"]),
    ({"patience": -1}, ["patience=-1"]),
    ({"random_state": "7"}, ["random_state='7'"]),
    ({"mode": "minimize"}, ["minimize", '"min"']),
])
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError) as err:
        BayesOptSearch({"x": tune.uniform(0, 1)}, **{"metric": "loss", "mode": "min", **kwargs})
    for word in words:
        assert word in str(err.value)


def test_expected_improvement_spelled_out_is_accepted():
    BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                   utility_kwargs={"kind": "ei", "xi": 0.0, "kappa": 2.576})


@pytest.mark.parametrize("domain, words", [
    (tune.grid_search([1, 2]), ["'p'", "grid_search"]),
    (tune.randn(0, 1), ["'p'", "normal"]),
    (tune.sample_from(lambda _: 1), ["'p'", "function"]),
])
def test_domains_it_cannot_represent_are_refused_naming_the_parameter(domain, words):
    s = BayesOptSearch(metric="loss", mode="min")
    with pytest.raises(ValueError) as err:
        s.set_search_properties(None, None, {"p": domain})
    for word in words:
        assert word in str(err.value)


def test_missing_metric_names_bayesopt():
    s = BayesOptSearch()
    with pytest.raises(ValueError) as err:
        s.set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    assert "BayesOptSearch" in str(err.value) and "metric" in str(err.value)


def test_pickle_continues_identically():
    s = BayesOptSearch({"x": tune.uniform(0, 1), "n": tune.randint(0, 4)}, metric="loss",
                       mode="min", random_state=3, random_search_steps=3)
    score = lambda c: quadratic(c) + 0.1 * c["n"]  # noqa: E731
    run(s, 6, score)
    twin = pickle.loads(pickle.dumps(s))
    a = [s.suggest(f"n{i}") for i in range(3)]
    b = [twin.suggest(f"n{i}") for i in range(3)]
    assert a == b


def test_create_searcher_by_name():
    s = create_searcher("bayesopt", metric="loss", mode="min", random_state=0)
    assert isinstance(s, BayesOptSearch)


# --- on a real Ray ------------------------------------------------------------------------------

@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("limit", [1, 4])
def test_max_concurrent_trials_is_honoured(tmp_path, limit):
    searcher = BayesOptSearch(random_state=0, random_search_steps=3)
    e2e.check_max_concurrent(searcher, limit, tmp_path)


@pytest.mark.usefixtures("ray_local")
def test_restore_mid_run_continues_without_repeats(tmp_path):
    before, after, results = e2e.check_restore_mid_run(
        lambda: BayesOptSearch(random_state=0, random_search_steps=2), tmp_path)
    C = optuna.trial.TrialState.COMPLETE
    assert len([t for t in before.study.trials if t.state == C]) == 2
    # the same study went on: its first trials are still there, now with the others
    done = [t for t in after.study.trials if t.state == C]
    assert len(done) == 6
    assert [t.params for t in done[:2]] == [t.params for t in before.study.trials
                                            if t.state == C]
    assert sorted(t.params["x"] for t in done) == sorted(r.config["x"] for r in results)
