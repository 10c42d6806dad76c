"""TuneBOHB: BOHB's per-budget density-ratio model, alone and with HyperBandForBOHB."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import statistics
from typing import Any, Dict

import pytest

import tune_core as tune
from schedulers.hb_bohb import HyperBandForBOHB
from searchers import create_searcher
from searchers.bohb import TuneBOHB
from tune_core.experiment.experiment_state import load_experiment_state
from tests.searchers import e2e

SPACE = {"x": tune.uniform(0, 1), "y": tune.uniform(0, 1)}


def at(budget: float, decision: str = "CONTINUE", **metrics: Any) -> Dict[str, Any]:
    return dict(metrics, hyperband_info={"budget": budget, "decision": decision, "bracket": 0})


def observe(s: TuneBOHB, n: int, budget: float, score, start: int = 0) -> None:
    for i in range(start, start + n):
        tid = f"b{budget}_{i}"
        config = s.suggest(tid)
        s.on_trial_result(tid, at(budget, loss=score(config)))
        s.on_trial_complete(tid, at(budget, "STOP", loss=score(config)))


def near(corner):
    return lambda c: math.hypot(c["x"] - corner[0], c["y"] - corner[1])


# --- the model ----------------------------------------------------------------------------------

def test_a_budget_has_a_model_once_both_parts_have_enough_points():
    # d = 2 parameters: min_points_in_model = 3; n_good = max(3, floor(0.15 N)), and the
    # bad part N - n_good must hold at least 3 too: so N >= 6 for a model.
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=0)
    assert s.min_points_in_model == 3
    assert [s._split(n) for n in (5, 6, 19, 20, 40)] == [None, 3, 3, 3, 6]
    observe(s, 5, 1, near((0, 0)))
    assert s._model_budget() is None
    observe(s, 1, 1, near((0, 0)), start=5)
    assert s._model_budget() == 1.0
    observe(s, 5, 3, near((0, 0)))
    assert s._model_budget() == 1.0      # budget 3 has 5 points: not enough yet
    observe(s, 1, 3, near((0, 0)), start=5)
    assert s._model_budget() == 3.0      # the largest budget with a model wins
    assert s.observations() == {1.0: 6, 3.0: 6}


def test_suggestions_follow_the_largest_budgets_model():
    """Low budgets say (0.1, 0.1) is good, the largest budget says (0.9, 0.9): with
    random_fraction 0 every suggestion comes from the largest budget's model."""
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=1,
                 bohb_config={"random_fraction": 0.0})
    rng = random.Random(0)
    for budget, corner in ((1.0, (0.1, 0.1)), (9.0, (0.9, 0.9))):
        for _ in range(30):
            p = {"x": rng.random(), "y": rng.random()}
            s.add_evaluated_point(p, near(corner)(p), budget=budget)
    xs = [s.suggest(f"t{i}") for i in range(40)]
    closer = sum(near((0.9, 0.9))(c) < near((0.1, 0.1))(c) for c in xs)
    assert closer >= 36, closer


def test_random_fraction_is_the_share_of_random_suggestions():
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=2,
                 bohb_config={"random_fraction": 0.25})
    observe(s, 10, 1, near((0.5, 0.5)))
    calls = []
    real = s._sample
    s._sample = lambda budget, fixed: calls.append(budget) or real(budget, fixed)
    for i in range(400):
        s.suggest(f"r{i}")
    share = calls.count(None) / len(calls)
    assert 0.19 < share < 0.31, share


def test_max_mode_ranks_high_values_good():
    s = TuneBOHB(SPACE, metric="acc", mode="max", seed=3,
                 bohb_config={"random_fraction": 0.0})
    rng = random.Random(1)
    for _ in range(40):
        p = {"x": rng.random(), "y": rng.random()}
        s.add_evaluated_point(p, -near((0.8, 0.2))(p), budget=1)
    configs = [s.suggest(f"t{i}") for i in range(30)]
    assert statistics.median(near((0.8, 0.2))(c) for c in configs) < 0.25


# --- what it reads from results -----------------------------------------------------------------

def test_paused_trials_do_not_count_against_max_concurrent():
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=0, max_concurrent=2)
    assert s.suggest("a") and s.suggest("b")
    assert s.suggest("c") is None
    s.on_trial_result("a", at(1, "PAUSE", loss=1.0))
    assert s.suggest("c") is not None
    assert s.suggest("d") is None
    s.on_trial_result("a", {"loss": 0.5, "hyperband_info": {"decision": "CONTINUE"}})
    s.on_trial_complete("b", at(1, "STOP", loss=2.0))
    s.on_trial_complete("c", None, error=True)
    assert s.suggest("d") is not None


def test_each_trial_is_observed_once_per_budget():
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=0)
    s.suggest("a")
    s.on_trial_result("a", {"loss": 3.0, "training_iteration": 1})  # no budget: ignored
    s.on_trial_result("a", at(1, "PAUSE", loss=2.0))
    s.on_trial_complete("a", at(1, "PAUSE", loss=2.0))  # the paused result, again
    assert s.observations() == {1.0: 1}
    s.suggest("b")
    s.on_trial_complete("b", {"loss": 1.0, "training_iteration": 7})  # no HyperBand
    s.suggest("c")
    s.on_trial_complete("c", {"loss": float("nan"), "training_iteration": 7})
    s.on_trial_complete("d", {"loss": 1.0, "training_iteration": 7})  # never suggested
    assert s.observations() == {1.0: 1, 7.0: 1}


