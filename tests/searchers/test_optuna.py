"""OptunaSearch: space conversion (and refusals), the ask/tell cycle, state, and real runs."""

from __future__ import annotations

import os
import pickle
import time

import optuna
import pytest

import tune_core as tune
from searchers.optuna import OptunaSearch, convert_search_space
from tune_core.experiment.experiment_state import load_experiment_state
from tune_core.search.searcher import Searcher

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cycle(searcher, n, score=lambda c: 0.0, metric="loss", prefix="t"):
    """Suggest and complete ``n`` trials one at a time; the configs."""
    configs = []
    for i in range(n):
        tid = f"{prefix}{i}"
        config = searcher.suggest(tid)
        configs.append(config)
        searcher.on_trial_result(tid, {metric: score(config), "training_iteration": 1})
        searcher.on_trial_complete(tid, {metric: score(config)})
    return configs


# -- conversion ---------------------------------------------------------------------

def by_name(space):
    return {p.name: p for p in convert_search_space(space)}


def test_nested_dicts_flatten_and_rebuild():
    space = {"model": {"lr": tune.loguniform(1e-4, 1e-1), "depth": tune.randint(1, 5),
                       "act": "relu"}, "batch": tune.choice([16, 32]), "epochs": 3}
    params = by_name(space)
    assert set(params) == {"model/lr", "model/depth", "batch"}  # constants left out
    s = OptunaSearch(space, metric="loss", mode="min", seed=0)
    for config in cycle(s, 5):
        assert set(config) == {"model", "batch"} and set(config["model"]) == {"lr", "depth"}
        assert 1e-4 <= config["model"]["lr"] <= 1e-1
        assert config["model"]["depth"] in range(1, 5)


def test_float_domains():
    p = by_name({"u": tune.uniform(-1, 2), "l": tune.loguniform(1e-3, 10),
                 "q": tune.quniform(0, 1, 0.1), "ql": tune.qloguniform(1e-2, 10, 0.05)})
    assert p["u"].dist == optuna.distributions.FloatDistribution(-1, 2)
    assert p["l"].dist == optuna.distributions.FloatDistribution(1e-3, 10, log=True)
    assert p["q"].dist.step == 0.1 and (p["q"].dist.low, p["q"].dist.high) == (0, 1)
    assert p["ql"].dist.log and p["ql"].from_optuna(0.1234) == 0.1
    s = OptunaSearch({"q": tune.quniform(0, 1, 0.1), "ql": tune.qloguniform(1e-2, 10, 0.05)},
                     metric="loss", mode="min", seed=1)
    for c in cycle(s, 15):
        assert c["q"] in {round(k * 0.1, 6) for k in range(11)}
        assert abs(c["ql"] / 0.05 - round(c["ql"] / 0.05)) < 1e-9 and 0.05 <= c["ql"] <= 10


def test_integer_domains():
    p = by_name({"r": tune.randint(0, 10), "lr": tune.lograndint(1, 100),
                 "qr": tune.qrandint(0, 20, 5), "qlr": tune.qlograndint(4, 64, 4)})
    assert p["r"].dist == optuna.distributions.IntDistribution(0, 9)  # upper exclusive
    assert p["lr"].dist == optuna.distributions.IntDistribution(1, 99, log=True)
    assert p["qr"].dist == optuna.distributions.IntDistribution(0, 20, step=5)  # upper incl.
    assert p["qlr"].dist == optuna.distributions.IntDistribution(1, 16, log=True)
    assert p["qlr"].from_optuna(3) == 12 and p["qlr"].to_optuna(12) == 3
    s = OptunaSearch({"qr": tune.qrandint(0, 20, 5), "qlr": tune.qlograndint(4, 64, 4)},
                     metric="loss", mode="min", seed=2)
    for c in cycle(s, 15):
        assert c["qr"] in (0, 5, 10, 15, 20) and type(c["qr"]) is int
        assert c["qlr"] % 4 == 0 and 4 <= c["qlr"] <= 64 and type(c["qlr"]) is int


CATEGORIES = [[1, 2], {"a": 1, "b": [3]}, None, "s", 1, 1.0, True, (1, 2)]


def test_choice_of_lists_dicts_and_mixed_types_round_trips_exactly():
    p = by_name({"c": tune.choice(CATEGORIES)})["c"]
    assert p.dist.choices == tuple(range(len(CATEGORIES)))  # indices, mapped back
    for i, cat in enumerate(CATEGORIES):
        value = p.from_optuna(i)
        assert value == cat and type(value) is type(cat)
        assert p.to_optuna(cat) == i
    s = OptunaSearch({"c": tune.choice(CATEGORIES)}, metric="loss", mode="min", seed=3)
    seen = []
    for c in cycle(s, 40):
        assert any(c["c"] == cat and type(c["c"]) is type(cat) for cat in CATEGORIES)
        seen.append(repr(c["c"]))
    assert len(set(seen)) == len(CATEGORIES)  # 1, 1.0 and True stay distinct


