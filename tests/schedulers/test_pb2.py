"""PB2: PBT's schedule with a time-varying GP-UCB explore step.

* Random populations (the PBT model of the rules still holds): every chosen config is
  inside ``hyperparam_bounds``, integers stay integers.
* On a synthetic reward whose change per step peaks at a known config, the GP bandit's
  choices land much closer to the peak than uniform random choices.
* The scheduler pickles mid-run and goes on with identical decisions.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from typing import Any, Dict

import pytest

from tune_core.checkpoint import Checkpoint
from tune_core.experiment.trial import TrialStatus
from tune_core.schedulers.trial_scheduler import RestartTrial

from schedulers import create_scheduler
from schedulers.pb2 import PB2, ucb_suggest

from .sim import snapshot
from .test_pbt import Population

PEAK = 0.7


def in_bounds(config: Dict[str, Any]) -> None:
    assert 0.0 <= config["lr"] <= 1.0
    width = config["net"]["width"]
    assert type(width) is int and 8 <= width <= 64


def gain(config: Dict[str, Any]) -> float:
    """The score's change per iteration: best at lr = PEAK, whatever the width."""
    return 1.0 - 4.0 * (config["lr"] - PEAK) ** 2


def make_pb2(seed: int, **kw: Any) -> PB2:
    params = dict(time_attr="training_iteration", metric="score", mode="max",
                  perturbation_interval=2, quantile_fraction=0.25,
                  hyperparam_bounds={"lr": [0.0, 1.0], "net": {"width": [8, 64]}}, seed=seed)
    params.update(kw)
    return PB2(**params)


def test_random_populations_keep_configs_in_bounds():
    exploits = fits = 0
    for seed in range(12):
        rng = random.Random(seed)
        pb2 = make_pb2(seed, quantile_fraction=rng.choice([0.25, 0.5]))
        n = rng.randint(3, 8)
        population = Population(pb2, n=n, seed=seed, slots=rng.choice([n, 2]),
                                length=rng.randint(6, 10), interval=2, burn_in=0,
                                quantile=pb2._quantile_fraction, checkpoint_probability=0.8,
                                check_config=in_bounds, gain=gain)
        for member in population.members.values():
            in_bounds(member.config)  # keys the search space lacks come from the bounds
        population.run()
        exploits += len(population.exploits)
        fits += pb2.num_model_fits
    assert exploits > 20 and fits > 5