def test_points_to_evaluate_come_first_and_partial_points_are_completed():
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=0,
                 points_to_evaluate=[{"x": 0.25, "y": 0.5}, {"x": 0.75}])
    first, second = s.suggest("a"), s.suggest("b")
    assert first == {"x": 0.25, "y": 0.5}
    assert second["x"] == 0.75 and 0 <= second["y"] <= 1


def test_pickle_continues_identically():
    s = TuneBOHB(SPACE, metric="loss", mode="min", seed=5)
    observe(s, 8, 1, near((0.3, 0.3)))
    twin = pickle.loads(pickle.dumps(s))
    assert [s.suggest(f"n{i}") for i in range(5)] == [twin.suggest(f"n{i}") for i in range(5)]


@pytest.mark.parametrize("kwargs, words", [
    ({"bohb_config": {"top_n_percent": 100}}, ["top_n_percent", "100", "between 0 and 100"]),
    ({"bohb_config": {"random_fraction": 1.5}}, ["random_fraction", "1.5"]),
    ({"bohb_config": {"num_samples": 0}}, ["num_samples", ">= 1"]),
    ({"bohb_config": {"min_points_in_model": 0}}, ["min_points_in_model", ">= 1"]),
    ({"bohb_config": {"nmin": 3}}, ["nmin", "accepted"]),
    ({"max_concurrent": -1}, ["max_concurrent=-1"]),
    ({"metric": ["a", "b"], "mode": ["min", "max"]}, ["one metric"]),
    ({"mode": "minimize"}, ["minimize"]),
])
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError) as err:
        TuneBOHB(SPACE, **{"metric": "loss", "mode": "min", **kwargs})
    for word in words:
        assert word in str(err.value)


def test_bandwidth_settings_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="searchers.bohb"):
        TuneBOHB(SPACE, bohb_config={"bandwidth_factor": 3, "min_bandwidth": 1e-3})
    assert "bandwidth_factor" in caplog.text and "min_bandwidth" in caplog.text


@pytest.mark.parametrize("space, words", [
    ({"p": tune.grid_search([1, 2])}, ["TuneBOHB", "'p'", "grid_search"]),
    ({"p": tune.choice([{"lr": tune.uniform(0, 1)}, "none"])}, ["TuneBOHB", "'p'"]),
    ({"p": tune.randn(0, 1)}, ["'p'", "normal"]),
])
def test_spaces_it_cannot_represent_are_refused_naming_the_parameter(space, words):
    s = TuneBOHB(metric="loss", mode="min")
    with pytest.raises(ValueError) as err:
        s.set_search_properties(None, None, space)
    for word in words:
        assert word in str(err.value)


def test_missing_metric_and_mode():
    with pytest.raises(ValueError) as err:
        TuneBOHB().set_search_properties(None, None, SPACE)
    assert "metric" in str(err.value) and "mode" in str(err.value)


def test_create_searcher_by_name():
    assert isinstance(create_searcher("bohb", metric="loss", mode="min", seed=0), TuneBOHB)


# --- on a real Ray ------------------------------------------------------------------------------

def curve(config: Dict[str, Any]) -> None:
    """Loss falls with training towards (x - 0.3)**2; checkpoints every iteration."""
    iteration = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            iteration = json.load(f)["iteration"]
    while iteration < 30:
        iteration += 1
        d = os.path.join(tune.get_context().get_trial_dir(), "scratch", str(iteration))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"iteration": iteration}, f)
        tune.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / iteration, "epoch": iteration},
                    checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.usefixtures("ray_local")
def test_with_hyperband_for_bohb_on_ray(tmp_path):
    # max_t=9, eta=3: bracket 0 takes 9 trials (milestones 1, 3, 9: 9 -> 3 -> 1),
    # bracket 1 takes 5 (milestones 3, 9: 5 -> floor(5/3) = 1). 14 trials fill both.
    searcher = TuneBOHB(seed=0)
    results = tune.Tuner(
        tune.with_resources(curve, {"cpu": 0.5}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=14,
                                    search_alg=searcher,
                                    scheduler=HyperBandForBOHB(max_t=9, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="bohb", verbose=0)).fit()
    assert not results.errors and len(results) == 14
    finals = sorted(r.metrics["training_iteration"] for r in results)
    assert finals == [1] * 6 + [3] * 6 + [9] * 2
    for r in results:  # every resume continued from the checkpoint it paused at
        with open(os.path.join(r.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        assert [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))
    _, state = load_experiment_state(os.path.join(str(tmp_path), "bohb"))
    saved = state["search_alg"].searcher
    # BOHB saw every milestone result: 9 at budget 1, 3 + 5 at budget 3, 1 + 1 at budget 9.
    assert saved.observations() == {1.0: 9, 3.0: 8, 9.0: 2}
    assert saved._model_budget() == 3.0  # 8 points: 2 good, 6 bad (d = 1, 2 needed each)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("limit", [1, 4])
def test_max_concurrent_trials_is_honoured(tmp_path, limit):
    e2e.check_max_concurrent(TuneBOHB(seed=0), limit, tmp_path)


@pytest.mark.usefixtures("ray_local")
def test_restore_mid_run_continues_without_repeats(tmp_path):
    before, after, results = e2e.check_restore_mid_run(lambda: TuneBOHB(seed=0), tmp_path)
    # trials end without HyperBand: observed at their final training_iteration (1)
    assert before.observations() == {1.0: 2}
    assert after.observations() == {1.0: 6}
    assert set(after._suggested) >= set(before._suggested)
