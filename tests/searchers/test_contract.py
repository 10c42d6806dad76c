"""The contract every searcher keeps, checked on each one with the same scenarios.

To add a searcher: append a factory to ``SEARCHERS``. A factory takes keyword arguments
``metric``, ``mode``, ``points_to_evaluate`` and ``seed`` (any may be left out) and builds
the searcher with its space unset: the space comes through
``set_search_properties(metric, mode, SPACE)``, as from the Tuner. Add it to
``TAKES_POINTS`` if it takes ``points_to_evaluate`` and to ``RESTORE_IS_EXACT`` if a
restored copy (same seed) suggests exactly what the original would have.
"""

from __future__ import annotations

import math
import os
import pickle
import random
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import tune_core as tune
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialStatus
from tune_core.search.basic_variant import BasicVariantGenerator
from tune_core.search.sample import Domain
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

from searchers import ConcurrencyLimiter, Repeater, create_searcher
from tests.tune_core.execution.fake_executor import FakeExecutor

SPACE: Dict[str, Any] = {
    "x": tune.uniform(-5.0, 5.0),
    "n": tune.randint(1, 10),
    "act": tune.choice(["relu", "tanh", "gelu"]),
}
POINTS = [{"x": 0.5, "n": 3, "act": "tanh"}, {"x": -1.0, "n": 7, "act": "relu"}]


def objective(config: Dict[str, Any]) -> float:
    return (config["x"] - 1.0) ** 2 + 0.1 * config["n"] + (config["act"] == "relu")


def check_config(config: Any) -> None:
    """A suggestion is a dict with every parameter of ``SPACE`` inside its domain."""
    assert isinstance(config, dict), config
    assert -5.0 <= config["x"] <= 5.0 and isinstance(config["x"], float), config
    assert 1 <= config["n"] < 10 and isinstance(config["n"], int), config
    assert config["act"] in ("relu", "tanh", "gelu"), config


def params(config: Dict[str, Any]) -> Dict[str, Any]:
    return {k: config[k] for k in SPACE}


# --- a reference searcher: random sampling, written for this suite ------------------------------
class RandomReference(Searcher):
    """Samples the space at random; records what it was told (``log``)."""

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 seed: int = 0, finish_after: Optional[int] = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self._space: Dict[str, Domain] = {}
        self._points = [dict(p) for p in points_to_evaluate or []]
        self._rng = random.Random(seed)
        self._finish_after = finish_after
        self.suggested: Dict[str, Dict[str, Any]] = {}
        self.log: List[Tuple[Any, ...]] = []

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._space = {k: v for k, v in config.items() if isinstance(v, Domain)}
        return True

    def suggest(self, trial_id: str):
        if not self._metric or not self._mode:
            raise ValueError(f"RandomReference needs a metric and a mode (got metric="
                             f"{self._metric!r}, mode={self._mode!r}): pass them to it or set "
                             "TuneConfig(metric=..., mode=...)")
        if self._finish_after is not None and len(self.suggested) >= self._finish_after:
            return Searcher.FINISHED
        if self._points:
            config = self._points.pop(0)
        else:
            config = {k: d.sample(self._rng) for k, d in self._space.items()}
        self.suggested[trial_id] = config
        self.log.append(("suggest", trial_id))
        return dict(config)

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self.log.append(("complete", trial_id, result, error))


def innermost(searcher: Searcher) -> Searcher:
    while hasattr(searcher, "searcher"):
        searcher = searcher.searcher
    return searcher


# --- the searchers under contract ---------------------------------------------------------------
def reference(**kw: Any) -> Searcher:
    return RandomReference(**kw)


def limited(**kw: Any) -> Searcher:
    return ConcurrencyLimiter(RandomReference(**kw), max_concurrent=2)


def limited_batch(**kw: Any) -> Searcher:
    return ConcurrencyLimiter(RandomReference(**kw), max_concurrent=2, batch=True)


def repeated(**kw: Any) -> Searcher:
    return Repeater(RandomReference(**kw), repeat=2)


def limited_repeated(**kw: Any) -> Searcher:
    return ConcurrencyLimiter(Repeater(RandomReference(**kw), repeat=2), max_concurrent=2)


def optuna(**kw: Any) -> Searcher:
    from searchers.optuna import OptunaSearch

    return OptunaSearch(**kw)


def hyperopt(**kw: Any) -> Searcher:
    from searchers.hyperopt import HyperOptSearch

    if "seed" in kw:
        kw["random_state_seed"] = kw.pop("seed")
    return HyperOptSearch(n_initial_points=3, **kw)


def limited_optuna(**kw: Any) -> Searcher:
    return ConcurrencyLimiter(optuna(**kw), max_concurrent=2)


def rea(**kw: Any) -> Searcher:
    from searchers.rea import RegularizedEvolution

    if "seed" in kw:
        kw["random_seed"] = kw.pop("seed")
    # A small population, so that mutation happens within the suite's dozen trials.
    return RegularizedEvolution(population_size=4, sample_size=2, **kw)


