"""ConcurrencyLimiter and Repeater: unit level, through the controller, and on a real Ray."""

from __future__ import annotations

import pickle
import time
from typing import Any, Dict, List

import pytest

import tune_core as tune
from tune_core.callback import Callback
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialStatus
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

from searchers import ConcurrencyLimiter, Repeater
from searchers.repeater import TRIAL_INDEX
from tests.tune_core.execution.fake_executor import FakeExecutor

from .test_contract import SPACE, RandomReference


def ref(**kw: Any) -> RandomReference:
    searcher = RandomReference(metric="loss", mode="min", **kw)
    searcher.set_search_properties(None, None, SPACE)
    return searcher


# --- ConcurrencyLimiter, unit level -------------------------------------------------------------
def test_limiter_says_not_now_while_full():
    inner = ref()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert isinstance(limiter.suggest("a"), dict)
    assert isinstance(limiter.suggest("b"), dict)
    assert limiter.suggest("c") is None
    assert list(inner.suggested) == ["a", "b"]  # the searcher was not even asked
    limiter.on_trial_result("a", {"loss": 3.0})
    limiter.on_trial_complete("a", {"loss": 1.0})
    assert inner.log[-1] == ("complete", "a", {"loss": 1.0}, False)
    assert isinstance(limiter.suggest("c"), dict)
    assert limiter.suggest("d") is None
    limiter.on_trial_complete("b", None, error=True)  # an error frees the slot too
    assert isinstance(limiter.suggest("d"), dict)
    limiter.on_trial_complete("unknown", {"loss": 0.0})  # not one of its trials: ignored
    assert limiter.live_trials == {"c", "d"}


def test_limiter_batch_waits_for_the_whole_batch():
    inner = ref()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    assert limiter.suggest("a") and limiter.suggest("b")
    limiter.on_trial_complete("a", {"loss": 1.0})
    assert limiter.suggest("c") is None  # b still runs
    assert limiter.num_unfinished_live_trials == 1
    assert not [e for e in inner.log if e[0] == "complete"]  # held back until the batch ends
    limiter.on_trial_complete("b", {"loss": 2.0})
    assert [e[1] for e in inner.log if e[0] == "complete"] == ["a", "b"]
    assert limiter.suggest("c") and limiter.suggest("d")
    assert limiter.suggest("e") is None
    # pickled mid-batch, the copy keeps what it held back
    limiter.on_trial_complete("c", {"loss": 3.0})
    copy = pickle.loads(pickle.dumps(limiter))
    copy.on_trial_complete("d", {"loss": 4.0})
    assert [e[1] for e in copy.searcher.log if e[0] == "complete"] == ["a", "b", "c", "d"]


def test_limiter_passes_metric_mode_space_and_finished_through():
    inner = RandomReference(finish_after=2)
    limiter = ConcurrencyLimiter(inner, max_concurrent=5)
    assert limiter.set_search_properties("loss", "max", SPACE)
    assert (limiter.metric, limiter.mode) == ("loss", "max")
    assert (inner.metric, inner.mode) == ("loss", "max")
    assert set(limiter.suggest("a")) == set(SPACE)
    assert limiter.suggest("b")
    assert limiter.suggest("c") == Searcher.FINISHED
    assert limiter.live_trials == {"a", "b"}


@pytest.mark.parametrize("args, parts", [
    (dict(max_concurrent=0), ["max_concurrent=0", "integer >= 1"]),
    (dict(max_concurrent=1.5), ["max_concurrent=1.5", "integer >= 1"]),
    (dict(max_concurrent=True), ["max_concurrent=True", "integer >= 1"]),
    (dict(max_concurrent=2, batch="yes"), ["batch='yes'", "True or False"]),
    (dict(searcher=3, max_concurrent=2), ["searcher=3", "Searcher"]),
])
def test_limiter_refuses_bad_arguments(args, parts):
    args.setdefault("searcher", RandomReference())
    with pytest.raises(ValueError) as err:
        ConcurrencyLimiter(**args)
    assert str(err.value).startswith("ConcurrencyLimiter(")
    for part in parts:
        assert part in str(err.value)


# --- through the controller with the fake executor ----------------------------------------------
class Live(Callback):
    """Counts the trials running at each start."""

    def __init__(self) -> None:
        self.running: set = set()
        self.most = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self.most = max(self.most, len(self.running))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)

    on_trial_error = on_trial_complete


