"""BOHB's model-based search (Falkner et al., "BOHB: Robust and Efficient Hyperparameter
Optimization at Scale", ICML 2018), to pair with :class:`schedulers.hb_bohb.HyperBandForBOHB`.

Ray Tune users know it as ``ray.tune.search.bohb.TuneBOHB``; here it is
``searchers.bohb.TuneBOHB`` with the same arguments, and it needs neither ConfigSpace nor
hpbandster: the search space is a tune space, and the density-ratio model is Optuna's
multivariate TPE.

How it chooses a configuration (BOHB's rules, section 3 of the paper):

* **One model per budget.** Every observation is ``(config, metric, budget)``; a budget is
  a HyperBand milestone, read from ``result["hyperband_info"]["budget"]`` (see
  :mod:`schedulers.hb_bohb` for when the scheduler puts it there). A trial that ends with
  no HyperBand annotation at all (another scheduler, or none) counts as observed at its
  final ``training_iteration``.
* **Enough points.** A budget has a model once its ``N`` observations split into a good
  part of ``n_good = max(min_points_in_model, floor(top_n_percent * N / 100))`` and a bad
  part of the remaining ``N - n_good``, both at least ``min_points_in_model`` (default:
  the number of parameters + 1), so both densities are fitted on more points than
  dimensions, as in BOHB.
* **The largest budget with a model is used.** Its ``n_good`` best observations give the
  density ``l(x)``, the others ``g(x)``; ``num_samples`` candidates are drawn from ``l``
  and the one maximising ``l(x) / g(x)`` is suggested. This is Optuna's ``TPESampler``
  (multivariate, ``gamma`` returning ``n_good``, ``n_ei_candidates=num_samples``) run on a
  study holding only that budget's observations.
* **A random fraction.** With probability ``random_fraction`` (and always while no budget
  has a model) the configuration is sampled at random instead, which keeps BOHB's
  convergence guarantee of HyperBand with random search.

Differences from Ray Tune's version, on purpose:

* Optuna's Parzen estimators choose their own bandwidths, so hpbandster's
  ``bandwidth_factor`` and ``min_bandwidth`` have no counterpart; given in ``bohb_config``
  they are ignored with a warning (Ray Tune scripts keep running).
* Conditional spaces (a ``choice`` over dicts holding domains) are refused with an error
  naming the parameter, as ConfigSpace conditions are not available; use OptunaSearch with
  a define-by-run function or HyperOptSearch for them.
* Searcher state is plain data (observations and a random generator), so a restored
  searcher suggests exactly what the original would have.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import random
import warnings
from typing import Any, Dict, List, Optional, Tuple

from tune_core.search.searcher import Searcher

from searchers.optuna import (
    _contains_domain, _import_optuna, _Param, _set, convert_search_space, point_to_params)

__all__ = ["TuneBOHB"]

logger = logging.getLogger(__name__)

_DEFAULTS = {"min_points_in_model": None, "top_n_percent": 15, "num_samples": 64,
             "random_fraction": 1 / 3}
_IGNORED = ("bandwidth_factor", "min_bandwidth")

Observation = Tuple[Dict[str, Any], float]  # (Optuna params, loss to minimise)


class TuneBOHB(Searcher):
    """BOHB: a density-ratio model per HyperBand budget (use with ``HyperBandForBOHB``).

    Args:
        space: a tune search space (dict of domains, nested dicts allowed). None takes the
            Tuner's ``param_space``.
        bohb_config: BOHB's settings: ``min_points_in_model`` (default: number of
            parameters + 1), ``top_n_percent`` (15), ``num_samples`` (64 candidates),
            ``random_fraction`` (1/3). See the module docstring.
        metric: the result key to optimise.
        mode: "min" or "max".
        points_to_evaluate: configs (full or partial; missing parameters are sampled) to try
            first, in order.
        seed: seed of the random choices and of the model's sampling.
        max_concurrent: at most this many trials running at once (0: no limit). Paused
            trials do not count. Ray Tune's argument; a ``ConcurrencyLimiter`` does the same.

    Example::

        tuner = tune.Tuner(
            train, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", num_samples=60,
                search_alg=TuneBOHB(seed=0),
                scheduler=HyperBandForBOHB(max_t=27, reduction_factor=3)))
    """

    def __init__(self, space: Optional[Dict[str, Any]] = None,
                 bohb_config: Optional[Dict[str, Any]] = None,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 seed: Optional[int] = None, max_concurrent: int = 0) -> None:
        _import_optuna()
        if isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple)):
            raise ValueError(f"TuneBOHB(metric={metric!r}, mode={mode!r}): BOHB optimises one "
                             "metric; for several use OptunaSearch or MOASHA")
        super().__init__(metric=metric, mode=mode)
        self._config = _check_bohb_config(bohb_config)
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool) \
                or max_concurrent < 0:
            raise ValueError(f"TuneBOHB(max_concurrent={max_concurrent!r}): use an int >= 0 "
                             "(0: no limit)")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"TuneBOHB(seed={seed!r}): use an int or None")
        self._max_concurrent = max_concurrent
        self._rng = random.Random(seed)
        self._points = copy.deepcopy(list(points_to_evaluate or []))
        self._params: Optional[List[_Param]] = None
        if space is not None:
            self._set_space(space)
        self._observations: Dict[float, List[Observation]] = {}
        self._seen: Dict[Tuple[str, float], int] = {}  # (trial_id, budget) -> index
        self._suggested: Dict[str, Dict[str, Any]] = {}  # trial_id -> Optuna params
        self._running: set = set()

    # -- setup -----------------------------------------------------------------------
    def _set_space(self, space: Any) -> None:
        if not isinstance(space, dict):
            raise TypeError(f"TuneBOHB(space={space!r}): use a dict of tune domains")
        try:
            params = convert_search_space(space)
        except ValueError as e:
            raise ValueError(str(e).replace("OptunaSearch", "TuneBOHB")) from None
        if not params:
            raise ValueError("TuneBOHB: the search space has no domain to search over")
        self._params = params
        for point in self._points:
            self._point_params(point)  # a bad point fails now, before the first trial

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._params is not None and config and _contains_domain(config):
            raise ValueError("TuneBOHB got a space in its constructor and the Tuner's "
                             "param_space holds domains too; give the space in one place")
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        if self._params is None and config:
            self._set_space(config)
        self._require_setup()
        return True

    def _require_setup(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError("TuneBOHB needs a metric and a mode: pass TuneBOHB(metric=..., "
                             "mode=...) or set TuneConfig(metric=..., mode=...)")
        if self._params is None:
            raise ValueError("TuneBOHB has no search space: pass TuneBOHB(space=...) or a "
                             "param_space with domains to the Tuner")

    @property
    def min_points_in_model(self) -> int:
        given = self._config["min_points_in_model"]
        return given if given is not None else len(self._params or []) + 1

    # -- suggestions -----------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        self._require_setup()
        if self._max_concurrent and len(self._running) >= self._max_concurrent:
            return None
        fixed = self._point_params(self._points.pop(0)) if self._points else {}
        budget = self._model_budget()
        use_model = budget is not None and self._rng.random() >= self._config["random_fraction"]
        params = self._sample(budget if use_model else None, fixed)
        self._suggested[trial_id] = params
        self._running.add(trial_id)
        config: Dict[str, Any] = {}
        for p in self._params:
            _set(config, p.path, p.from_optuna(params[p.name]))
        return config

    def _split(self, n: int) -> Optional[int]:
        """``n_good`` for ``n`` observations, or None if they are too few for a model."""
        n_min = self.min_points_in_model
        n_good = max(n_min, int(self._config["top_n_percent"] * n // 100))
        return n_good if n - n_good >= n_min else None

    def _model_budget(self) -> Optional[float]:
        """The largest budget with enough observations for a model."""
        for budget in sorted(self._observations, reverse=True):
            if self._split(len(self._observations[budget])) is not None:
                return budget
        return None

    def _sample(self, budget: Optional[float], fixed: Dict[str, Any]) -> Dict[str, Any]:
        optuna = _import_optuna()
        seed = self._rng.randrange(2 ** 31)
        dists = {p.name: p.dist for p in self._params}
        if budget is None:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            n_good = self._split(len(self._observations[budget]))
            with warnings.catch_warnings():  # multivariate TPE is "experimental" in Optuna
                warnings.simplefilter("ignore")
                sampler = optuna.samplers.TPESampler(
                    multivariate=True, n_startup_trials=0, seed=seed,
                    n_ei_candidates=self._config["num_samples"],
                    gamma=_Fixed(n_good), constant_liar=False,
                    warn_independent_sampling=False)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(sampler=sampler, direction="minimize")
        finally:
            optuna.logging.set_verbosity(verbosity)
        if budget is not None:
            study.add_trials([optuna.trial.create_trial(params=params, distributions=dists,
                                                        value=loss)
                              for params, loss in self._observations[budget]])
        if fixed:
            study.enqueue_trial(fixed, skip_if_exists=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(fixed_distributions=dists)
        return dict(trial.params)

    def _point_params(self, point: Dict[str, Any]) -> Dict[str, Any]:
        return point_to_params(self._params or [], point,
                               "TuneBOHB(points_to_evaluate=...): value for")

    # -- observations ----------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        info = result.get("hyperband_info")
        if not isinstance(info, dict) or trial_id not in self._suggested:
            return
        if info.get("decision") in ("PAUSE", "STOP"):
            self._running.discard(trial_id)
        else:
            self._running.add(trial_id)  # a paused trial runs again
        if "budget" in info:
            self._observe(trial_id, result, info["budget"])

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        self._running.discard(trial_id)
        if error or not result or trial_id not in self._suggested:
            return
        info = result.get("hyperband_info")
        if isinstance(info, dict):
            if "budget" in info:
                self._observe(trial_id, result, info["budget"])
            return
        budget = result.get("training_iteration")
        if isinstance(budget, numbers.Real) and not isinstance(budget, bool):
            self._observe(trial_id, result, budget)

    def _observe(self, trial_id: str, result: Dict[str, Any], budget: Any) -> None:
        value = result.get(self._metric)
        if not isinstance(value, numbers.Real) or isinstance(value, bool) \
                or not math.isfinite(value):
            return
        loss = float(value) if self._mode == "min" else -float(value)
        budget = float(budget)
        observations = self._observations.setdefault(budget, [])
        key = (trial_id, budget)
        if key in self._seen:  # seen again (a paused trial's result on completion)
            observations[self._seen[key]] = (self._suggested[trial_id], loss)
            return
        self._seen[key] = len(observations)
        observations.append((self._suggested[trial_id], loss))

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None,
                            budget: float = 1.0) -> None:
        """Add an evaluation made elsewhere, as an observation at ``budget``."""
        self._require_setup()
        if error or pruned:
            return
        params = self._point_params(parameters)
        missing = sorted(p.name for p in self._params if p.name not in params)
        if missing:
            raise ValueError(f"TuneBOHB.add_evaluated_point: the point lacks {missing}; "
                             "give a value for every parameter")
        loss = float(value) if self._mode == "min" else -float(value)
        self._observations.setdefault(float(budget), []).append((params, loss))

    def observations(self) -> Dict[float, int]:
        """How many observations each budget holds."""
        return {b: len(obs) for b, obs in sorted(self._observations.items())}


class _Fixed:
    """TPE's ``gamma``: the number of good observations, fixed by BOHB's split."""

    def __init__(self, n_good: int) -> None:
        self.n_good = n_good

    def __call__(self, n: int) -> int:
        return min(self.n_good, n)


def _check_bohb_config(bohb_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    config = dict(_DEFAULTS)
    if bohb_config is None:
        return config
    if not isinstance(bohb_config, dict):
        raise TypeError(f"TuneBOHB(bohb_config={bohb_config!r}): use a dict with keys "
                        f"{sorted(_DEFAULTS)}")
    unknown = sorted(set(bohb_config) - set(_DEFAULTS) - set(_IGNORED))
    if unknown:
        raise ValueError(f"TuneBOHB(bohb_config=...): unknown keys {unknown}; accepted: "
                         f"{sorted(_DEFAULTS)} (and {list(_IGNORED)}, ignored)")
    ignored = sorted(set(bohb_config) & set(_IGNORED))
    if ignored:
        logger.warning("TuneBOHB(bohb_config=...): %s ignored; Optuna's TPE chooses its own "
                       "bandwidths", ignored)
    for key in _DEFAULTS:
        if key in bohb_config:
            config[key] = bohb_config[key]

    def bad(key: str, accepted: str) -> ValueError:
        return ValueError(f"TuneBOHB(bohb_config={{'{key}': {config[key]!r}}}): {accepted}")

    n_min = config["min_points_in_model"]
    if n_min is not None and (not isinstance(n_min, int) or isinstance(n_min, bool)
                              or n_min < 1):
        raise bad("min_points_in_model", "use an int >= 1 or None (parameters + 1)")
    top = config["top_n_percent"]
    if not isinstance(top, numbers.Real) or isinstance(top, bool) or not 0 < top < 100:
        raise bad("top_n_percent", "use a number between 0 and 100 (exclusive)")
    num = config["num_samples"]
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise bad("num_samples", "use an int >= 1")
    frac = config["random_fraction"]
    if not isinstance(frac, numbers.Real) or isinstance(frac, bool) or not 0 <= frac <= 1:
        raise bad("random_fraction", "use a number between 0 and 1")
    return config
