"""HyperOptSearch: space conversion, the ask/tell loop, state, and runs on a real local Ray."""

from __future__ import annotations

import json
import math
import os
import pickle
import time

import pytest

pytest.importorskip("hyperopt")

import tune_core as tune  # noqa: E402
from searchers.hyperopt import HyperOptSearch  # noqa: E402


def run(searcher, n, score=None):
    """Suggests and completes ``n`` trials; returns the configs."""
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict)
        configs.append(config)
        value = score(config) if score else float(i)
        searcher.on_trial_complete(f"t{i}", {"m": value})
    return configs


# ------------------------------------------------------------------------------ conversions

def test_nested_space_keeps_structure_and_constants():
    space = {"model": {"lr": tune.loguniform(1e-4, 1e-1), "layers": {"n": tune.randint(1, 4)},
                       "name": "mlp"}, "seed": 3, "pair": (tune.uniform(0, 1), "x")}
    s = HyperOptSearch(space, metric="m", mode="min", random_state_seed=0)
    for c in run(s, 15):
        assert set(c) == {"model", "seed", "pair"}
        assert c["model"]["name"] == "mlp" and c["seed"] == 3
        assert 1e-4 <= c["model"]["lr"] <= 1e-1 and isinstance(c["model"]["lr"], float)
        assert type(c["model"]["layers"]["n"]) is int and 1 <= c["model"]["layers"]["n"] <= 3
        assert isinstance(c["pair"], tuple) and c["pair"][1] == "x" and 0 <= c["pair"][0] <= 1


def test_conditional_choice_over_dicts_returns_the_dicts_as_written():
    space = {"opt": tune.choice([
        {"name": "sgd", "momentum": tune.uniform(0.5, 0.99), "nesterov": True},
        {"name": "adam", "betas": [0.9, 0.999], "eps": tune.loguniform(1e-9, 1e-6)},
        "none",
    ])}
    s = HyperOptSearch(space, metric="m", mode="min", random_state_seed=1, n_initial_points=5)
    seen = set()
    for c in run(s, 40):
        opt = c["opt"]
        if opt == "none":
            seen.add("none")
            continue
        seen.add(opt["name"])
        if opt["name"] == "sgd":
            assert set(opt) == {"name", "momentum", "nesterov"} and opt["nesterov"] is True
            assert 0.5 <= opt["momentum"] <= 0.99
        else:
            assert set(opt) == {"name", "betas", "eps"} and opt["betas"] == [0.9, 0.999]
            assert 1e-9 <= opt["eps"] <= 1e-6
    assert seen == {"sgd", "adam", "none"}


def test_mixed_type_choice_round_trips_exactly():
    cats = [1, 1.0, True, "1", None, (1, 2), [1, 2], {"a": 1}]
    s = HyperOptSearch({"c": tune.choice(cats)}, metric="m", mode="min", random_state_seed=2,
                       points_to_evaluate=[{"c": c} for c in cats])
    got = run(s, len(cats))
    for want, config in zip(cats, got):
        assert type(config["c"]) is type(want) and config["c"] == want
    # returned values are copies: mutating one does not change later suggestions
    got[-1]["c"]["a"] = 99
    more = run(HyperOptSearch({"c": tune.choice(cats)}, metric="m", mode="min",
                              random_state_seed=3), 60)
    assert all(any(type(c["c"]) is type(w) and c["c"] == w for w in cats) for c in more)
    assert {"a": 1} in [c["c"] for c in more]


@pytest.mark.parametrize("domain,check", [
    (tune.quniform(0.05, 1.0, 0.1),
     lambda v: 0.1 - 1e-9 <= v <= 1.0 + 1e-9 and abs(v / 0.1 - round(v / 0.1)) < 1e-6),
    (tune.qloguniform(1, 100, 5),
     lambda v: 5 <= v <= 100 and v % 5 == 0 and isinstance(v, float)),
    (tune.loguniform(1e-5, 1e-2), lambda v: 1e-5 <= v <= 1e-2),
    (tune.randint(0, 3), lambda v: type(v) is int and v in (0, 1, 2)),
    (tune.qrandint(0, 10, 5), lambda v: type(v) is int and v in (0, 5, 10)),
    (tune.lograndint(1, 10), lambda v: type(v) is int and 1 <= v <= 9),
    (tune.qlograndint(2, 20, 2), lambda v: type(v) is int and v % 2 == 0 and 2 <= v <= 20),
    (tune.qrandn(0, 1, 0.5), lambda v: abs(v * 2 - round(v * 2)) < 1e-9),
])
def test_numeric_domains_keep_bounds_grid_and_type(domain, check):
    s = HyperOptSearch({"x": domain}, metric="m", mode="min", random_state_seed=4,
                       n_initial_points=10)
    values = [c["x"] for c in run(s, 60, score=lambda c: (c["x"] - 1) ** 2)]
    assert all(check(v) for v in values), values


