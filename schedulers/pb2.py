"""Population based bandits, PB2 (Parker-Holder, Nguyen and Roberts, "Provably Efficient
Online Hyperparameter Optimization with Population-Based Bandits", NeurIPS 2020,
https://arxiv.org/abs/2002.02518), with Ray Tune's arguments.

PB2 is PBT with a model-based explore step. Exploit is PBT's (a weak trial restarts from
a strong trial's checkpoint); the new config is not a random perturbation but the
maximiser of a GP-bandit acquisition:

* The data: at every perturbation point of a trial, the change of its score per unit of
  ``time_attr`` since its previous point, with the config it trained with and the time
  and score it started from: ``(t, score_before, x) -> (score - score_before) / dt``.
* The model: a Gaussian process (scikit-learn's ``GaussianProcessRegressor``) whose kernel
  is the time-varying one of the paper (TV-GP-UCB, Bogunovic et al. 2016): a squared
  exponential over ``(score_before, x)`` times ``(1 - eps) ** (|t - t'| / 2)``, which is
  ``exp(-|t - t'| / l)``, a Matern 1/2 kernel on the time, with ``l`` (so ``eps``)
  learnt by maximum likelihood like the other length scales. Old data counts less.
* The acquisition: UCB, ``mean(x) + sqrt(beta_t) * sd(x)`` at the donor's time and score,
  maximised over the box ``hyperparam_bounds``. The trials still training are a
  batch of pending points (GP-BUCB, Desautels et al. 2014, as the paper does): ``sd``
  is that of the GP also conditioned on them, with their values hallucinated at the
  mean, so PB2 does not pick what others already explore. ``beta_t = 2 log(d t^2
  pi^2 / (6 delta))`` with ``delta = 0.1`` (GP-UCB's rate; ``d`` the number of
  hyperparameters, ``t`` the number of observations).

Until two observations exist, the new config is drawn uniformly from the bounds.
scikit-learn is imported only when PB2 first fits its model.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from tune_core.search.sample import Float, Integer

from schedulers.async_hyperband import _bad
from schedulers.pbt import (
    _DONE, Path, PopulationBasedTraining, _get, _has, _is_number, _path_str, _set,
    _TrialState)

__all__ = ["PB2"]

#: At most this many observations feed the GP (the newest): fitting is cubic in them and
#: blocks the driver (about a second at this size; Ray Tune keeps 1000).
MAX_OBSERVATIONS = 250
_DELTA = 0.1
_NUM_CANDIDATES = 1000


def _flatten_bounds(owner: str, bounds: Any, prefix: Path = ()) -> List[Tuple[Path, float, float]]:
    out: List[Tuple[Path, float, float]] = []
    for key, value in bounds.items():
        path = prefix + (key,)
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{owner}(hyperparam_bounds{_path_str(path)}={{}}) is not "
                                 "valid: a nested dict needs at least one key")
            out += _flatten_bounds(owner, value, path)
            continue
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
            _is_number(v) for v in value) and value[0] < value[1]
        if not ok:
            raise ValueError(f"{owner}(hyperparam_bounds{_path_str(path)}={value!r}) is not "
                             "valid: use [low, high], two numbers with low < high")
        out.append((path, float(value[0]), float(value[1])))
    return out


def _mutations_for(bounds: Mapping[str, Any]) -> Dict[str, Any]:
    """The search-space domains of the bounds: what a trial lacking a key starts with."""
    out: Dict[str, Any] = {}
    for key, value in bounds.items():
        if isinstance(value, Mapping):
            out[key] = _mutations_for(value)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            out[key] = Integer("randint", "uniform", value[0], value[1] + 1)
        else:
            out[key] = Float("uniform", "uniform", float(value[0]), float(value[1]))
    return out


def ucb_suggest(observations: Sequence[Tuple[float, float, Sequence[float], float]],
                query: Tuple[float, float], pending: Sequence[Sequence[float]],
                seed: int) -> List[float]:
    """The point of ``[0, 1]^d`` that maximises the time-varying GP-UCB acquisition.

    Args:
        observations: ``(t, score_before, x, y)``: at time ``t`` a trial at
            ``score_before`` trained with ``x`` (in ``[0, 1]^d``) and its score changed
            by ``y`` per unit of time.
        query: ``(t, score_before)`` where the new config starts (the donor's).
        pending: configs (in ``[0, 1]^d``) other trials train with from ``query`` on.
        seed: for the random candidates of the acquisition's maximisation.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
    except ImportError as exc:
        raise ImportError("PB2 fits its model with scikit-learn, which is not installed: "
                          "pip install scikit-learn") from exc
    import numpy as np
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    d = len(observations[0][2])
    data = np.array([[t, r, *x] for t, r, x, _ in observations], dtype=float)
    y = np.array([o[3] for o in observations], dtype=float)
    # Time and score to [0, 1] over the data and the query (the configs already are).
    head = np.vstack([data[:, :2], np.asarray([query], dtype=float)])
    low, span = head.min(axis=0), np.ptp(head, axis=0)
    span[span == 0] = 1.0

    def rows(t_r: Any, xs: Any) -> Any:
        xs = np.atleast_2d(xs)
        t_r = np.broadcast_to((np.asarray(t_r, dtype=float) - low) / span, (len(xs), 2))
        return np.hstack([t_r, xs])

    X = np.hstack([(data[:, :2] - low) / span, data[:, 2:]])
    fixed, free = [1e5, 1e5], [1e-2, 1e2]
    # Squared exponential over (score_before, x); the time's length scale pinned huge.
    se = RBF(length_scale=[1e5] + [1.0] * (d + 1),
             length_scale_bounds=[fixed] + [free] * (d + 1))
    # exp(-|t - t'| / l) = (1 - eps) ** (|t - t'| / 2): the other dimensions pinned huge.
    decay = Matern(length_scale=[1.0] + [1e5] * (d + 1), nu=0.5,
                   length_scale_bounds=[[1e-2, 1e3]] + [fixed] * (d + 1))
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * se * decay + WhiteKernel(1e-2, (1e-6, 1.0))
    # One BLAS thread: these matrices are small, and threads only contend (10x slower on
    # a busy machine).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed).fit(X, y)
        batch = gp
        if len(pending):
            # GP-BUCB: the variance given the pending points too (their values at the mean).
            P = rows(query, np.asarray(pending, dtype=float))
            batch = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None).fit(
                np.vstack([X, P]), np.concatenate([y, gp.predict(P)]))
    beta = 2.0 * math.log(max(d, 1) * len(y) ** 2 * math.pi ** 2 / (6.0 * _DELTA))

    def negative_ucb(xs: Any) -> Any:
        points = rows(query, xs)
        mean = gp.predict(points)
        _, sd = batch.predict(points, return_std=True)
        return -(mean + math.sqrt(beta) * sd)

    rng = np.random.default_rng(seed)
    candidates = rng.random((_NUM_CANDIDATES, d))
    with threadpool_limits(limits=1):
        best = candidates[int(np.argmin(negative_ucb(candidates)))]
        refined = minimize(lambda x: float(negative_ucb(x)[0]), best, method="L-BFGS-B",
                           bounds=[(0.0, 1.0)] * d)
        x = refined.x if refined.success and refined.fun <= negative_ucb(best)[0] else best
    return [float(min(max(v, 0.0), 1.0)) for v in x]