def bayesopt(**kw: Any) -> Searcher:
    from searchers.bayesopt import BayesOptSearch

    if "seed" in kw:
        kw["random_state"] = kw.pop("seed")
    # Few random steps, so the GP makes most of the suite's suggestions.
    return BayesOptSearch(random_search_steps=5, **kw)


def bohb(**kw: Any) -> Searcher:
    from searchers.bohb import TuneBOHB

    return TuneBOHB(**kw)


#: Factories of every searcher under contract; others append theirs.
SEARCHERS: List[Callable[..., Searcher]] = [
    reference, limited, limited_batch, repeated, limited_repeated,
    optuna, hyperopt, limited_optuna, rea, bayesopt, bohb,
]
#: Searchers that run ``points_to_evaluate`` first.
TAKES_POINTS = {reference, limited, limited_batch, repeated, limited_repeated,
                optuna, hyperopt, limited_optuna, rea, bayesopt, bohb}
#: Searchers whose restored copy goes on exactly as the original would.
RESTORE_IS_EXACT = {reference, limited, limited_batch, repeated, limited_repeated,
                    optuna, hyperopt, limited_optuna, rea, bayesopt, bohb}

by_name = pytest.mark.parametrize("make", SEARCHERS, ids=lambda f: f.__name__)


# --- a driver that plays the controller ---------------------------------------------------------
class Driver:
    """Asks for suggestions with ``slots`` trials live; completes the oldest first."""

    def __init__(self, searcher: Searcher, slots: int = 3, error_every: int = 0) -> None:
        self.searcher = searcher
        self.slots = slots
        self.error_every = error_every
        self.live: List[Tuple[str, Dict[str, Any]]] = []
        self.configs: List[Dict[str, Any]] = []
        self.next_id = 0
        self.finished = False

    def complete_oldest(self) -> None:
        trial_id, config = self.live.pop(0)
        index = int(trial_id[1:])
        if self.error_every and index % self.error_every == self.error_every - 1:
            self.searcher.on_trial_complete(trial_id, result=None, error=True)
            return
        loss = objective(config)
        self.searcher.on_trial_result(trial_id, {"loss": loss + 1, "training_iteration": 1})
        self.searcher.on_trial_complete(
            trial_id, result={"loss": loss, "training_iteration": 2, "config": config})

    def run(self, n: int, drain: bool = True) -> List[Dict[str, Any]]:
        """Start ``n`` more trials (fewer if the searcher finishes); their configs."""
        start = len(self.configs)
        target = start + n
        for _ in range(10 * n + 10):
            if len(self.configs) >= target or self.finished:
                break
            if len(self.live) >= self.slots:
                self.complete_oldest()
                continue
            trial_id = f"t{self.next_id}"
            suggestion = self.searcher.suggest(trial_id)
            if suggestion == Searcher.FINISHED:
                self.finished = True
            elif suggestion is None:
                assert self.live, "suggest said 'not now' with no trial running"
                self.complete_oldest()
            else:
                check_config(suggestion)
                self.next_id += 1
                self.live.append((trial_id, suggestion))
                self.configs.append(suggestion)
        while drain and self.live:
            self.complete_oldest()
        return self.configs[start:]


def fresh(make: Callable[..., Searcher], **kw: Any) -> Searcher:
    searcher = make(**{"metric": "loss", "mode": "min", "seed": 1, **kw})
    searcher.set_search_properties(None, None, SPACE)
    return searcher


# --- scenarios ----------------------------------------------------------------------------------
@by_name
@pytest.mark.parametrize("slots", [1, 3])
def test_suggest_complete_cycles(make, slots):
    searcher = fresh(make)
    configs = Driver(searcher, slots=slots).run(12)
    assert len(configs) == 12
    inner = innermost(searcher)
    if isinstance(inner, RandomReference):  # every suggestion's outcome reached the searcher
        completed = [e for e in inner.log if e[0] == "complete"]
        assert len(completed) == len(inner.suggested)
        assert all(not e[3] and math.isfinite(e[2]["loss"]) for e in completed)


@by_name
def test_search_properties_from_the_tuner(make):
    searcher = make(seed=2)
    assert searcher.set_search_properties("loss", "min", SPACE)
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    assert len(Driver(searcher).run(4)) == 4
    # metric/mode given twice differently: refused, as the Tuner reports a conflict
    other = make(metric="loss", mode="min")
    assert not other.set_search_properties("acc", "max", SPACE)


@by_name
def test_errored_trials_do_not_break_it(make):
    searcher = fresh(make)
    configs = Driver(searcher, slots=2, error_every=3).run(12)
    assert len(configs) == 12
    inner = innermost(searcher)
    if isinstance(inner, RandomReference):  # each outcome arrived (a Repeater's averaged)
        completed = [e for e in inner.log if e[0] == "complete"]
        assert len(completed) == len(inner.suggested)
        assert any(e[3] for e in completed) or isinstance(searcher, (Repeater, ConcurrencyLimiter))