def test_int_bounds_reach_both_ends_and_exclude_upper():
    s = HyperOptSearch({"x": tune.randint(-2, 2)}, metric="m", mode="min", random_state_seed=5,
                       n_initial_points=200)
    assert set(c["x"] for c in run(s, 200)) == {-2, -1, 0, 1}


def test_randn_is_a_normal():
    s = HyperOptSearch({"x": tune.randn(10.0, 0.1)}, metric="m", mode="min",
                       random_state_seed=6, n_initial_points=100)
    values = [c["x"] for c in run(s, 100)]
    mean = sum(values) / len(values)
    assert abs(mean - 10.0) < 0.05 and min(values) < 10.0 < max(values)
    assert s._hyperopt_domain().expr is not None


@pytest.mark.parametrize("space,path,what", [
    ({"model": {"lr": tune.grid_search([0.1, 0.2])}}, "model/lr", "grid_search"),
    ({"model": {"lr": tune.sample_from(lambda spec: 0.1)}}, "model/lr", "sample_from"),
    ({"opt": tune.choice([{"lr": tune.grid_search([1, 2])}])}, "opt/0/lr", "grid_search"),
    ({"model": {"lr": tune.loguniform(-1, 1)}}, "model/lr", "lower > 0"),
])
def test_unrepresentable_domains_are_refused_with_their_path(space, path, what):
    with pytest.raises(ValueError, match=f"'{path}'.*{what}|{what}.*'{path}'"):
        HyperOptSearch(space, metric="m", mode="min")


def test_refusal_happens_before_the_first_trial(tmp_path):
    def trainable(config):
        raise AssertionError("no trial may start")

    tuner = tune.Tuner(trainable, param_space={"a": {"b": tune.grid_search([1, 2])}},
                       tune_config=tune.TuneConfig(metric="m", mode="min",
                                                   search_alg=HyperOptSearch()),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match="'a/b'.*grid_search"):
        tuner.fit()