class PB2(PopulationBasedTraining):
    """Population based bandits: PBT whose explore step is a time-varying GP-UCB bandit.

    The schedule (perturbation points, quantiles, exploit from a strong trial's newest
    checkpoint, ``synch``) is :class:`~schedulers.pbt.PopulationBasedTraining`'s. The
    config a weak trial restarts with is the donor's, with the hyperparameters of
    ``hyperparam_bounds`` chosen by the GP bandit described in this module's docstring
    (within the bounds; integers stay integers). A key the trial's config lacks is
    drawn uniformly from its bounds when the trial is created. The policy is logged as
    PBT's, in ``pb2_global.txt`` and ``pb2_policy_<trial_id>.txt``.

    Args:
        time_attr: The result field that measures progress (monotonically increasing).
        metric: The metric to optimise; None takes TuneConfig's.
        mode: ``"min"`` or ``"max"``; None takes TuneConfig's.
        perturbation_interval: Time (in ``time_attr`` units, > 0) between perturbations.
        hyperparam_bounds: Config key to ``[low, high]`` (nested dicts for nested
            keys): the continuous box the bandit searches.
        quantile_fraction: The share of trials in each of the bottom and top quantiles,
            in [0, 0.5].
        log_config: Write the policy into the experiment directory.
        require_attrs: A result without ``time_attr`` or ``metric`` is an error.
        synch: Perturb the population together (see PBT).
        custom_explore_fn: ``f(config) -> config``, applied after the bandit's choice.
        burn_in_period: No perturbation before this time (>= 0).
        seed: Seeds the scheduler's random choices.

    Example::

        pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max",
                  perturbation_interval=10,
                  hyperparam_bounds={"lr": [1e-4, 1e-1], "batch_size": [32, 256]})
    """

    _LOG_PREFIX = "pb2"

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: Optional[Dict[str, Any]] = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        burn_in_period: float = 0.0,
        seed: Optional[int] = None,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(hyperparam_bounds, Mapping) or not hyperparam_bounds:
            raise _bad(owner, "hyperparam_bounds", hyperparam_bounds,
                       'use a dict of config key to [low, high], e.g. {"lr": [1e-4, 1e-1]}')
        self._bounds = _flatten_bounds(owner, hyperparam_bounds)
        super().__init__(
            time_attr=time_attr, metric=metric, mode=mode,
            perturbation_interval=perturbation_interval, burn_in_period=burn_in_period,
            hyperparam_mutations=_mutations_for(hyperparam_bounds),
            quantile_fraction=quantile_fraction, custom_explore_fn=custom_explore_fn,
            log_config=log_config, require_attrs=require_attrs, synch=synch, seed=seed)
        self._hyperparam_bounds = hyperparam_bounds
        # (t, score_before, x in [0, 1]^d, score change per unit of time), newest last
        self._observations: List[Tuple[float, float, Tuple[float, ...], float]] = []
        # trial_id -> (time, score, x) of its latest perturbation point
        self._last_point: Dict[str, Tuple[float, float, Tuple[float, ...]]] = {}
        self.num_model_fits = 0

    # --- the data ---------------------------------------------------------------------------------
    def _x(self, config: Mapping[str, Any]) -> Optional[Tuple[float, ...]]:
        """The config's hyperparameters scaled into [0, 1] by the bounds (None if missing)."""
        xs = []
        for path, low, high in self._bounds:
            if not _has(config, path) or not _is_number(_get(config, path)):
                return None
            xs.append(min(max((float(_get(config, path)) - low) / (high - low), 0.0), 1.0))
        return tuple(xs)

    def _perturbation_point(self, trial_id: str, st: _TrialState, time: float,
                            value: float) -> None:
        super()._perturbation_point(trial_id, st, time, value)
        x = self._x(st.config)
        if x is None or st.score is None or not math.isfinite(st.score):
            return
        previous = self._last_point.get(trial_id)
        if previous is not None and previous[2] == x and time > previous[0]:
            change = (st.score - previous[1]) / (time - previous[0])
            self._observations.append((time, previous[1], x, change))
            del self._observations[:-MAX_OBSERVATIONS]
        self._last_point[trial_id] = (time, st.score, x)

    def _on_exploit(self, trial_id: str, donor_id: str, config: Dict[str, Any]) -> None:
        # The trial goes on from the donor's point with the new config: its next change
        # is measured from there.
        donor = self._last_point.get(donor_id)
        x = self._x(config)
        if donor is not None and x is not None:
            self._last_point[trial_id] = (donor[0], donor[1], x)
        else:
            self._last_point.pop(trial_id, None)

    # --- explore ----------------------------------------------------------------------------------
    def _new_config(self, trial_id: str, donor_id: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
        config = copy.deepcopy(self._trials[donor_id].config)
        donor_point = self._last_point.get(donor_id)
        if len(self._observations) < 2 or donor_point is None:
            xs = [self._rng.random() for _ in self._bounds]
            how = "random"
        else:
            pending = [point[2] for tid, point in self._last_point.items()
                       if tid != trial_id and self._trials[tid].status != _DONE]
            xs = ucb_suggest(self._observations, donor_point[:2], pending,
                             seed=self._rng.getrandbits(32))
            self.num_model_fits += 1
            how = "gp-ucb"
        operations = {}
        for (path, low, high), x in zip(self._bounds, xs):
            value: Any = low + x * (high - low)
            old = _get(config, path) if _has(config, path) else None
            if isinstance(old, int) and not isinstance(old, bool):
                value = int(min(max(round(value), math.ceil(low)), math.floor(high)))
            _set(config, path, value)
            operations["/".join(path)] = how
        return self._custom_explore(config), operations

    def debug_string(self) -> str:
        return (f"PB2: {self.num_perturbations} perturbs, {len(self._observations)} "
                f"observations, {self.num_model_fits} model fits")