def test_choice_of_plain_values_is_passed_to_optuna_as_is():
    p = by_name({"c": tune.choice(["a", "b", 3, None])})["c"]
    assert p.dist.choices == ("a", "b", 3, None)


@pytest.mark.parametrize("domain, words", [
    (tune.grid_search([1, 2]), "grid_search"),
    (tune.sample_from(lambda spec: 1), "sample_from"),
    (tune.randn(0, 1), "randn"),
    (tune.qrandn(0, 1, 0.1), "qrandn"),
    (tune.choice([{"x": tune.uniform(0, 1)}, 2]), "choice"),
    ([tune.uniform(0, 1), 2], "list"),
])
def test_refusals_name_the_parameter_and_domain(domain, words):
    space = {"model": {"lr": domain}, "ok": tune.uniform(0, 1)}
    with pytest.raises(ValueError, match="'model/lr'") as e:
        OptunaSearch(space, metric="loss", mode="min")
    assert words in str(e.value)
    # Also when the space comes from the Tuner.
    s = OptunaSearch(metric="loss", mode="min")
    with pytest.raises(ValueError, match="'model/lr'"):
        s.set_search_properties(None, None, space)


def test_refusal_reaches_the_user_before_the_first_trial(tmp_path):
    ran = []
    tuner = tune.Tuner(lambda c: ran.append(1), param_space={"a": tune.randn()},
                       tune_config=tune.TuneConfig(metric="loss", mode="min",
                                                   search_alg=OptunaSearch()),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match="'a'.*randn"):
        tuner.fit()
    assert not ran


def test_single_multiple_and_space_given_twice():
    assert by_name({"q": tune.qloguniform(1, 1.5, 1)})["q"].dist.choices == (1.0,)
    s = OptunaSearch({"a": tune.uniform(0, 1)}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="in one place"):
        s.set_search_properties(None, None, {"b": tune.uniform(0, 1)})
    assert s.set_search_properties(None, None, {"const": 1})  # constants are fine


def test_missing_metric_mode_is_a_clear_error():
    s = OptunaSearch({"a": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match=r"OptunaSearch.*TuneConfig\(metric=\.\.\., mode"):
        s.set_search_properties(None, None, {})
    with pytest.raises(ValueError, match="OptunaSearch"):
        OptunaSearch({"a": tune.uniform(0, 1)}, metric="loss").suggest("t0")


def test_optuna_distribution_space_unflattens_names():
    d = optuna.distributions
    s = OptunaSearch({"m/lr": d.FloatDistribution(0.1, 1), "n": d.IntDistribution(1, 3)},
                     metric="loss", mode="min", seed=0)
    for c in cycle(s, 3):
        assert 0.1 <= c["m"]["lr"] <= 1 and c["n"] in (1, 2, 3)


# -- the cycle ------------------------------------------------------------------------

def test_suggest_complete_cycle_learns_and_reports_intermediate_values():
    s = OptunaSearch({"x": tune.uniform(-5, 5)}, metric="loss", mode="min", seed=0)
    configs = cycle(s, 40, score=lambda c: (c["x"] - 2) ** 2)
    study = s.study
    assert len(study.trials) == 40
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.trials[0].intermediate_values == {1: (configs[0]["x"] - 2) ** 2}
    assert abs(study.best_params["x"] - 2) < 0.5
    assert min(abs(c["x"] - 2) for c in configs[-10:]) < 0.5  # TPE concentrates


def test_errors_and_missing_results_are_told_as_fail():
    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="max", seed=0)
    for tid in ("a", "b", "c", "d"):
        s.suggest(tid)
    s.on_trial_complete("a", {"loss": 1.0}, error=True)
    s.on_trial_complete("b", None)
    s.on_trial_complete("c", {"other": 1})
    s.on_trial_complete("d", {"loss": 0.5})
    states = [t.state for t in s.study.trials]
    F, C = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE
    assert states == [F, F, F, C]
    assert s.study.directions == [optuna.study.StudyDirection.MAXIMIZE]