def test_missing_metric_or_mode_is_a_clear_error():
    s = HyperOptSearch({"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match=r"HyperOptSearch.*TuneConfig\(metric=\.\.\., mode"):
        s.set_search_properties(None, None, {})
    with pytest.raises(ValueError, match=r"HyperOptSearch.*TuneConfig\(metric=\.\.\., mode"):
        HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m").suggest("t")
    s = HyperOptSearch(metric="m")
    assert s.set_search_properties(None, "max", {"x": tune.uniform(0, 1)})
    assert s.suggest("t")["x"] <= 1


def test_missing_metric_errors_in_tuner_before_trials(tmp_path):
    def trainable(config):
        raise AssertionError("no trial may start")

    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(search_alg=HyperOptSearch()),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match=r"HyperOptSearch.*TuneConfig\(metric=\.\.\., mode"):
        tuner.fit()


def test_space_from_the_tuner_leaves_constants_to_the_tuner():
    s = HyperOptSearch(metric="m", mode="min", random_state_seed=0)
    s.set_search_properties(None, None, {"x": tune.uniform(0, 1), "c": 1, "d": {"e": 2},
                                         "f": {"g": tune.choice([{"h": 3}, 4]), "i": 5}})
    config = s.suggest("t")
    assert set(config) == {"x", "f"} and set(config["f"]) == {"g"}
    assert config["f"]["g"] in ({"h": 3}, 4)  # constants inside a choice stay


def test_space_given_twice_is_refused():
    s = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min")
    with pytest.raises(ValueError, match="space twice"):
        s.set_search_properties(None, None, {"y": tune.uniform(0, 1)})


def test_native_hyperopt_space_with_conditional_choice():
    from hyperopt import hp

    space = {"opt": hp.choice("opt", [{"name": "sgd", "lr": hp.loguniform("sgd_lr", -5, 0)},
                                      {"name": "adam", "lr": hp.uniform("adam_lr", 0, 1)}]),
             "n": hp.randint("n", 1, 5)}
    point = {"opt": {"name": "adam", "lr": 0.25}, "n": 3}
    s = HyperOptSearch(space, metric="m", mode="min", random_state_seed=0,
                       points_to_evaluate=[point])
    configs = run(s, 10)
    assert configs[0] == point
    for c in configs:
        assert c["opt"]["name"] in ("sgd", "adam") and type(c["n"]) is int and 1 <= c["n"] < 5
    assert pickle.loads(pickle.dumps(s)).suggest("x") == s.suggest("x")


# ------------------------------------------------------------------------- the ask/tell loop

def test_points_to_evaluate_come_first_also_in_conditional_spaces():
    space = {"opt": tune.choice([{"name": "sgd", "m": tune.uniform(0, 1)},
                                 {"name": "adam", "b": tune.qrandint(0, 10, 2)}]),
             "lr": tune.loguniform(1e-4, 1e-1)}
    points = [{"opt": {"name": "adam", "b": 4}, "lr": 0.01},
              {"opt": {"name": "sgd", "m": 0.5}, "lr": 0.001},
              {"opt": {"name": "sgd", "m": 0.25}}]  # lr left out: sampled
    s = HyperOptSearch(space, metric="m", mode="min", points_to_evaluate=points,
                       random_state_seed=0)
    got = run(s, 4)
    assert got[0] == points[0] and got[1] == points[1]
    assert got[2]["opt"] == points[2]["opt"] and 1e-4 <= got[2]["lr"] <= 1e-1
    # the points are in hyperopt's trials with only the active labels set
    docs = s._trials.trials
    assert docs[0]["misc"]["vals"]["opt/0/m"] == [] and docs[0]["misc"]["vals"]["opt/1/b"] == [2.0]


def test_points_outside_the_space_are_refused():
    with pytest.raises(ValueError, match="not in the search space"):
        HyperOptSearch({"c": tune.choice(["a", "b"])}, metric="m", mode="min",
                       points_to_evaluate=[{"c": "z"}])
    with pytest.raises(ValueError, match="'x'=5"):
        HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min",
                       points_to_evaluate=[{"x": 5}])


def test_errors_and_none_results_are_recorded_as_failed():
    import hyperopt

    s = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min", random_state_seed=0)
    for i in range(4):
        s.suggest(f"t{i}")
    s.on_trial_complete("t0", {"m": 1.0})
    s.on_trial_complete("t1", None, error=True)
    s.on_trial_complete("t2", None)
    s.on_trial_complete("t3", {"other": 1})
    s.on_trial_complete("unknown", {"m": 1.0})  # ignored
    statuses = [d["result"]["status"] for d in s._trials.trials]
    assert statuses == [hyperopt.STATUS_OK] + [hyperopt.STATUS_FAIL] * 3
    assert s._trials.losses()[0] == 1.0


def test_max_mode_negates_the_loss_and_tpe_improves():
    def score(c):
        return -((c["x"] - 0.7) ** 2)

    s = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="max", random_state_seed=0,
                       n_initial_points=10)
    configs = run(s, 60, score)
    assert s._trials.losses()[0] == pytest.approx(-score(configs[0]))
    assert min(abs(c["x"] - 0.7) for c in configs) < 0.02
    # the best loss is the best score: TPE minimises the negated metric
    assert min(s._trials.losses()) == pytest.approx(-max(score(c) for c in configs))


def test_n_initial_points_then_tpe():
    from hyperopt import rand, tpe

    calls = []
    real_rand, real_tpe = rand.suggest, tpe.suggest
    s = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min", random_state_seed=0,
                       n_initial_points=3)
    try:
        rand.suggest = lambda *a, **k: calls.append("rand") or real_rand(*a, **k)
        run(s, 6)
    finally:
        rand.suggest = real_rand
    # hyperopt's tpe.suggest delegates to rand.suggest for the first n_startup_jobs trials
    assert calls == ["rand"] * 3
    assert tpe.suggest is real_tpe


def test_add_evaluated_point_informs_the_model():
    s = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="m", mode="min", random_state_seed=0)
    s.add_evaluated_point({"x": 0.3}, 0.5)
    assert s._trials.losses() == [0.5]
    assert s.suggest("t0") is not None


# ------------------------------------------------------------------------------ state

def _space():
    return {"opt": tune.choice([{"name": "sgd", "m": tune.uniform(0, 1)},
                                {"name": "adam", "b": tune.qrandint(0, 10, 2)}]),
            "lr": tune.loguniform(1e-4, 1e-1), "n": tune.randint(1, 8)}


def _score(c):
    return math.log10(c["lr"]) + c["n"]