def drive(searcher: Searcher, num_samples: int, tmp_path, cpus: int = 4,
          space: Dict[str, Any] = None) -> TuneController:
    space = space or dict(SPACE, results=[{"loss": 2.0}, {"loss": 1.0}])
    alg = SearchGenerator(searcher)
    assert alg.set_search_properties(None, None, space)
    alg.add_configurations(space, num_samples)
    live = Live()
    ctrl = TuneController(executor=FakeExecutor(cpus=cpus), search_alg=alg, callbacks=[live],
                          experiment_path=str(tmp_path), poll_timeout=0)
    for _ in range(1000):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished()
    assert len(ctrl.trials) == num_samples
    assert all(t.status == TrialStatus.TERMINATED for t in ctrl.trials)
    ctrl.live = live  # type: ignore[attr-defined]
    ctrl.cleanup()
    return ctrl


def max_live(log: List[tuple]) -> int:
    live, most = set(), 0
    for event in log:
        if event[0] == "suggest":
            live.add(event[1])
        else:
            live.discard(event[1])
        most = max(most, len(live))
    return most


@pytest.mark.parametrize("max_concurrent", [1, 2, 3])
def test_limiter_caps_live_trials_in_the_controller(max_concurrent, tmp_path):
    inner = RandomReference(metric="loss", mode="min")
    ctrl = drive(ConcurrencyLimiter(inner, max_concurrent), 9, tmp_path, cpus=4)
    assert ctrl.live.most == max_concurrent  # reached, never passed
    assert max_live(inner.log) == max_concurrent
    assert len([e for e in inner.log if e[0] == "complete"]) == 9


def test_limiter_batch_in_the_controller(tmp_path):
    inner = RandomReference(metric="loss", mode="min")
    ctrl = drive(ConcurrencyLimiter(inner, 2, batch=True), 8, tmp_path, cpus=4)
    assert ctrl.live.most == 2
    # the searcher sees two suggestions, then both completions, and so on
    assert [e[0] for e in inner.log] == ["suggest", "suggest", "complete", "complete"] * 4


# --- Repeater -----------------------------------------------------------------------------------
def test_repeater_repeats_each_suggestion_with_an_index():
    inner = ref()
    rep = Repeater(inner, repeat=3)
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert list(inner.suggested) == ["t0", "t3"]  # asked once per group
    assert [c[TRIAL_INDEX] for c in configs] == [0, 1, 2, 0, 1, 2]
    strip = [{k: v for k, v in c.items() if k != TRIAL_INDEX} for c in configs]
    assert strip[0] == strip[1] == strip[2] == inner.suggested["t0"]
    assert strip[3] == strip[4] == strip[5] == inner.suggested["t3"]
    assert TRIAL_INDEX not in Repeater(ref(), repeat=2, set_index=False).suggest("x")


def completions(inner: RandomReference) -> List[tuple]:
    return [e[1:] for e in inner.log if e[0] == "complete"]


def test_repeater_reports_the_group_mean_once():
    inner = ref()
    rep = Repeater(inner, repeat=3)
    for i in range(6):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t3", {"loss": 10.0})  # groups may end out of order
    rep.on_trial_complete("t0", {"loss": 1.0, "other": 5})
    rep.on_trial_complete("t1", {"loss": 2.0})
    assert completions(inner) == []
    rep.on_trial_complete("t2", {"loss": 6.0})
    assert completions(inner) == [("t0", {"loss": 3.0}, False)]
    rep.on_trial_complete("t4", {"loss": 20.0})
    rep.on_trial_complete("t5", {"loss": 30.0})
    assert completions(inner)[-1] == ("t3", {"loss": 20.0}, False)
    rep.on_trial_complete("t5", {"loss": 0.0})  # reported twice: ignored
    assert len(completions(inner)) == 2


def test_repeater_leaves_errors_out_of_the_mean():
    inner = ref()
    rep = Repeater(inner, repeat=3)
    for i in range(6):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t0", {"loss": 1.0})
    rep.on_trial_complete("t1", {"loss": 100.0}, error=True)
    rep.on_trial_complete("t2", {"loss": 3.0})
    assert completions(inner) == [("t0", {"loss": 2.0}, False)]
    rep.on_trial_complete("t3", None, error=True)
    rep.on_trial_complete("t4", None, error=True)
    rep.on_trial_complete("t5", {"acc": 1.0})  # no metric: nothing to average either
    assert completions(inner)[-1] == ("t3", None, True)