def test_points_to_evaluate_come_first():
    points = [{"m": {"lr": 0.01}, "c": [1, 2]}, {"m": {"lr": 0.5}, "c": {"k": 3}}]
    s = OptunaSearch({"m": {"lr": tune.loguniform(1e-3, 1)},
                      "c": tune.choice([[1, 2], {"k": 3}, "z"])},
                     metric="loss", mode="min", points_to_evaluate=points, seed=0)
    configs = cycle(s, 4)
    assert configs[:2] == points
    with pytest.raises(ValueError, match="'c'"):
        OptunaSearch({"c": tune.choice([1, 2])}, metric="loss", mode="min",
                     points_to_evaluate=[{"c": 7}])


def test_evaluated_rewards_are_completed_trials():
    points = [{"x": 1.0}, {"x": 3.0}]
    s = OptunaSearch({"x": tune.uniform(0, 4)}, metric="loss", mode="min",
                     points_to_evaluate=points, evaluated_rewards=[5.0, 0.1], seed=0)
    study = s.study
    assert [t.value for t in study.trials] == [5.0, 0.1]
    assert study.best_params == {"x": 3.0}
    s.suggest("t0")  # the points are not run again
    assert len(study.trials) == 3
    with pytest.raises(ValueError, match="same length"):
        OptunaSearch({"x": tune.uniform(0, 4)}, metric="loss", mode="min",
                     points_to_evaluate=points, evaluated_rewards=[1.0])


def test_define_by_run():
    def space(trial):
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("a/lr", 1e-3, 1, log=True)
        else:
            trial.suggest_int("b_units", 1, 8)
        return {"fixed": [1, 2]}

    s = OptunaSearch(space, metric="loss", mode="min", seed=0)
    configs = cycle(s, 10)
    for c in configs:
        assert c["fixed"] == [1, 2]
        if c["kind"] == "a":
            assert set(c) == {"kind", "a", "fixed"} and 1e-3 <= c["a"]["lr"] <= 1
        else:
            assert set(c) == {"kind", "b_units", "fixed"}
    assert {c["kind"] for c in configs} == {"a", "b"}
    with pytest.raises(ValueError, match="define-by-run"):
        OptunaSearch(space, metric="loss", mode="min", points_to_evaluate=[{"kind": "a"}],
                     evaluated_rewards=[1.0])


def test_multi_objective():
    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric=["a", "b"], mode=["min", "max"], seed=0)
    assert isinstance(s.study.sampler, optuna.samplers.NSGAIISampler)
    for i in range(6):
        c = s.suggest(f"t{i}")
        s.on_trial_result(f"t{i}", {"a": c["x"], "b": c["x"]})  # ignored: multi-objective
        s.on_trial_complete(f"t{i}", {"a": c["x"], "b": 1 - c["x"]})
    assert len(s.study.trials) == 6 and all(len(t.values) == 2 for t in s.study.trials)
    assert s.study.directions == [optuna.study.StudyDirection.MINIMIZE,
                                  optuna.study.StudyDirection.MAXIMIZE]
    with pytest.raises(ValueError, match="lists of the same length"):
        OptunaSearch(metric=["a", "b"], mode="min")


@pytest.mark.filterwarnings("ignore:`constraints_func` has been deprecated")
def test_custom_sampler_and_constraints_func():
    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                     sampler=optuna.samplers.RandomSampler(seed=0))
    cycle(s, 2)
    assert isinstance(s.study.sampler, optuna.samplers.RandomSampler)

    def constraints(frozen):
        return [frozen.user_attrs["tune_result"]["mem"] - 1.0]

    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", seed=0,
                     constraints_func=constraints)
    for i in range(5):
        c = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"loss": c["x"], "mem": 2.0 * (i % 2)})
    cons = [list(t.system_attrs.get("constraints")) for t in s.study.trials]
    assert cons == [[-1.0], [1.0], [-1.0], [1.0], [-1.0]]  # Optuna evaluated the constraint
    # Optuna 5's way: named constraints read from the result.
    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", seed=0,
                     constraints=["mem_over"])
    for i in range(4):
        c = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"loss": c["x"], "mem_over": float(i % 2)})
    assert [t.constraints for t in s.study.trials] == [{"mem_over": float(i % 2)}
                                                       for i in range(4)]
    with pytest.raises(ValueError, match="constraints_func"):
        OptunaSearch(sampler=optuna.samplers.TPESampler(), constraints_func=constraints)


# -- state ----------------------------------------------------------------------------