@pytest.mark.parametrize("make", [m for m in SEARCHERS if m in TAKES_POINTS],
                         ids=lambda f: f.__name__)
def test_points_to_evaluate_come_first(make):
    searcher = fresh(make, points_to_evaluate=[dict(p) for p in POINTS])
    configs = Driver(searcher, slots=2).run(8)
    distinct: List[Dict[str, Any]] = []
    for config in configs:
        if params(config) not in distinct:
            distinct.append(params(config))
    assert distinct[:2] == POINTS


@by_name
@pytest.mark.parametrize("how", ["save", "save_to_dir", "pickle"])
def test_restore_mid_run_continues(make, how, tmp_path):
    original = fresh(make)
    driver = Driver(original, slots=2)
    driver.run(5, drain=False)  # trials still running when it is saved
    assert driver.live
    live = list(driver.live)
    if how == "save":
        path = str(tmp_path / "searcher.pkl")
        original.save(path)
        restored = fresh(make)
        restored.restore(path)
    elif how == "save_to_dir":
        original.save_to_dir(str(tmp_path), session_str="s1")
        restored = fresh(make)
        restored.restore_from_dir(str(tmp_path))
    else:
        restored = pickle.loads(pickle.dumps(original))
    assert (restored.metric, restored.mode) == ("loss", "min")
    # Both go on from the same point; the restored one finishes the running trials.
    twin = Driver(restored, slots=2)
    twin.live, twin.next_id = list(live), driver.next_id
    after = twin.run(6)
    assert len(after) == 6
    if make in RESTORE_IS_EXACT:
        assert [params(c) for c in driver.run(6)] == [params(c) for c in after]


@by_name
def test_metric_and_mode_missing_is_a_clear_error(make):
    searcher = make()
    with pytest.raises(ValueError) as err:
        searcher.set_search_properties(None, None, SPACE)
        searcher.suggest("t0")
    assert "metric" in str(err.value) and "mode" in str(err.value)


def _touching_trainable(config):
    open(os.path.join(config["marker_dir"], "ran"), "w").close()
    tune.report({"loss": 1.0})


@by_name
def test_metric_and_mode_missing_fails_the_tuner_before_any_trial(make, tmp_path, ray_local):
    space = dict(SPACE, marker_dir=str(tmp_path))
    tuner = tune.Tuner(_touching_trainable, param_space=space,
                       tune_config=tune.TuneConfig(search_alg=make(), num_samples=2),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "results"),
                                                 verbose=0))
    with pytest.raises(ValueError) as err:
        tuner.fit()
    assert "metric" in str(err.value)
    assert not os.path.exists(tmp_path / "ran")


@by_name
def test_drives_the_controller_with_the_fake_executor(make, tmp_path):
    searcher = make(metric="loss", mode="min", seed=3)
    space = dict(SPACE, results=[{"loss": 2.0}, {"loss": 1.0}])
    alg = SearchGenerator(searcher)
    assert alg.set_search_properties(None, None, space)
    alg.add_configurations(space, 8)
    executor = FakeExecutor(cpus=3)
    ctrl = TuneController(executor=executor, search_alg=alg, experiment_path=str(tmp_path),
                          poll_timeout=0)
    for _ in range(500):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished()
    assert len(ctrl.trials) == 8
    assert all(t.status == TrialStatus.TERMINATED for t in ctrl.trials)
    for trial in ctrl.trials:
        check_config(trial.config)
    inner = innermost(searcher)
    if isinstance(inner, RandomReference):
        completed = [e for e in inner.log if e[0] == "complete"]
        assert len(completed) == len(inner.suggested)
        assert all(e[2]["loss"] == 1.0 for e in completed)
    ctrl.cleanup()


# --- create_searcher ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "variant_generator", "Random "])
def test_create_searcher_builds_by_name(name):
    assert isinstance(create_searcher(name), BasicVariantGenerator)
    assert isinstance(tune.create_searcher(name, max_concurrent=2), BasicVariantGenerator)
    assert isinstance(create_searcher(search_alg=name.strip()), BasicVariantGenerator)


def test_create_searcher_unknown_name_lists_the_accepted_ones():
    with pytest.raises(ValueError) as err:
        create_searcher("grid")
    for part in ["name='grid'", "'random'", "'variant_generator'", "'optuna'", "'hyperopt'",
                 "'bayesopt'", "'bohb'", "'rea'"]:
        assert part in str(err.value)


def test_create_searcher_imports_lazily():
    import subprocess
    import sys

    code = ("import sys, tune_core, searchers; "
            "print(any(m in sys.modules for m in ('optuna', 'hyperopt', 'ray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "False"