def test_repeater_state_survives_pickle_mid_group(tmp_path):
    inner = ref()
    rep = Repeater(inner, repeat=2)
    for i in range(3):
        rep.suggest(f"t{i}")  # the second group has one trial of two
    rep.on_trial_complete("t0", {"loss": 4.0})
    path = str(tmp_path / "rep.pkl")
    rep.save(path)
    restored = Repeater(ref(), repeat=2)
    restored.restore(path)
    for copy in (restored, pickle.loads(pickle.dumps(rep))):
        fourth = copy.suggest("t3")
        assert fourth[TRIAL_INDEX] == 1  # completes the open group
        assert {k: v for k, v in fourth.items() if k != TRIAL_INDEX} == inner.suggested["t2"]
        copy.on_trial_complete("t1", {"loss": 2.0})
        copy.on_trial_complete("t2", {"loss": 1.0})
        copy.on_trial_complete("t3", {"loss": 2.0})
        assert completions(copy.searcher) == [("t0", {"loss": 3.0}, False),
                                              ("t2", {"loss": 1.5}, False)]


def test_repeater_passes_finished_and_not_now_through():
    rep = Repeater(RandomReference(metric="loss", mode="min", finish_after=1), repeat=2)
    rep.set_search_properties(None, None, SPACE)
    assert rep.suggest("a") and rep.suggest("b")
    assert rep.suggest("c") == Searcher.FINISHED
    limited = ConcurrencyLimiter(ref(), max_concurrent=1)
    rep = Repeater(limited, repeat=2)
    assert rep.suggest("a") and rep.suggest("b")  # one trial of the inner searcher
    assert rep.suggest("c") is None
    rep.on_trial_complete("a", {"loss": 1.0})
    rep.on_trial_complete("b", {"loss": 1.0})
    assert rep.suggest("c")


@pytest.mark.parametrize("args, parts", [
    (dict(repeat=0), ["repeat=0", "integer >= 1"]),
    (dict(repeat=2.0), ["repeat=2.0", "integer >= 1"]),
    (dict(set_index="no"), ["set_index='no'", "True or False"]),
    (dict(searcher=None), ["searcher=None", "Searcher"]),
])
def test_repeater_refuses_bad_arguments(args, parts):
    args.setdefault("searcher", RandomReference())
    with pytest.raises(ValueError) as err:
        Repeater(**args)
    assert str(err.value).startswith("Repeater(")
    for part in parts:
        assert part in str(err.value)


def test_repeater_in_the_controller(tmp_path):
    inner = RandomReference(metric="loss", mode="min")
    ctrl = drive(Repeater(inner, repeat=3), 6, tmp_path)
    assert sorted(t.config[TRIAL_INDEX] for t in ctrl.trials) == [0, 0, 1, 1, 2, 2]
    assert [(c[1], c[2]) for c in completions(inner)] == [({"loss": 1.0}, False)] * 2


# --- a real local Ray -----------------------------------------------------------------------
def _timed(config):
    start = time.time()
    time.sleep(0.3)
    tune.report({"loss": (config["x"] - 1.0) ** 2, "start": start, "end": time.time()})


def test_limiter_one_at_a_time_on_ray(tmp_path, ray_local):
    inner = RandomReference(seed=5)
    tuner = tune.Tuner(
        _timed, param_space=SPACE,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4,
                                    search_alg=ConcurrencyLimiter(inner, max_concurrent=1)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    results = tuner.fit()
    assert not results.errors
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
    assert len(spans) == 4
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start  # no two trials overlapped


@pytest.mark.usefixtures("ray_local")
def test_limiter_around_optuna_on_ray(tmp_path):
    from searchers.optuna import OptunaSearch

    from . import e2e

    e2e.check_max_concurrent(ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2), 4,
                             tmp_path / "limit")
    (tmp_path / "restore").mkdir()
    before, after, _ = e2e.check_restore_mid_run(
        lambda: ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2), tmp_path / "restore")
    assert len(after.searcher.study.trials) > len(before.searcher.study.trials)


def _noisy(config):
    # Each repeat of a config gets a different loss: the searcher must see their mean.
    tune.report({"loss": config["x"] + 0.1 * config[TRIAL_INDEX]})


@pytest.mark.usefixtures("ray_local")
def test_repeater_on_ray_tells_the_searcher_each_groups_mean(tmp_path):
    import optuna

    from searchers.optuna import OptunaSearch
    from tune_core.experiment.experiment_state import load_experiment_state

    results = tune.Tuner(
        _noisy, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6,
                                    search_alg=Repeater(OptunaSearch(seed=0), repeat=3)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="rep", verbose=0)).fit()
    assert not results.errors and len(results) == 6
    groups: Dict[float, List[int]] = {}
    for r in results:
        groups.setdefault(r.config["x"], []).append(r.config[TRIAL_INDEX])
    assert sorted(sorted(g) for g in groups.values()) == [[0, 1, 2], [0, 1, 2]]
    _, state = load_experiment_state(str(tmp_path / "rep"))
    study = state["search_alg"].searcher.searcher.study
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.value for t in done) == pytest.approx(sorted(x + 0.1 for x in groups))