def test_pickle_round_trip_continues_the_same_study():
    s = OptunaSearch({"x": tune.uniform(0, 1), "c": tune.choice([[1], {"a": 2}])},
                     metric="loss", mode="min", seed=0)
    cycle(s, 3, score=lambda c: c["x"])
    s.suggest("live")  # running while the state is saved
    clone = pickle.loads(pickle.dumps(s))
    twin = pickle.loads(pickle.dumps(s))
    clone.on_trial_complete("live", {"loss": 0.5})
    assert len(clone.study.trials) == 4
    assert clone.study.trials[3].state == optuna.trial.TrialState.COMPLETE
    a = cycle(clone, 3, prefix="n")
    twin.on_trial_complete("live", {"loss": 0.5})
    assert cycle(twin, 3, prefix="n") == a  # the sampler's RNG state came along
    assert [t.number for t in clone.study.trials] == list(range(7))


def test_save_restore_round_trip(tmp_path):
    def space(trial):  # a local function: save must not need it importable
        trial.suggest_float("x", 0, 1)

    s = OptunaSearch(space, metric="loss", mode="min", seed=0)
    cycle(s, 3)
    s.save(str(tmp_path / "ckpt.pkl"))
    expected = cycle(s, 2, prefix="n")
    fresh = OptunaSearch(space, metric="loss", mode="min")
    fresh.restore(str(tmp_path / "ckpt.pkl"))
    assert len(fresh.study.trials) == 3
    assert cycle(fresh, 2, prefix="n") == expected
    s.save_to_dir(str(tmp_path))
    other = OptunaSearch()
    other.restore_from_dir(str(tmp_path))
    assert len(other.study.trials) == 5


def test_searcher_contract_basics():
    s = OptunaSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min")
    assert isinstance(s, Searcher) and s.suggest("t") is not None
    assert not s.set_search_properties("other", None, {})  # conflicting metric


# -- end to end on a real local Ray -------------------------------------------------------

def timed(config):
    start = time.time()
    time.sleep(0.4)
    tune.report({"loss": (config["x"] - 0.3) ** 2, "start": start, "end": time.time()})


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
    results = tune.Tuner(
        trainable, param_space={"x": tune.uniform(0, 1), "const": 7},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8,
                                    max_concurrent_trials=limit,
                                    search_alg=OptunaSearch(seed=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="e2e", verbose=0)).fit()
    rows = [r.metrics for r in results]
    assert len(rows) == 8 and not results.errors
    assert all(r.config["const"] == 7 for r in results)
    assert len({r.config["x"] for r in results}) == 8
    peak = max_overlap(rows)
    assert peak <= limit
    if limit == 4:
        assert peak >= 2  # really concurrent
    _, state = load_experiment_state(os.path.join(str(tmp_path), "e2e"))
    study = state["search_alg"].searcher.study
    assert len(study.trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def failing_third(config):
    marker = config["marker"]
    with open(marker + ".count", "a") as f:
        f.write("x")
    with open(marker + ".count") as f:
        n = len(f.read())
    if n == 3 and os.path.exists(marker):
        raise RuntimeError("planned failure of the third trial")
    tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"]})


@pytest.mark.usefixtures("ray_local")
def test_restore_mid_run_continues_the_study_without_repeats(tmp_path):
    marker = str(tmp_path / "fail")
    open(marker, "w").close()
    space = {"x": tune.uniform(0, 1), "y": tune.choice([0.0, 0.5]), "marker": marker}
    path = os.path.join(str(tmp_path), "restore")
    results = tune.Tuner(
        failing_third, param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6,
                                    max_concurrent_trials=1, search_alg=OptunaSearch(seed=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="restore", verbose=0,
                                  failure_config=tune.FailureConfig(fail_fast=True))).fit()
    assert len(results.errors) == 1
    assert len(results) < 6  # stopped mid-run
    _, state = load_experiment_state(path)
    before = len(state["search_alg"].searcher.study.trials)
    assert before == 3
    os.remove(marker)

    results = tune.Tuner.restore(path, failing_third, restart_errored=True).fit()
    assert len(results) == 6 and not results.errors
    xs = [r.config["x"] for r in results]
    assert len(set(xs)) == 6  # no suggestion repeated
    _, state = load_experiment_state(path)
    searcher = state["search_alg"].searcher
    study = searcher.study
    C, F = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    # The study continued (not restarted): 3 Optuna trials before the restore, the
    # errored trial's first run a FAIL and its rerun added as a completed trial
    # (number 3), then the three new suggestions (4, 5, 6).
    assert sorted(searcher._numbers.values()) == [0, 1, 2, 4, 5, 6]
    assert len(study.trials) == 7
    assert [t.state for t in study.trials].count(F) == 1
    assert [t.state for t in study.trials].count(C) == 6
    assert sorted(t.params["x"] for t in study.trials if t.state == C) == sorted(xs)
