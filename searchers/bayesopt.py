"""Gaussian-process Bayesian optimisation (Ray Tune's ``ray.tune.search.bayesopt.BayesOptSearch``).

Built on Optuna's ``GPSampler``, not on a GP of our own: a Matern-5/2 kernel with one
length scale per parameter (ARD), kernel hyperparameters fitted by maximum marginal
likelihood with priors against overfitting, and the acquisition function maximised with
L-BFGS-B from many starts. We chose it over scikit-learn's ``GaussianProcessRegressor``
plus an acquisition loop of our own because it already handles what a tuning space needs
and a hand-rolled loop would get wrong: log domains (modelled in log space), integer and
step parameters, categorical parameters (their own kernel distance, not a one-hot cast to
floats), and trials still running when the next one is asked for (greedy batch q-logEI, so
``max_concurrent_trials=4`` does not make four copies of the same point). Its torch and
scipy dependencies are already ours.

The acquisition function is expected improvement, computed as log EI (Ament et al. 2023,
"Unexpected Improvements to Expected Improvement for Bayesian Optimization"): the same
maximiser as EI without EI's vanishing gradients. Ray Tune's ``BayesOptSearch`` (on the
``bayesian-optimization`` package) defaults to UCB and offers EI and PoI; here only EI
exists, and ``utility_kwargs`` asking for another kind is refused with an error rather than
silently run as EI.

Differences from Ray Tune's version, on purpose:

* Every tune domain Optuna can represent works (Ray Tune's takes only uniform floats):
  ``uniform``, ``loguniform``, ``quniform``, ``randint``, ``lograndint``, ``choice`` over
  any values, nested dicts. Spaces are converted exactly as in
  :class:`~searchers.optuna.OptunaSearch`, and a domain that cannot be represented
  (``grid_search``, ``randn``, ``sample_from``) is refused before the first trial.
* ``metric``/``mode`` may be lists (multi-objective; log expected hypervolume improvement).
* ``constraints=[...]`` (result keys feasible when <= 0) use log constrained EI.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from tune_core.search.searcher import Searcher

from searchers.optuna import OptunaSearch, _import_optuna

__all__ = ["BayesOptSearch"]

logger = logging.getLogger(__name__)

_UTILITY_KEYS = ("kind", "kappa", "xi", "kappa_decay", "kappa_decay_delay")


class BayesOptSearch(OptunaSearch):
    """Bayesian optimisation with a Gaussian process and expected improvement.

    The first ``random_search_steps`` trials (after ``points_to_evaluate``) are sampled at
    random; every later one maximises log expected improvement under a GP fitted to all
    finished trials, conditioned on those still running.

    Args:
        space: a tune search space (dict of domains, nested dicts allowed). None takes the
            Tuner's ``param_space``.
        metric: the result key to optimise (or a list, for several objectives).
        mode: "min" or "max" (or a list matching ``metric``).
        points_to_evaluate: configs (full or partial) to try first, in order.
        utility_kwargs: Ray Tune's acquisition settings. Only ``{"kind": "ei"}`` (the
            default) is accepted, with ``xi`` 0 if given; ``kappa`` settings only matter to
            UCB and are ignored.
        random_state: seed of the GP sampler and of its random start.
        random_search_steps: trials sampled at random before the GP is used (>= 1).
        verbose: kept for Ray Tune scripts; 0 logs nothing, 1 or more logs each duplicate
            suggestion that is skipped.
        patience: with ``skip_duplicate``, the search finishes after this many consecutive
            suggestions repeated a configuration already tried: the GP has converged (on a
            discrete space, or on a continuous one once its best point is pinned down, which
            the sample-efficiency benchmark sees after 35-80 evaluations of Branin or
            Hartmann-6). Raise it, or set ``skip_duplicate=False``, to use every trial of
            ``num_samples`` anyway.
        skip_duplicate: suggestions repeating a configuration already suggested are
            discarded (recorded as failed for Optuna, which the GP ignores) and another is
            asked for.
        analysis: a :class:`~tune_core.result_grid.ResultGrid` (or any iterable of results
            with ``config`` and ``metrics``) from an earlier run; its finished trials are
            added as observations before the first suggestion.
        evaluated_rewards: metric values of ``points_to_evaluate`` already known; those
            points are added as observations instead of being run.
        constraints: result keys whose final values are constraints (feasible when <= 0).
        deterministic_objective: the objective has no noise (the GP fits no noise term).

    Example::

        searcher = BayesOptSearch(metric="loss", mode="min", random_state=0)
        tuner = tune.Tuner(train, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                           tune_config=tune.TuneConfig(search_alg=searcher, num_samples=40))
    """

    def __init__(self, space: Optional[Dict[str, Any]] = None,
                 metric: Union[str, List[str], None] = None,
                 mode: Union[str, List[str], None] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 utility_kwargs: Optional[Dict[str, Any]] = None,
                 random_state: Optional[int] = 42,
                 random_search_steps: int = 10,
                 verbose: int = 0,
                 patience: int = 5,
                 skip_duplicate: bool = True,
                 analysis: Any = None, *,
                 evaluated_rewards: Optional[List[Any]] = None,
                 constraints: Optional[Sequence[str]] = None,
                 deterministic_objective: bool = False) -> None:
        optuna = _import_optuna()
        if space is not None and (callable(space) or not isinstance(space, dict)):
            raise TypeError(f"BayesOptSearch(space={space!r}): use a dict of tune domains")
        _check_utility(utility_kwargs)
        if (not isinstance(random_search_steps, int) or isinstance(random_search_steps, bool)
                or random_search_steps < 1):
            raise ValueError(f"BayesOptSearch(random_search_steps={random_search_steps!r}): "
                             "use an int >= 1 (the GP needs a first observation)")
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"BayesOptSearch(patience={patience!r}): use an int >= 1")
        if random_state is not None and (not isinstance(random_state, int)
                                         or isinstance(random_state, bool)):
            raise ValueError(f"BayesOptSearch(random_state={random_state!r}): use an int "
                             "or None")
        sampler = optuna.samplers.GPSampler(
            seed=random_state, n_startup_trials=random_search_steps,
            deterministic_objective=deterministic_objective,
            independent_sampler=optuna.samplers.RandomSampler(seed=random_state),
            warn_independent_sampling=False)
        super().__init__(space=space, metric=metric, mode=mode,
                         points_to_evaluate=points_to_evaluate, sampler=sampler,
                         evaluated_rewards=evaluated_rewards, constraints=constraints)
        self._random_state = random_state
        self._verbose = verbose
        self._patience = patience
        self._skip_duplicate = skip_duplicate
        self._seen: Dict[Tuple[Any, ...], str] = {}  # params key -> first trial_id
        self._analysis = list(_observations(analysis)) if analysis is not None else []
        self._maybe_add_analysis()

    def _maybe_add_analysis(self) -> None:
        if self._study is None or not self._analysis:
            return
        metrics = self._metrics
        for config, result in self._analysis:
            values = [result.get(m) for m in metrics]
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
                continue
            self.add_evaluated_point(config, values if len(values) > 1 else values[0])
        self._analysis = []

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._maybe_add_analysis()
        return True

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if self._study is not None:
            self._maybe_add_analysis()
        repeats = 0
        while True:
            config = super().suggest(trial_id)
            if self._study is not None:
                self._maybe_add_analysis()
            trial = self._live[trial_id]
            key = tuple(sorted((k, repr(v)) for k, v in trial.params.items()))
            if not self._skip_duplicate or key not in self._seen:
                self._seen[key] = trial_id
                return config
            # A repeat of a tried configuration: drop it (FAIL is ignored by the GP).
            optuna = _import_optuna()
            self._live.pop(trial_id)
            self._numbers.pop(trial_id, None)
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            repeats += 1
            if self._verbose:
                logger.info("BayesOptSearch: suggestion %s repeats trial %s; skipped",
                            dict(trial.params), self._seen[key])
            if repeats >= self._patience:
                logger.info("BayesOptSearch: %d suggestions in a row repeated configurations "
                            "already tried; the search has converged and finishes", repeats)
                return Searcher.FINISHED

    def _require_setup(self) -> None:
        try:
            super()._require_setup()
        except ValueError as e:
            raise ValueError(str(e).replace("OptunaSearch", "BayesOptSearch")) from None


def _check_utility(utility_kwargs: Optional[Dict[str, Any]]) -> None:
    if utility_kwargs is None:
        return
    if not isinstance(utility_kwargs, dict):
        raise TypeError(f"BayesOptSearch(utility_kwargs={utility_kwargs!r}): use a dict "
                        "such as {'kind': 'ei'}")
    unknown = sorted(set(utility_kwargs) - set(_UTILITY_KEYS))
    if unknown:
        raise ValueError(f"BayesOptSearch(utility_kwargs={utility_kwargs!r}): unknown keys "
                         f"{unknown}; accepted: {list(_UTILITY_KEYS)}")
    kind = utility_kwargs.get("kind", "ei")
    if kind != "ei":
        raise ValueError(f"BayesOptSearch(utility_kwargs={{'kind': {kind!r}, ...}}): only "
                         "expected improvement ('ei') is implemented (as log EI on Optuna's "
                         "GPSampler); UCB and PoI are not")
    xi = utility_kwargs.get("xi", 0.0)
    if xi not in (0, 0.0):
        raise ValueError(f"BayesOptSearch(utility_kwargs={{'xi': {xi!r}}}): the EI used has "
                         "no exploration offset; leave xi out or set it to 0")


def _observations(analysis: Any):
    """(config, metrics) pairs of an earlier run's results."""
    try:
        results = list(analysis)
    except TypeError:
        raise TypeError(f"BayesOptSearch(analysis={analysis!r}): use a ResultGrid (or "
                        "an iterable of results with .config and .metrics)") from None
    for result in results:
        config, metrics = getattr(result, "config", None), getattr(result, "metrics", None)
        if getattr(result, "error", None) is None and config and metrics:
            yield config, metrics