def synthetic(seed: int, n: int = 40):
    """Observations of the change of the score per unit of time, noisy, at random configs."""
    rng = random.Random(seed)
    observations = []
    for i in range(n):
        x = (rng.random(), rng.random())
        y = 1.0 - 4.0 * (x[0] - PEAK) ** 2 - (x[1] - 0.3) ** 2 + rng.gauss(0, 0.05)
        observations.append((float(1 + i // 8), rng.random(), x, y))
    return observations


def test_the_bandit_picks_better_than_random():
    """Over 8 data sets: the suggestion's mean distance to the peak (0.7, 0.3) is a
    fraction of a uniform random point's (about 0.41 in the unit square)."""
    gp, rand = [], []
    rng = random.Random(0)
    for seed in range(8):
        x = ucb_suggest(synthetic(seed), (6.0, 0.5), [], seed=seed)
        assert all(0.0 <= v <= 1.0 for v in x)
        gp.append(((x[0] - PEAK) ** 2 + (x[1] - 0.3) ** 2) ** 0.5)
        r = (rng.random(), rng.random())
        rand.append(((r[0] - PEAK) ** 2 + (r[1] - 0.3) ** 2) ** 0.5)
    assert sum(gp) / len(gp) < 0.15 < sum(rand) / len(rand)


def test_pending_points_push_the_choice_away():
    """GP-BUCB: with others already training at the peak, the variance there is lower,
    so the acquisition of other points rises relatively (the choice may move, never
    out of the box)."""
    data = synthetic(1)
    alone = ucb_suggest(data, (6.0, 0.5), [], seed=0)
    crowded = ucb_suggest(data, (6.0, 0.5), [alone] * 3, seed=0)
    assert all(0.0 <= v <= 1.0 for v in crowded)


def test_the_scheduler_moves_weak_trials_towards_the_peak():
    pb2 = make_pb2(0, quantile_fraction=0.5, perturbation_interval=1)
    population = Population(pb2, n=6, seed=0, slots=6, length=14, interval=1, burn_in=0,
                            quantile=0.5, checkpoint_probability=1.0, check_config=in_bounds,
                            gain=gain)
    population.run()
    chosen = [r["new_config"]["lr"] for r in pb2.global_policy()
              if r["operations"]["lr"] == "gp-ucb"]
    assert len(chosen) >= 10
    # UCB explores first (beta_t is large); once the model knows the curve, its choices
    # gather at the peak.
    later = chosen[len(chosen) // 2:]
    assert sum(abs(lr - PEAK) for lr in later) / len(later) < 0.15  # uniform random: 0.29


def test_pickled_mid_run_continues_with_identical_decisions():
    def run(swap_at):
        pb2 = make_pb2(5, quantile_fraction=0.5)
        population = Population(pb2, n=5, seed=5, slots=3, length=8, interval=2, burn_in=0,
                                quantile=0.5, checkpoint_probability=1.0,
                                check_config=in_bounds, gain=gain)
        for step in range(200):
            if all(m.status == TrialStatus.TERMINATED for m in population.members.values()):
                break
            if step == swap_at:
                population.scheduler = pickle.loads(pickle.dumps(population.scheduler))
            population.step()
        return [(t, d, e.config) for t, d, e in population.exploits]

    straight = run(None)
    assert straight and run(6) == straight


def test_integers_stay_integers_and_tags_name_the_values():
    pb2 = make_pb2(0, quantile_fraction=0.5, perturbation_interval=1)
    for tid, score in (("a", 5.0), ("b", 1.0)):
        pb2.on_trial_add(snapshot(tid, TrialStatus.PENDING,
                                  config={"lr": 0.5, "net": {"width": 16}}))
    pb2.on_trial_result(snapshot("a", config={"lr": 0.5, "net": {"width": 16}},
                                 checkpoint=Checkpoint("/a/c")),
                        {"training_iteration": 1, "score": 5.0})
    decision = pb2.on_trial_result(snapshot("b", config={"lr": 0.5, "net": {"width": 16}}),
                                   {"training_iteration": 1, "score": 1.0})
    assert isinstance(decision, RestartTrial) and decision.donor_trial_id == "a"
    assert type(decision.config["net"]["width"]) is int
    assert "net/width=" in decision.experiment_tag and "lr=" in decision.experiment_tag


@pytest.mark.parametrize("bounds, expected", [
    (None, ["hyperparam_bounds=None", "[low, high]"]),
    ({}, ["hyperparam_bounds={}"]),
    ({"lr": [1.0, 0.1]}, ["hyperparam_bounds['lr']=[1.0, 0.1]", "low < high"]),
    ({"lr": [0.1]}, ["hyperparam_bounds['lr']=[0.1]"]),
    ({"lr": ["a", "b"]}, ["hyperparam_bounds['lr']"]),
    ({"net": {}}, ["hyperparam_bounds['net']={}"]),
])
def test_bad_bounds_are_named(bounds, expected):
    with pytest.raises(ValueError) as err:
        PB2(metric="s", mode="max", hyperparam_bounds=bounds)
    assert str(err.value).startswith("PB2(")
    for part in expected:
        assert part in str(err.value)


def test_policy_log_is_named_pb2(tmp_path):
    pb2 = make_pb2(0, quantile_fraction=0.5, perturbation_interval=1)
    pb2.set_experiment_path(str(tmp_path))
    for tid in ("a", "b"):
        pb2.on_trial_add(snapshot(tid, TrialStatus.PENDING, config={"lr": 0.5,
                                                                   "net": {"width": 16}}))
    pb2.on_trial_result(snapshot("a", config={"lr": 0.5, "net": {"width": 16}},
                                 checkpoint=Checkpoint("/a/c")),
                        {"training_iteration": 1, "score": 5.0})
    decision = pb2.on_trial_result(snapshot("b", config={"lr": 0.5, "net": {"width": 16}}),
                                   {"training_iteration": 1, "score": 1.0})
    pb2.on_trial_result(snapshot("b", config=decision.config, checkpoint=Checkpoint("/a/c")),
                        {"training_iteration": 2, "score": 5.2})
    assert (tmp_path / "pb2_global.txt").exists() and (tmp_path / "pb2_policy_b.txt").exists()


def test_create_scheduler_and_lazy_sklearn():
    assert isinstance(create_scheduler("pb2", metric="s", mode="max",
                                       hyperparam_bounds={"lr": [0, 1]}), PB2)
    out = subprocess.run([sys.executable, "-c", "import sys, schedulers.pb2; "
                          "print('sklearn' in sys.modules)"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_observations_are_score_changes_per_unit_of_time():
    # Two perturbation points of one config, scores 0.0 at t=2 and 3.0 at t=4:
    # one observation (t=4, score_before=0.0, x, (3.0 - 0.0) / (4 - 2) = 1.5).
    pb2 = make_pb2(0, perturbation_interval=2)
    config = {"lr": 0.25, "net": {"width": 36}}
    pb2.on_trial_add(snapshot("a", TrialStatus.PENDING, config=config))
    for t, score in ((2, 0.0), (4, 3.0)):
        pb2.on_trial_result(snapshot("a", config=config), {"training_iteration": t,
                                                           "score": score})
    assert pb2._observations == [(4.0, 0.0, (0.25, 0.5), 1.5)]


@pytest.mark.ray
def test_end_to_end_on_ray(ray_local, tmp_path):
    """The PBT experiment with PB2 choosing the new lr inside its bounds."""
    from . import _pbt_experiment as exp
    from .test_pbt import check_pbt_run

    pb2 = PB2(time_attr="training_iteration", perturbation_interval=2,
              hyperparam_bounds={"lr": [0.1, 1.0]}, quantile_fraction=0.25, seed=0)
    results = exp.make_tuner(str(tmp_path), "pb2", scheduler=pb2).fit()
    policy = pb2.global_policy()
    check_pbt_run(results, policy)
    assert all(0.1 <= record["new_config"]["lr"] <= 1.0 for record in policy)
    assert os.path.exists(os.path.join(str(tmp_path), "pb2", "pb2_global.txt"))