def test_pickle_round_trip_continues_identically():
    s = HyperOptSearch(_space(), metric="m", mode="min", random_state_seed=7, n_initial_points=4)
    run(s, 6, _score)
    pending = s.suggest("pending")
    copy = pickle.loads(pickle.dumps(s))
    for c in (s, copy):
        c.on_trial_complete("pending", {"m": _score(pending)})
    a = [s.suggest(f"n{i}") for i in range(5)]
    b = [copy.suggest(f"n{i}") for i in range(5)]
    assert a == b
    assert len({json.dumps(c, sort_keys=True) for c in a}) == 5


def test_save_restore_round_trip(tmp_path):
    s = HyperOptSearch(_space(), metric="m", mode="max", random_state_seed=8, n_initial_points=3)
    run(s, 5, _score)
    s.save(str(tmp_path / "s.pkl"))
    fresh = HyperOptSearch(_space(), metric="m", mode="max", random_state_seed=123)
    fresh.restore(str(tmp_path / "s.pkl"))
    assert [s.suggest(f"n{i}") for i in range(4)] == [fresh.suggest(f"n{i}") for i in range(4)]
    s.save_to_dir(str(tmp_path))
    other = HyperOptSearch(_space(), metric="m", mode="max")
    other.restore_from_dir(str(tmp_path))
    assert other.suggest("z") == s.suggest("z")


def test_same_seed_same_suggestions():
    a = run(HyperOptSearch(_space(), metric="m", mode="min", random_state_seed=9), 25, _score)
    b = run(HyperOptSearch(_space(), metric="m", mode="min", random_state_seed=9), 25, _score)
    assert a == b


# ----------------------------------------------------------------------- on a real local Ray

def timed(config):
    start = time.time()
    time.sleep(0.3)
    tune.report({"m": (config["x"] - 0.5) ** 2, "start": start, "end": time.time()})


def _max_overlap(results):
    spans = [(r.metrics["start"], r.metrics["end"]) for r in results]
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


@pytest.mark.parametrize("limit", [1, 4])
def test_end_to_end_honours_max_concurrent_trials(ray_local, tmp_path, limit):
    searcher = HyperOptSearch(random_state_seed=0, n_initial_points=3,
                              points_to_evaluate=[{"x": 0.5}])
    results = tune.Tuner(
        timed, param_space={"x": tune.uniform(0, 1), "const": "k"},
        tune_config=tune.TuneConfig(metric="m", mode="min", search_alg=searcher, num_samples=6,
                                    max_concurrent_trials=limit),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=f"c{limit}", verbose=0),
    ).fit()
    assert len(results) == 6 and results.num_errors == 0
    assert all(r.config["const"] == "k" for r in results)
    assert sorted(r.config["x"] for r in results)[0] >= 0
    assert results.get_best_result().config["x"] == 0.5
    overlap = _max_overlap(results)
    assert overlap <= limit
    if limit == 4:
        assert overlap >= 2  # two CPUs: trials really did run side by side


def fails_at_third(config):
    marker = os.path.join(config["dir"], "failed_once")
    with open(os.path.join(config["dir"], "started.jsonl"), "a") as f:
        f.write(json.dumps({"x": config["x"], "n": config["n"]}) + "\n")
    with open(os.path.join(config["dir"], "count"), "a") as f:
        f.write(".")
    with open(os.path.join(config["dir"], "count")) as f:
        count = len(f.read())
    if count == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("fails once at the third trial")
    tune.report({"m": config["x"] + config["n"]})


def test_restore_mid_run_continues_without_repeating(ray_local, tmp_path):
    space = {"x": tune.uniform(0, 1), "n": tune.randint(0, 100), "dir": str(tmp_path)}
    searcher = HyperOptSearch(random_state_seed=0, n_initial_points=2)
    results = tune.Tuner(
        fails_at_third, param_space=space,
        tune_config=tune.TuneConfig(metric="m", mode="min", search_alg=searcher, num_samples=6,
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "res"), name="exp", verbose=0,
                                  failure_config=tune.FailureConfig(fail_fast=True)),
    ).fit()
    assert results.num_errors == 1 and len(results) == 3  # stopped mid-run
    restored = tune.Tuner.restore(results.experiment_path, fails_at_third,
                                  restart_errored=True).fit()
    assert len(restored) == 6 and restored.num_errors == 0
    keys = [(r.config["x"], r.config["n"]) for r in restored]
    assert len(set(keys)) == 6  # no suggestion repeated after the restore
    with open(tmp_path / "started.jsonl") as f:
        started = [tuple(json.loads(line).values()) for line in f]
    # 3 trials before, then the errored one restarted with its config, then 3 new ones
    assert len(started) == 7 and started[3] == started[2] and len(set(started)) == 6
