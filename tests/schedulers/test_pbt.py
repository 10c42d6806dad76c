"""PopulationBasedTraining and PopulationBasedTrainingReplay.

* Property tests over 200 random populations (seeded): an independent model of the
  documented rules says, result by result, whether the trial is at a perturbation
  point, the quantiles and so whether it must exploit; the scheduler must agree, pick a
  donor with a checkpoint in the top quantile, hand over that donor's newest
  checkpoint, and keep explored values inside their domains.
* The same through the real controller with the fake executor: the relaunch of an
  exploiting trial starts from the donor's newest checkpoint at the moment of the
  decision, with that checkpoint's iteration, and the new config.
* synch=True: no trial passes a round before every unfinished trial reached it.
* A real local Ray: configs change and trials resume from donors' checkpoints; and a
  driver killed mid-run is restored and finishes with the PBT state it had saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import tune_core as tune
from tune_core.checkpoint import Checkpoint
from tune_core.error import TuneError
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialStatus
from tune_core.schedulers.trial_scheduler import RestartTrial, SchedulerDecision

from schedulers import create_scheduler
from schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay, load_policy
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import ListSearch

from . import _pbt_experiment as exp
from .sim import Sim, curves, snapshot

PENDING, RUNNING, PAUSED = TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED
TERMINATED = TrialStatus.TERMINATED

MUTATIONS = {
    "lr": tune.loguniform(1e-3, 1e-1),
    "momentum": tune.uniform(0.1, 0.9),
    "layers": tune.randint(1, 6),                    # 1..5
    "batch": [16, 32, 64, 128],
    "opt": tune.choice(["sgd", "adam", "rmsprop"]),
    "nested": {"dropout": tune.quniform(0.0, 0.5, 0.05),
               "width": tune.qrandint(8, 64, 8)},     # 8, 16, ..., 64
}


def assert_in_domains(config: Dict[str, Any]) -> None:
    assert 1e-3 <= config["lr"] <= 1e-1
    assert 0.1 <= config["momentum"] <= 0.9
    assert type(config["layers"]) is int and 1 <= config["layers"] <= 5
    assert config["batch"] in (16, 32, 64, 128)
    assert config["opt"] in ("sgd", "adam", "rmsprop")
    dropout, width = config["nested"]["dropout"], config["nested"]["width"]
    assert 0.0 <= dropout <= 0.5 and abs(dropout / 0.05 - round(dropout / 0.05)) < 1e-6
    assert type(width) is int and 8 <= width <= 64 and width % 8 == 0


def quantile_size(n: int, fraction: float) -> int:
    """ceil(n * fraction) in exact arithmetic, at most n // 2 (Ray Tune's rule)."""
    return min(math.ceil(Fraction(fraction).limit_denominator(1000) * n), n // 2)


# --- a population driven result by result, with a model of the documented rules -------------------
@dataclasses.dataclass
class Member:
    trial_id: str
    config: Dict[str, Any]
    checkpoints_ever: bool
    status: TrialStatus = PENDING
    iteration: int = 0
    score: float = 0.0
    last_result: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # (iteration, Checkpoint, score): the newest last
    checkpoints: List[Tuple[int, Checkpoint, float]] = dataclasses.field(default_factory=list)
    # the model: the trial's last perturbation point and its score there
    pert_time: float = 0.0
    pert_score: Optional[float] = None
    max_iteration: int = 0
    # the newest checkpoint a snapshot showed the scheduler (a pause's shows at the next
    # choose_trial_to_run, as in the controller)
    shown: Optional[Checkpoint] = None

    def newest(self) -> Optional[Tuple[int, Checkpoint, float]]:
        return self.checkpoints[-1] if self.checkpoints else None


class Population:
    """Runs ``n`` trials ``slots`` at a time, one result per running trial a step.

    The scheduler sees each trial's newest checkpoint in its snapshots. A trial that
    checkpoints does so after a result with probability ``checkpoint_probability`` and
    always when it pauses; one that never checkpoints starts over when resumed.
    """

    def __init__(self, scheduler: PopulationBasedTraining, *, n: int, seed: int, slots: int,
                 length: int, interval: float, burn_in: float, quantile: float,
                 checkpoint_probability: float, never_checkpoint: float = 0.0,
                 check_config: Callable[[Dict[str, Any]], None] = assert_in_domains,
                 gain: Callable[[Dict[str, Any]], float] = lambda c: c["lr"] * 10) -> None:
        self.scheduler = scheduler
        self.check_config, self.gain = check_config, gain
        self.rng = random.Random(seed)
        self.slots, self.length = slots, length
        self.interval, self.burn_in, self.quantile = interval, burn_in, quantile
        self.checkpoint_probability = checkpoint_probability
        self.members: Dict[str, Member] = {}
        self.exploits: List[Tuple[str, str, RestartTrial]] = []
        for i in range(n):
            config = scheduler.complete_config({"trial_index": i})
            member = Member(f"p{i:02d}", config,
                            checkpoints_ever=self.rng.random() >= never_checkpoint)
            self.members[member.trial_id] = member
            scheduler.on_trial_add(self.snap(member))

    def snap(self, m: Member, status: Optional[TrialStatus] = None):
        newest = m.newest()
        m.shown = newest[1] if newest else None
        return snapshot(m.trial_id, status or m.status, config=m.config,
                        last_result=m.last_result, checkpoint=newest[1] if newest else None)

    def run(self, max_steps: int = 2000) -> None:
        for _ in range(max_steps):
            if all(m.status == TERMINATED for m in self.members.values()):
                return
            self.step()
        raise AssertionError("the population did not finish")

    def step(self) -> None:
        while sum(m.status == RUNNING for m in self.members.values()) < self.slots:
            waiting = [m for m in self.members.values() if m.status in (PENDING, PAUSED)]
            if not waiting:
                break
            chosen = self.scheduler.choose_trial_to_run([self.snap(m) for m in waiting])
            if chosen is None:
                break
            m = self.members[chosen]
            assert m.status in (PENDING, PAUSED)
            if m.status == PAUSED and not m.checkpoints:
                m.iteration, m.score = 0, 0.0  # no checkpoint: it starts over
            m.status = RUNNING
        running = [m for m in self.members.values() if m.status == RUNNING]
        if not running:
            raise AssertionError("nothing runs and the scheduler starts nothing")
        self.rng.shuffle(running)
        for m in running:
            if m.status == RUNNING:
                self.report(m)

    def report(self, m: Member) -> None:
        if m.iteration >= self.length:
            m.status = TERMINATED
            self.scheduler.on_trial_complete(self.snap(m), dict(m.last_result))
            return
        m.iteration += 1
        m.max_iteration = max(m.max_iteration, m.iteration)
        m.score += self.gain(m.config) + self.rng.gauss(0, 0.3)
        if m.checkpoints_ever and self.rng.random() < self.checkpoint_probability:
            m.checkpoints.append((m.iteration, Checkpoint(
                f"/pop/{m.trial_id}/checkpoint_{m.iteration:06d}"), m.score))
        result = {"training_iteration": m.iteration, "score": m.score}
        expected = self.expect(m)
        decision = self.scheduler.on_trial_result(self.snap(m), dict(result))
        m.last_result = result
        self.check(m, decision, expected)
        if isinstance(decision, RestartTrial):
            donor = self.members[decision.donor_trial_id]
            iteration, checkpoint, score = donor.newest()
            m.iteration, m.score, m.config = iteration, score, dict(decision.config)
            m.max_iteration = max(m.max_iteration, iteration)
            m.checkpoints.append((iteration, checkpoint, score))
            m.pert_time = donor.pert_time  # documented: it takes on the donor's clock
            m.shown = decision.checkpoint   # the scheduler knows what it handed over
            m.status = PENDING
            self.exploits.append((m.trial_id, donor.trial_id, decision))
        elif decision == SchedulerDecision.PAUSE:
            m.status = PAUSED
            if m.checkpoints_ever and (not m.checkpoints or m.checkpoints[-1][0] != m.iteration):
                m.checkpoints.append((m.iteration, Checkpoint(
                    f"/pop/{m.trial_id}/checkpoint_{m.iteration:06d}"), m.score))
        else:
            assert decision == SchedulerDecision.CONTINUE, decision

    # --- the model of the documented rules (asynchronous PBT) -------------------------------------
    def expect(self, m: Member) -> Optional[List[str]]:
        """None if the trial must not exploit now, else the donors it may pick."""
        if self.scheduler._synch:
            return None
        time_ = m.iteration
        if time_ < self.burn_in or time_ - m.pert_time < self.interval:
            return None
        m.pert_time, m.pert_score = time_, m.score
        scored = sorted((u for u in self.members.values()
                         if u.status != TERMINATED and u.pert_score is not None),
                        key=lambda u: u.pert_score)
        k = quantile_size(len(scored), self.quantile)
        if k == 0:
            return None
        lower, upper = scored[:k], scored[-k:]
        if m not in lower:
            return None
        return [u.trial_id for u in upper if u.shown is not None]

    def check(self, m: Member, decision: Any, expected: Optional[List[str]]) -> None:
        if isinstance(decision, RestartTrial):
            donor = self.members[decision.donor_trial_id]
            assert donor is not m
            assert donor.checkpoints, "a trial without a checkpoint was a donor"
            # The donor's newest checkpoint the scheduler was shown (the controller
            # restarts from the donor's newest at that moment: see the controller tests).
            assert donor.shown is not None and decision.checkpoint == donor.shown
            self.check_config(decision.config)
            # Explored from the donor's config: what PBT does not mutate is the donor's.
            assert decision.config["trial_index"] == donor.config["trial_index"]
            assert decision.experiment_tag.startswith("@perturbed[") or \
                "@perturbed[" in decision.experiment_tag
            if not self.scheduler._synch:
                assert expected, f"{m.trial_id} exploited, the model says it must not"
                assert donor.trial_id in expected, "the donor is not a top trial with a checkpoint"
        elif not self.scheduler._synch:
            assert not expected, (f"{m.trial_id} at iteration {m.iteration} must exploit one "
                                  f"of {expected}, got {decision}")


def random_pbt(rng: random.Random, **overrides: Any) -> Tuple[PopulationBasedTraining, Dict]:
    params = dict(
        time_attr="training_iteration", metric="score", mode=rng.choice(["max", "min"]),
        perturbation_interval=rng.choice([1, 2, 3]), burn_in_period=rng.choice([0, 0, 2, 3]),
        quantile_fraction=rng.choice([0.0, 0.1, 0.25, 1 / 3, 0.4, 0.5]),
        resample_probability=rng.choice([0.0, 0.25, 1.0]),
        perturbation_factors=rng.choice([(1.2, 0.8), (2.0, 0.5), (1.5,)]),
        hyperparam_mutations=MUTATIONS, seed=rng.randrange(1 << 30))
    params.update(overrides)
    return PopulationBasedTraining(**params), params


def test_random_populations_follow_the_rules():
    """200 populations: sizes 2-12, every quantile_fraction edge, trials that never
    checkpoint, time-sharing (slots < n) and min/max mode."""
    exploits = 0
    for seed in range(200):
        rng = random.Random(seed)
        pbt, params = random_pbt(rng)
        n = rng.randint(2, 12)
        mode = params["mode"]
        population = Population(
            pbt, n=n, seed=seed, slots=rng.choice([n, max(1, n // 2), 1]),
            length=rng.randint(4, 12), interval=params["perturbation_interval"],
            burn_in=params["burn_in_period"], quantile=params["quantile_fraction"],
            checkpoint_probability=rng.choice([1.0, 0.5, 0.2]),
            never_checkpoint=rng.choice([0.0, 0.3, 0.6]))
        if mode == "min":  # the model ranks by score; min mode minimises: flip the score
            population.expect = _flip(population.expect, population)
        population.run()
        exploits += len(population.exploits)
        if params["quantile_fraction"] == 0.0:
            assert not population.exploits
    assert exploits > 300  # the populations exploited a lot


def _flip(expect, population):
    """The model for mode="min": rank by the negated score."""
    def flipped(m):
        for u in population.members.values():
            u.score = -u.score
            if u.pert_score is not None:
                u.pert_score = -u.pert_score
        try:
            return expect(m)
        finally:
            for u in population.members.values():
                u.score = -u.score
                if u.pert_score is not None:
                    u.pert_score = -u.pert_score
    return flipped


def test_min_mode_ranks_low_scores_on_top():
    """Four trials, one in each quantile (k = 1): in min mode the highest loss exploits
    the lowest one."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="loss", mode="min",
                                  perturbation_interval=1, quantile_fraction=0.25,
                                  hyperparam_mutations={"lr": [1, 2, 3]}, seed=0)
    for i, loss in enumerate([0.5, 0.1, 0.3, 0.9]):
        tid = f"t{i}"
        pbt.on_trial_add(snapshot(tid, PENDING, config={"lr": 2}))
        decision = pbt.on_trial_result(
            snapshot(tid, RUNNING, config={"lr": 2}, checkpoint=Checkpoint(f"/x/{tid}/c")),
            {"training_iteration": 1, "loss": loss})
    assert isinstance(decision, RestartTrial) and decision.donor_trial_id == "t1"
    assert decision.checkpoint == Checkpoint("/x/t1/c")
    assert decision.config["lr"] in (1, 2, 3)


def test_quantiles_are_ceil_of_the_fraction_at_most_half():
    # n = 10, q = 0.25: ceil(2.5) = 3 in each quantile; q = 0.5 with n = 5: ceil(2.5) = 3,
    # capped at 5 // 2 = 2; 0.35 * 20 = 7.000000000000001 in floats, still 7.
    for n, q, k in [(10, 0.25, 3), (5, 0.5, 2), (20, 0.35, 7), (3, 0.1, 1), (1, 0.5, 0),
                    (8, 0.0, 0)]:
        pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                      perturbation_interval=1, quantile_fraction=q,
                                      hyperparam_mutations={"x": [1, 2]})
        for i in range(n):
            pbt.on_trial_add(snapshot(f"t{i:02d}", PENDING, config={"x": 1}))
            pbt.on_trial_result(snapshot(f"t{i:02d}", RUNNING, config={"x": 1}),
                                {"training_iteration": 1, "s": float(i)})
        lower, upper = pbt._quantiles()
        assert (len(lower), len(upper)) == (k, k)
        assert lower == [f"t{i:02d}" for i in range(k)]
        assert upper == [f"t{i:02d}" for i in range(n - k, n)]


def test_no_donor_without_a_checkpoint():
    """The only top trial has no checkpoint: the bottom trial does not exploit."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                  perturbation_interval=1, quantile_fraction=0.5,
                                  hyperparam_mutations={"x": [1, 2]})
    pbt.on_trial_add(snapshot("top", PENDING, config={"x": 1}))
    pbt.on_trial_add(snapshot("low", PENDING, config={"x": 1}))
    pbt.on_trial_result(snapshot("top", RUNNING, config={"x": 1}),
                        {"training_iteration": 1, "s": 9.0})
    decision = pbt.on_trial_result(
        snapshot("low", RUNNING, config={"x": 1}, checkpoint=Checkpoint("/low/c")),
        {"training_iteration": 1, "s": 1.0})
    assert not isinstance(decision, RestartTrial)
    # Once the top trial has one, the next perturbation exploits it.
    pbt.on_trial_result(snapshot("top", RUNNING, config={"x": 1},
                                 checkpoint=Checkpoint("/top/c")),
                        {"training_iteration": 2, "s": 10.0})
    decision = pbt.on_trial_result(
        snapshot("low", RUNNING, config={"x": 1}, checkpoint=Checkpoint("/low/c")),
        {"training_iteration": 2, "s": 1.5})
    assert isinstance(decision, RestartTrial) and decision.checkpoint == Checkpoint("/top/c")


def test_one_slot_a_weak_trial_does_not_copy_a_paused_donor_forever():
    """With one slot, a weak trial that copied a paused donor has the donor's progress:
    the donor (waiting longer) runs before it, so the population moves on (Ray Tune's
    first-created tie-break reruns the copier, which copies the same checkpoint again)."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="score", mode="max",
                                  perturbation_interval=2, custom_explore_fn=lambda c: c,
                                  seed=0)
    sim = Sim(pbt, curves(4), slots=1)
    sim.run(max_steps=300)
    assert pbt.num_perturbations > 0


# --- explore --------------------------------------------------------------------------------------
def explore(mutations, value, *, seed, **kw):
    pbt = PopulationBasedTraining(time_attr="t", metric="s", mode="max",
                                  hyperparam_mutations={"v": mutations}, seed=seed, **kw)
    pbt._trials["d"] = pbt._state_of(snapshot("d", config={"v": value}))
    return pbt._new_config("w", "d")


def test_perturbed_values_stay_in_bounds_on_their_grid():
    rng = random.Random(0)
    domains = [
        (tune.uniform(0.1, 0.9), lambda v: 0.1 <= v <= 0.9),
        (tune.loguniform(1e-4, 1e-1), lambda v: 1e-4 <= v <= 1e-1),
        (tune.quniform(0.0, 1.0, 0.25), lambda v: 0 <= v <= 1 and (v * 4).is_integer()),
        (tune.randint(1, 4), lambda v: type(v) is int and 1 <= v <= 3),
        (tune.qrandint(10, 50, 10), lambda v: type(v) is int and v in (10, 20, 30, 40, 50)),
        (tune.lograndint(1, 1000), lambda v: type(v) is int and 1 <= v <= 999),
        (tune.qloguniform(1e-3, 1.0, 1e-3), lambda v: 1e-3 <= v <= 1.0),
    ]
    for domain, ok in domains:
        for seed in range(200):
            value = domain.sample(rng)
            config, _ = explore(domain, value, seed=seed, resample_probability=0.1,
                                perturbation_factors=(3.0, 0.3))
            assert ok(config["v"]), (domain, value, config["v"])


def test_clip_to_bounds_false_lets_multiplied_values_leave_the_domain():
    seen = set()
    for seed in range(20):
        config, ops = explore(tune.uniform(0.0, 1.0), 0.9, seed=seed, resample_probability=0.0,
                              perturbation_factors=(2.0,), clip_to_bounds=False)
        seen.add(config["v"])
        assert ops == {"v": "* 2.0"}
    assert seen == {1.8}
    config, _ = explore(tune.uniform(0.0, 1.0), 0.9, seed=0, resample_probability=0.0,
                        perturbation_factors=(2.0,))
    assert config["v"] == 1.0


def test_lists_and_choices_shift_to_a_neighbour():
    for mutation in ([1, 2, 3, 4], tune.choice([1, 2, 3, 4])):
        moves = set()
        for seed in range(50):
            config, ops = explore(mutation, 2, seed=seed, resample_probability=0.0)
            moves.add(config["v"])
            assert ops["v"] in ("shift left", "shift right")
        assert moves == {1, 3}
        ends = {explore(mutation, 4, seed=s, resample_probability=0.0)[0]["v"]
                for s in range(30)}
        assert ends == {3, 4}  # shifting right of the last entry keeps it
        # A value not in the list is resampled from it.
        assert explore(mutation, 99, seed=1, resample_probability=0.0)[1]["v"] == "resample"


def test_integers_move_at_least_one_step():
    # int(1 * 1.2) == 1 in Ray Tune: stuck. Here 1 * 1.2 rounds to 1, so it steps to 2.
    values = set()
    for seed in range(30):
        config, _ = explore(lambda: 5, 1, seed=seed, resample_probability=0.0)
        values.add(config["v"])
    assert values == {0, 2}  # 1 * 0.8 rounds to 1, steps down to 0


def test_callables_resample_by_calling_them():
    config, ops = explore(lambda: 0.123, 0.5, seed=0, resample_probability=1.0)
    assert config["v"] == 0.123 and ops["v"] == "resample"


def test_custom_explore_fn_runs_after_the_mutations():
    def double_it(config):
        return dict(config, doubled=config["v"] * 2)

    config, _ = explore([1, 2, 3], 2, seed=0, custom_explore_fn=double_it)
    assert config["doubled"] == config["v"] * 2
    pbt = PopulationBasedTraining(time_attr="t", metric="s", mode="max",
                                  custom_explore_fn=lambda c: None)
    pbt._trials["d"] = pbt._state_of(snapshot("d", config={"v": 1}))
    with pytest.raises(TuneError, match="custom_explore_fn"):
        pbt._new_config("w", "d")


def test_complete_config_samples_missing_keys_and_keeps_given_ones():
    pbt = PopulationBasedTraining(time_attr="t", metric="s", mode="max",
                                  hyperparam_mutations=MUTATIONS, seed=3)
    config = pbt.complete_config({"lr": 0.05, "other": "kept"})
    assert config["lr"] == 0.05 and config["other"] == "kept"
    assert_in_domains(config)


def test_a_config_without_a_mutated_key_is_a_clear_error():
    pbt = PopulationBasedTraining(time_attr="t", metric="s", mode="max",
                                  hyperparam_mutations={"lr": tune.uniform(0, 1),
                                                        "net": {"width": [1, 2]}})
    with pytest.raises(ValueError) as err:
        pbt.on_trial_add(snapshot("t0", PENDING, config={"lr": 0.3}))
    assert "['net']['width']" in str(err.value) and "param_space" in str(err.value)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, ["hyperparam_mutations=None", "custom_explore_fn"]),
    ({"hyperparam_mutations": {}}, ["hyperparam_mutations={}"]),
    ({"hyperparam_mutations": {"lr": []}}, ["hyperparam_mutations['lr']=[]", "non-empty list"]),
    ({"hyperparam_mutations": {"lr": 0.1}}, ["hyperparam_mutations['lr']=0.1", "domain"]),
    ({"hyperparam_mutations": {"lr": tune.uniform(2, 1)}}, ["['lr']", "lower < upper"]),
    ({"hyperparam_mutations": {"lr": tune.sample_from(lambda s: 1)}}, ["sample_from"]),
    ({"hyperparam_mutations": {"lr": tune.grid_search([1, 2])}}, ["grid_search"]),
    ({"hyperparam_mutations": {"a": {}}}, ["hyperparam_mutations['a']={}"]),
    ({"hyperparam_mutations": ["lr"]}, ["hyperparam_mutations=['lr']", "dict"]),
    ({"quantile_fraction": 0.6}, ["quantile_fraction=0.6", "[0, 0.5]"]),
    ({"quantile_fraction": -0.1}, ["quantile_fraction=-0.1", "[0, 0.5]"]),
    ({"resample_probability": 1.5}, ["resample_probability=1.5", "[0, 1]"]),
    ({"perturbation_interval": 0}, ["perturbation_interval=0", "> 0"]),
    ({"burn_in_period": -1}, ["burn_in_period=-1", ">= 0"]),
    ({"perturbation_factors": ()}, ["perturbation_factors=()", "non-empty"]),
    ({"perturbation_factors": (1.2, -1)}, ["perturbation_factors=(1.2, -1)", "> 0"]),
    ({"custom_explore_fn": 3}, ["custom_explore_fn=3", "function"]),
    ({"synch": "yes"}, ["synch='yes'", "True or False"]),
    ({"clip_to_bounds": None}, ["clip_to_bounds=None", "True or False"]),
    ({"mode": "best"}, ["mode='best'", '"min"', '"max"']),
    ({"time_attr": ""}, ["time_attr=''"]),
])
def test_bad_arguments_are_named(kwargs, expected):
    if "hyperparam_mutations" not in kwargs and kwargs:
        kwargs = dict(kwargs, hyperparam_mutations={"lr": [1, 2]})
    with pytest.raises(ValueError) as err:
        PopulationBasedTraining(**kwargs)
    message = str(err.value)
    assert message.startswith("PopulationBasedTraining(")
    for part in expected:
        assert part in message, message


def test_no_metric_is_an_error_before_the_first_trial():
    pbt = PopulationBasedTraining(hyperparam_mutations={"lr": [1, 2]})
    with pytest.raises(ValueError, match=r"TuneConfig\(metric=\.\.\., mode=\.\.\.\)"):
        pbt.on_trial_add(snapshot("t0", PENDING, config={"lr": 1}))


def test_require_attrs():
    pbt = PopulationBasedTraining(time_attr="epoch", metric="s", mode="max",
                                  hyperparam_mutations={"lr": [1, 2]})
    pbt.on_trial_add(snapshot("t0", PENDING, config={"lr": 1}))
    with pytest.raises(TuneError, match="time_attr='epoch'.*require_attrs=False"):
        pbt.on_trial_result(snapshot("t0", config={"lr": 1}), {"training_iteration": 1, "s": 1})
    lenient = PopulationBasedTraining(time_attr="epoch", metric="s", mode="max",
                                      hyperparam_mutations={"lr": [1, 2]}, require_attrs=False)
    lenient.on_trial_add(snapshot("t0", PENDING, config={"lr": 1}))
    assert lenient.on_trial_result(snapshot("t0", config={"lr": 1}),
                                   {"training_iteration": 1, "s": 1}) == SchedulerDecision.CONTINUE


def test_create_scheduler_by_name():
    pbt = create_scheduler("pbt", metric="s", mode="max", hyperparam_mutations={"lr": [1, 2]})
    assert isinstance(pbt, PopulationBasedTraining)


# --- synch ----------------------------------------------------------------------------------------
def test_synch_no_trial_passes_a_round_before_all_reached_it():
    exploits = 0
    for seed in range(60):
        rng = random.Random(1000 + seed)
        interval = rng.choice([1, 2, 3])
        burn_in = rng.choice([0, 2, 4])
        pbt, params = random_pbt(rng, synch=True, perturbation_interval=interval,
                                 burn_in_period=burn_in, mode="max")
        n = rng.randint(2, 8)
        population = Population(
            pbt, n=n, seed=seed, slots=rng.choice([n, max(1, n // 2), 1]),
            length=rng.randint(4, 10), interval=interval, burn_in=burn_in,
            quantile=params["quantile_fraction"], checkpoint_probability=1.0)
        first_round = max(interval, burn_in)
        original_report = population.report

        def report(m, population=population, first_round=first_round, interval=interval,
                   original_report=original_report):
            # About to report iteration m.iteration + 1: every round it would pass must
            # have been reached by every unfinished trial.
            going_to = m.iteration + 1
            if going_to > population.length:
                return original_report(m)  # it ends
            rounds = [first_round + k * interval for k in range(100)]
            for boundary in (b for b in rounds if b < going_to):
                for u in population.members.values():
                    if u.status != TERMINATED and u is not m:
                        assert u.max_iteration >= min(boundary, population.length), (
                            f"{m.trial_id} passes round {boundary} before {u.trial_id} "
                            f"(at {u.max_iteration}) reached it")
            original_report(m)

        population.report = report
        population.run()
        exploits += len(population.exploits)
    assert exploits > 50


def test_synch_round_pauses_then_exploits_the_paused_weak_trial():
    """Three trials, interval 2, q = 1/3: t0 and t1 reach iteration 2 and pause; t2
    completes the round; t1 is the weakest and exploits the best (t0) when it resumes:
    its first result after the resume returns the restart, or the controller's resume
    hook does."""
    def make():
        pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                      perturbation_interval=2, quantile_fraction=1 / 3,
                                      hyperparam_mutations={"lr": [1, 2, 3]}, synch=True,
                                      seed=0)
        for i in range(3):
            pbt.on_trial_add(snapshot(f"t{i}", PENDING, config={"lr": 2}))
        return pbt

    def at_round(pbt):
        decisions = []
        for tid, score in [("t0", 9.0), ("t1", 1.0), ("t2", 5.0)]:
            cp = Checkpoint(f"/{tid}/checkpoint_000001")
            assert pbt.on_trial_result(snapshot(tid, config={"lr": 2}, checkpoint=cp),
                                       {"training_iteration": 1, "s": 0.0}) == \
                SchedulerDecision.CONTINUE
            cp = Checkpoint(f"/{tid}/checkpoint_000002")
            decisions.append(pbt.on_trial_result(
                snapshot(tid, config={"lr": 2}, checkpoint=cp,
                         last_result={"training_iteration": 1}),
                {"training_iteration": 2, "s": score}))
        return decisions

    pbt = make()
    assert at_round(pbt) == [SchedulerDecision.PAUSE, SchedulerDecision.PAUSE,
                             SchedulerDecision.CONTINUE]
    paused = [snapshot(t, PAUSED, config={"lr": 2},
                       checkpoint=Checkpoint(f"/{t}/checkpoint_000002"),
                       last_result={"training_iteration": 2}) for t in ("t0", "t1")]
    # The weak trial runs first; its donor t0 waits until the exploit is applied.
    assert pbt.choose_trial_to_run(paused) == "t1"
    assert pbt.choose_trial_to_run(paused[:1]) is None
    decision = pbt.on_trial_result(snapshot("t1", config={"lr": 2}),
                                   {"training_iteration": 3, "s": 1.1})
    assert isinstance(decision, RestartTrial) and decision.donor_trial_id == "t0"
    assert decision.checkpoint == Checkpoint("/t0/checkpoint_000002")
    assert pbt.choose_trial_to_run(paused[:1]) == "t0"
    # With the resume hook the restart comes before the trial runs at all.
    pbt = make()
    at_round(pbt)
    assert pbt.choose_trial_to_run(paused) == "t1"
    restart = pbt.on_trial_resume(paused[1])
    assert isinstance(restart, RestartTrial) and restart.donor_trial_id == "t0"
    assert pbt.on_trial_resume(paused[1]) is None


def test_synch_round_completes_when_the_last_laggard_ends():
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                  perturbation_interval=2, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": [1, 2]}, synch=True, seed=0)
    for tid in ("a", "b", "c"):
        pbt.on_trial_add(snapshot(tid, PENDING, config={"lr": 1}))
    for tid, s in (("a", 5.0), ("b", 1.0)):
        assert pbt.on_trial_result(snapshot(tid, config={"lr": 1},
                                            checkpoint=Checkpoint(f"/{tid}/c2")),
                                   {"training_iteration": 2, "s": s}) == SchedulerDecision.PAUSE
    pbt.on_trial_complete(snapshot("c", TERMINATED, config={"lr": 1}), None)
    waiting = [snapshot(t, PAUSED, config={"lr": 1}, checkpoint=Checkpoint(f"/{t}/c2"),
                        last_result={"training_iteration": 2}) for t in ("a", "b")]
    assert pbt.choose_trial_to_run(waiting) == "b"  # the round ran: b exploits a first


# --- the controller with the fake executor --------------------------------------------------------
class Recording(PopulationBasedTraining):
    """PBT that notes, at each exploit, what the controller holds of the donor then."""

    controller: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: List[Dict[str, Any]] = []
        self.fixed: List[Dict[str, Any]] = []  # policy records completed by a result

    def on_trial_result(self, trial, result):
        st = self._trials.get(trial.trial_id)
        pending = st.restarted if st is not None else None
        decision = super().on_trial_result(trial, result)
        if pending is not None and self._trials[trial.trial_id].restarted is not pending:
            self.fixed.append(pending)
        return decision

    def _restart(self, trial_id, donor_id, config, tag, record):
        decision = super()._restart(trial_id, donor_id, config, tag, record)
        ctrl = self.controller
        donor = ctrl._by_id[donor_id]
        self.seen.append({
            "trial": trial_id, "donor": donor_id, "decision": decision,
            "donor_newest": donor.checkpoint.path,
            "donor_iteration": ctrl._checkpoint_counters[donor_id]["iteration"],
            "launches": len(ctrl._executor.launches)})
        return decision


def scripted_configs(rng: random.Random, n: int, length: int) -> List[Dict[str, Any]]:
    configs = []
    for i in range(n):
        quality = rng.random()
        config = {"results": [{"score": quality * t + rng.random() * 0.1}
                              for t in range(1, length + 1)], "lr": rng.choice([1, 2, 3]),
                  "index": i}
        every = rng.choice([1, 1, 2, 3, None])
        if every:
            config["checkpoint_every"] = every
        configs.append(config)
    return configs


def run_controller(scheduler, configs, tmp_path, cpus=2, max_steps=3000):
    executor = FakeExecutor(cpus=cpus)
    ctrl = TuneController(executor=executor, search_alg=ListSearch(configs),
                          scheduler=scheduler, experiment_path=str(tmp_path), poll_timeout=0)
    scheduler.controller = ctrl
    for _ in range(max_steps):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished()
    ctrl.cleanup()
    return ctrl, executor


@pytest.mark.parametrize("synch", [False, True])
def test_controller_relaunches_from_the_donors_newest_checkpoint(tmp_path, synch):
    """40 random populations through the real controller: each exploit's relaunch starts
    from the donor's newest checkpoint at the moment of the decision, counting on from
    its iteration, with the new config; every trial ends."""
    total = 0
    for seed in range(40):
        rng = random.Random(seed)
        length = rng.randint(5, 9)
        pbt = Recording(time_attr="training_iteration", metric="score", mode="max",
                        perturbation_interval=rng.choice([1, 2]),
                        quantile_fraction=rng.choice([0.25, 0.5]),
                        hyperparam_mutations={"lr": [1, 2, 3]}, synch=synch, seed=seed)
        configs = scripted_configs(rng, rng.randint(2, 6), length)
        ctrl, executor = run_controller(pbt, configs, tmp_path / str(seed),
                                        cpus=rng.choice([1, 2, 6]))
        assert all(t.status == TERMINATED for t in ctrl.trials)
        for seen in pbt.seen:
            decision = seen["decision"]
            relaunch = next(launch for launch in executor.launches[seen["launches"]:]
                            if launch.trial_id == seen["trial"])
            assert relaunch.checkpoint_path == seen["donor_newest"]
            assert relaunch.restored_iteration == seen["donor_iteration"]
            assert relaunch.config == decision.config
        # The policy records the iteration each exploiter counted on from (exactly, once
        # the trial reported after its restart).
        for record in pbt.fixed:
            assert record["donor_iteration"] in [s["donor_iteration"] for s in pbt.seen
                                                 if s["trial"] == record["trial_id"]]
        total += len(pbt.seen)
    assert total > 20


def test_policy_files_and_replay(tmp_path):
    """A recorded trial's policy file replays its schedule: the replayed trial changes its
    config at the recorded iterations, each time from its own checkpoint there."""
    rng = random.Random(5)
    pbt = Recording(time_attr="training_iteration", metric="score", mode="max",
                    perturbation_interval=2, quantile_fraction=0.5,
                    hyperparam_mutations={"lr": [1, 2, 3, 4]}, seed=2)
    configs = scripted_configs(rng, 4, 10)
    for c in configs:
        c["checkpoint_every"] = 1
    pbt.set_experiment_path(str(tmp_path / "exp"))
    run_controller(pbt, configs, tmp_path / "exp", cpus=2)
    lines = open(tmp_path / "exp" / "pbt_global.txt").read().splitlines()
    assert [json.loads(line) for line in lines] == pbt.global_policy() != []
    # The trial with the longest history.
    trial_id = max(pbt._lineage, key=lambda t: len(pbt.trial_policy(t)))
    path = tmp_path / "exp" / f"pbt_policy_{trial_id}.txt"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == pbt.trial_policy(trial_id)
    initial, changes = load_policy(str(path))
    assert initial == records[0]["donor_config"]
    assert changes[-1] == (records[-1]["donor_iteration"], records[-1]["new_config"])

    replay = PopulationBasedTrainingReplay(str(path))
    executor = FakeExecutor(cpus=2)
    ctrl = TuneController(executor=executor, search_alg=ListSearch([dict(initial)]),
                          scheduler=replay, experiment_path=str(tmp_path / "replay"),
                          poll_timeout=0)
    ctrl.run()
    (trial,) = ctrl.trials
    assert trial.status == TERMINATED
    relaunches = executor.launches[1:]
    expected = []
    for at, config in changes:
        if expected and expected[-1][0] == at:
            expected[-1] = (at, config)
        else:
            expected.append((at, config))
    assert [(r.restored_iteration, r.config["lr"]) for r in relaunches] == \
        [(at, c["lr"]) for at, c in expected]
    for launch in relaunches:
        assert launch.checkpoint_path == \
            f"{trial.path}/checkpoint_{launch.restored_iteration - 1:06d}"


def test_policy_files_are_rewritten_from_memory_on_restore(tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="s", mode="max",
                                  perturbation_interval=1, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": [1, 2]}, seed=0)
    pbt.set_experiment_path(str(tmp_path))
    pbt.on_trial_add(snapshot("a", PENDING, config={"lr": 1}))
    pbt.on_trial_add(snapshot("b", PENDING, config={"lr": 1}))
    pbt.on_trial_result(snapshot("a", config={"lr": 1}, checkpoint=Checkpoint("/a/c1")),
                        {"training_iteration": 1, "s": 5.0})
    decision = pbt.on_trial_result(snapshot("b", config={"lr": 1}),
                                   {"training_iteration": 1, "s": 1.0})
    assert isinstance(decision, RestartTrial)
    # Not in the files until the restarted trial reports: then with its exact iteration.
    assert not (tmp_path / "pbt_policy_b.txt").exists()
    saved = pickle.loads(pickle.dumps(pbt))
    pbt.on_trial_result(snapshot("b", config=decision.config, checkpoint=Checkpoint("/a/c1")),
                        {"training_iteration": 2, "s": 5.5})
    (record,) = [json.loads(x) for x in (tmp_path / "pbt_policy_b.txt").read_text().splitlines()]
    assert record["donor_iteration"] == 1 and record["donor_id"] == "a"
    # A restored scheduler (saved before that result) rewrites the files as it knows them.
    (tmp_path / "pbt_global.txt").write_text("garbage\n")
    saved.set_experiment_path(str(tmp_path))
    assert (tmp_path / "pbt_global.txt").read_text() == ""
    saved.on_trial_result(snapshot("b", config=decision.config, checkpoint=Checkpoint("/a/c1")),
                          {"training_iteration": 2, "s": 5.5})
    assert len((tmp_path / "pbt_global.txt").read_text().splitlines()) == 1


def test_replay_arguments_and_ray_tune_policy_files(tmp_path):
    with pytest.raises(ValueError, match="policy_file=.*no such file"):
        PopulationBasedTrainingReplay(str(tmp_path / "missing.txt"))
    # Ray Tune's format: [trial_tag, donor_tag, trial_it, donor_it, donor_config, new_config]
    # The first line is of no ancestor (trial "z"): the chain back from the last line
    # (c took b's checkpoint, b took a's) stops before it.
    path = tmp_path / "pbt_policy_c.txt"
    rows = [["z", "y", 2, 2, {"lr": 9}, {"lr": 8}],
            ["b", "a", 3, 4, {"lr": 1}, {"lr": 2}],
            ["c", "b", 6, 6, {"lr": 2}, {"lr": 3}]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    initial, changes = load_policy(str(path))
    assert initial == {"lr": 1} and changes == [(4, {"lr": 2}), (6, {"lr": 3})]
    replay = PopulationBasedTrainingReplay(str(path))
    assert replay.complete_config({"other": 1}) == {"other": 1, "lr": 1}
    replay.on_trial_add(snapshot("t", PENDING, config={"lr": 1, "other": 1}))
    with pytest.raises(ValueError, match="one trial"):
        replay.on_trial_add(snapshot("u", PENDING, config={"lr": 1}))
    fresh = PopulationBasedTrainingReplay(str(path))
    with pytest.raises(ValueError, match=r"param_space=\{'lr': 1\}"):
        fresh.on_trial_add(snapshot("t", PENDING, config={"lr": 5}))
    bad = tmp_path / "bad.txt"
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        PopulationBasedTrainingReplay(str(bad))


def test_pickled_mid_run_continues_with_identical_decisions():
    def run(swap_at):
        rng = random.Random(9)
        pbt, params = random_pbt(rng, quantile_fraction=0.5, perturbation_interval=1,
                                 burn_in_period=0, mode="max")
        population = Population(pbt, n=6, seed=9, slots=3, length=10, interval=1, burn_in=0,
                                quantile=0.5, checkpoint_probability=0.7)
        for step in range(200):
            if all(m.status == TERMINATED for m in population.members.values()):
                break
            if step == swap_at:
                population.scheduler = pickle.loads(pickle.dumps(population.scheduler))
            population.step()
        return [(t, d, e.config, e.checkpoint) for t, d, e in population.exploits]

    straight = run(None)
    assert straight and run(7) == straight and run(15) == straight


# --- a real local Ray -----------------------------------------------------------------------------
def trial_rows(path: str) -> List[Dict[str, Any]]:
    with open(os.path.join(path, "result.json")) as f:
        return [json.loads(line) for line in f]


def check_pbt_run(results, policy: List[Dict[str, Any]]) -> None:
    assert len(results) == exp.NUM_TRIALS and results.num_errors == 0
    by_id = {}
    for r in results:
        assert r.metrics["training_iteration"] == exp.ITERATIONS
        by_id[r.metrics["trial_id"]] = trial_rows(r.path)
    assert policy, "no trial exploited another one"
    for n, record in enumerate(policy):
        rows = by_id[record["trial_id"]]
        # The exploiting trial went on from the donor's checkpoint at the recorded
        # iteration, with the new config. The checkpoint's content names the trial that
        # wrote it: the donor, or, if the donor had itself just restarted from another
        # trial's checkpoint and not saved its own yet, that trial (transitively).
        writers = {record["donor_id"]}
        for earlier in reversed(policy[:n]):
            if earlier["trial_id"] in writers:
                writers.add(earlier["donor_id"])
        resumed = [row for row in rows if row["resumed_from_trial"] in writers
                   and row["resumed_at"] == record["donor_iteration"]
                   and row["lr"] == record["new_config"]["lr"]]
        assert resumed, (record, rows)
        assert resumed[0]["training_iteration"] == record["donor_iteration"] + 1
    assert any(len({row["lr"] for row in rows}) > 1 for rows in by_id.values())


@pytest.mark.ray
def test_end_to_end_on_ray_and_a_replay_of_its_policy(ray_local, tmp_path):
    tuner = exp.make_tuner(str(tmp_path), "pbt")
    results = tuner.fit()
    pbt = tuner._tune_config.scheduler
    check_pbt_run(results, pbt.global_policy())

    # Replay the longest recorded history as one trial: it changes its lr at the recorded
    # iterations, each time going on from its own checkpoint there.
    files = [p for p in os.listdir(os.path.join(str(tmp_path), "pbt"))
             if p.startswith("pbt_policy_")]
    path = max((os.path.join(str(tmp_path), "pbt", p) for p in files),
               key=lambda p: len(load_policy(p)[1]))
    initial, changes = load_policy(path)
    replayed = tune.Tuner(
        exp.train_fn, param_space={"sleep": 0.01},
        tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=1,
                                    scheduler=PopulationBasedTrainingReplay(path)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="replay",
                                  verbose=0)).fit()
    (result,) = list(replayed)
    assert not replayed.errors
    rows = trial_rows(result.path)
    assert [row["training_iteration"] for row in rows] == list(range(1, exp.ITERATIONS + 1))
    assert rows[0]["lr"] == initial["lr"]
    lr_at = {}
    for at, config in changes:  # the last change at an iteration wins
        lr_at[at] = config["lr"]
    for at, lr in lr_at.items():
        row = rows[at]  # the row of iteration at + 1
        assert (row["lr"], row["resumed_at"]) == (lr, at), (at, rows)
        assert row["resumed_from_trial"] == result.metrics["trial_id"]
    # between changes the lr stays as set
    expected, lr = [], initial["lr"]
    for iteration in range(1, exp.ITERATIONS + 1):
        lr = lr_at.get(iteration - 1, lr)
        expected.append(lr)
    assert [row["lr"] for row in rows] == expected


@pytest.mark.ray
def test_interrupted_run_restores_with_its_pbt_state(ray_local, tmp_path):
    from tune_core.experiment.experiment_state import STATE_FILE, load_experiment_state

    storage = str(tmp_path)
    path = os.path.join(storage, "pbt")

    def exploited_and_saved() -> bool:
        if not os.path.exists(os.path.join(path, STATE_FILE)):
            return False
        try:
            _, state = load_experiment_state(path)
        except Exception:  # written as we read
            return False
        return state["scheduler"].num_perturbations >= 1

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, exp.__file__, storage, "pbt"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    try:
        while not exploited_and_saved():
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "no exploit was saved in time"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _, before = load_experiment_state(path)
    saved_policy = before["scheduler"].global_policy()
    unfinished = [t for t in before["trials"] if t.get("status") != "TERMINATED"]
    assert unfinished, "the run had finished before the kill"

    results = tune.Tuner.restore(path, exp.train_fn).fit()
    _, after = load_experiment_state(path)
    policy = after["scheduler"].global_policy()
    # The restored scheduler went on from its saved state: same history, then more.
    assert policy[:len(saved_policy)] == saved_policy
    known, now = before["scheduler"]._trials, after["scheduler"]._trials
    assert set(known) <= set(now) and len(now) == exp.NUM_TRIALS
    for trial_id, state in known.items():  # their PBT clocks went on, not from zero
        assert now[trial_id].last_perturbation_time >= state.last_perturbation_time
    check_pbt_run(results, policy)
