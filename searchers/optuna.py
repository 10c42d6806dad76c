"""Optuna as a tune searcher (Ray Tune's ``ray.tune.search.optuna.OptunaSearch``).

The search space is converted once, before the first trial, and the conversion is
total or refuses: every tune domain becomes an Optuna distribution whose samples map
back to exactly the values the tune domain could produce, and a domain Optuna cannot
represent (``grid_search``, ``sample_from``, ``randn``/``qrandn``, a ``choice`` whose
categories hold domains) raises a ``ValueError`` naming the parameter.

How domains map:

* ``uniform`` / ``loguniform`` -> ``FloatDistribution`` (``log=True`` for log domains;
  the log base does not change the distribution).
* ``quniform`` -> ``FloatDistribution(step=q)`` over the multiples of ``q`` in the bounds.
* ``qloguniform`` -> a log ``FloatDistribution``, rounded to a multiple of ``q`` after
  sampling (Optuna has no log-and-step floats); Optuna records the unrounded value.
* ``randint`` / ``lograndint`` -> ``IntDistribution`` (upper bound exclusive, as in tune).
* ``qrandint`` -> ``IntDistribution(step=q)``; ``qlograndint`` with ``q > 1`` -> a log
  ``IntDistribution`` over ``k`` with the value ``k * q`` (what tune samples, too).
* ``choice`` -> ``CategoricalDistribution``; when a category is not a None/bool/int/
  float/str, or two categories compare equal (``1``, ``1.0``, ``True``), Optuna sees the
  category's index and the trial gets the category itself (lists, dicts, mixed types
  come back exactly as given).
* Nested dicts are flattened to ``"outer/inner"`` names and rebuilt; constants are left
  to the ``SearchGenerator``, which merges them into every config.

Constrained search: ``constraints=["mem_over", ...]`` names result keys whose final
values are constraints (feasible when <= 0); they are set on the Optuna trial with
``Trial.set_constraint`` (Optuna 5's way), which constraint-aware samplers (TPE, NSGA-II,
GP) read. The older ``constraints_func`` (called with each finished
``optuna.trial.FrozenTrial``; deprecated since Optuna 5.0) goes to the default sampler
(TPE for one objective, NSGA-II for several); with your own ``sampler`` give it to that
sampler instead. The final result's scalar values are stored on the Optuna trial as
``user_attrs["tune_result"]`` for such a function to read.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from tune_core.search.sample import Categorical, Domain, Float, Function, Integer
from tune_core.search.searcher import Searcher

__all__ = ["OptunaSearch"]

logger = logging.getLogger(__name__)

Path = Tuple[Any, ...]
_SIMPLE = (type(None), bool, int, float, str)


def _import_optuna():
    try:
        import optuna
    except ImportError as e:  # polite: say what to install
        raise ImportError("OptunaSearch needs Optuna: pip install optuna") from e
    return optuna


def _name(path: Path) -> str:
    return "/".join(str(p) for p in path)


class _Param:
    """One converted parameter: its Optuna distribution and the value maps both ways."""

    def __init__(self, path: Path, dist: Any, from_optuna: Optional[Callable[[Any], Any]] = None,
                 to_optuna: Optional[Callable[[Any], Any]] = None) -> None:
        self.path, self.name, self.dist = path, _name(path), dist
        self._from = from_optuna
        self._to = to_optuna

    def from_optuna(self, raw: Any) -> Any:
        return self._from(raw) if self._from else raw

    def to_optuna(self, value: Any) -> Any:
        return self._to(value) if self._to else value


# Module-level callables keep the converted space picklable with plain pickle.
class _Quantize:
    def __init__(self, q: float, lo: float, hi: float) -> None:
        self.q, self.lo, self.hi = q, lo, hi

    def __call__(self, raw: float) -> float:
        value = min(max(round(raw / self.q) * self.q, self.lo), self.hi)
        digits = max(0, -int(math.floor(math.log10(self.q)))) + 6 if self.q < 1 else 9
        return float(round(value, digits))


class _Scale:
    def __init__(self, q: int) -> None:
        self.q = q

    def __call__(self, k: int) -> int:
        return int(k) * self.q


class _Unscale:
    def __init__(self, q: int) -> None:
        self.q = q

    def __call__(self, value: int) -> int:
        if value % self.q:
            raise ValueError(f"{value!r} is not a multiple of q={self.q}")
        return value // self.q


class _Index:
    def __init__(self, categories: List[Any]) -> None:
        self.categories = categories

    def __call__(self, i: int) -> Any:
        return copy.deepcopy(self.categories[i])


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))


class _ToIndex:
    def __init__(self, categories: List[Any]) -> None:
        self.categories = categories

    def __call__(self, value: Any) -> int:
        for i, c in enumerate(self.categories):
            if _same(c, value):
                return i
        raise ValueError(f"{value!r} is not one of the categories {self.categories!r}")


def _contains_domain(value: Any) -> bool:
    if isinstance(value, Domain) or (isinstance(value, dict) and "grid_search" in value):
        return True
    if isinstance(value, dict):
        return any(_contains_domain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_domain(v) for v in value)
    return False


def _refuse(path: Path, what: str, why: str) -> ValueError:
    return ValueError(f"OptunaSearch cannot convert parameter {_name(path)!r} ({what}): {why}")


def _convert_domain(path: Path, d: Domain, optuna: Any) -> _Param:
    dists = optuna.distributions
    if d.problem:
        raise ValueError(f"parameter {_name(path)!r}: {d.problem}")
    if isinstance(d, Function):
        raise _refuse(path, repr(d), "Optuna cannot represent a value computed by a "
                      "function; use a define-by-run function as the OptunaSearch space")
    if isinstance(d, Float):
        if d.kind == "normal":
            raise _refuse(path, repr(d), "Optuna has no normal distribution; use "
                          "uniform/loguniform bounds instead")
        if d.q is None:
            return _Param(path, dists.FloatDistribution(float(d.lower), float(d.upper),
                                                        log=d.kind == "log"))
        lo = math.ceil(d.lower / d.q - 1e-9) * d.q
        hi = math.floor(d.upper / d.q + 1e-9) * d.q
        quant = _Quantize(d.q, lo, hi)
        if quant(lo) == quant(hi):  # a single multiple of q fits
            return _Param(path, dists.CategoricalDistribution([quant(lo)]))
        if d.kind == "log":
            # Optuna has no log float with a step: sample log-uniformly, then round.
            return _Param(path, dists.FloatDistribution(lo, hi, log=True), from_optuna=quant)
        return _Param(path, dists.FloatDistribution(quant(lo), quant(hi), step=d.q),
                      from_optuna=quant)
    if isinstance(d, Integer):
        q = d.q or 1
        lo, hi = Integer._index_range(d.lower, d.upper, q)  # k in range(lo, hi)
        log = d.kind == "log"
        if q == 1:
            return _Param(path, dists.IntDistribution(lo, hi - 1, log=log))
        if log:  # no log ints with a step in Optuna: sample k log-uniformly
            return _Param(path, dists.IntDistribution(lo, hi - 1, log=True),
                          from_optuna=_Scale(q), to_optuna=_Unscale(q))
        return _Param(path, dists.IntDistribution(lo * q, (hi - 1) * q, step=q))
    if isinstance(d, Categorical):
        cats = list(d.categories)
        for i, c in enumerate(cats):
            if _contains_domain(c):
                raise _refuse(path, f"choice with a domain in category {i}", "conditional "
                              "spaces need a define-by-run function as the OptunaSearch space")
        plain = all(type(c) in _SIMPLE for c in cats) and not any(
            a == b or (isinstance(a, float) and a != a)
            for i, a in enumerate(cats) for b in cats[i + 1:])
        if plain and not any(isinstance(c, float) and c != c for c in cats):
            return _Param(path, dists.CategoricalDistribution(cats))
        return _Param(path, dists.CategoricalDistribution(list(range(len(cats)))),
                      from_optuna=_Index(cats), to_optuna=_ToIndex(cats))
    raise _refuse(path, repr(d), f"unknown domain type {type(d).__name__}")


def convert_search_space(space: Dict[str, Any]) -> List[_Param]:
    """The Optuna parameters of a tune search space (constants are skipped).

    Raises:
        ValueError: naming the parameter path, for a domain Optuna cannot represent.
    """
    optuna = _import_optuna()
    params: List[_Param] = []

    def visit(value: Any, path: Path) -> None:
        if isinstance(value, dict) and "grid_search" in value:
            raise _refuse(path, f"grid_search({value['grid_search']!r})", "Optuna samples "
                          "and cannot enumerate a grid; use tune.choice, or Optuna's "
                          "GridSampler as the sampler with a distribution space")
        if isinstance(value, Domain):
            params.append(_convert_domain(path, value, optuna))
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(v, path + (k,))
        elif isinstance(value, (list, tuple)) and _contains_domain(value):
            raise _refuse(path, "a list holding domains", "put the values in a dict "
                          "(nested dicts are supported) or use a define-by-run function")

    visit(space, ())
    seen: Dict[str, Path] = {}
    for p in params:
        if p.name in seen:
            raise ValueError(f"OptunaSearch: parameters {seen[p.name]!r} and {p.path!r} "
                             f"both flatten to the name {p.name!r}; rename one")
        seen[p.name] = p.path
    return params


def point_to_params(params: List[_Param], point: Dict[str, Any],
                    where: str) -> Dict[str, Any]:
    """The Optuna values of a (full or partial) tune config, checked against the space.

    Raises:
        ValueError: ``"{where} 'name': why"`` for a value outside its parameter's domain.
    """
    out: Dict[str, Any] = {}
    for p in params:
        found, value = _get(point, p.path)
        if not found:
            continue
        try:
            out[p.name] = raw = p.to_optuna(value)
            if not p.dist._contains(p.dist.to_internal_repr(raw)):
                raise ValueError(f"{value!r} is outside {p.dist!r}")
        except ValueError as e:
            raise ValueError(f"{where} {p.name!r}: {e}") from None
    return out


def _unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split("/")
        d = out
        for part in parts[:-1]:
            d = d.setdefault(part, {})
        d[parts[-1]] = value
    return out


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _set(config: Dict[str, Any], path: Path, value: Any) -> None:
    for p in path[:-1]:
        config = config.setdefault(p, {})
    config[path[-1]] = value


def _get(config: Any, path: Path) -> Tuple[bool, Any]:
    for p in path:
        if not isinstance(config, dict) or p not in config:
            return False, None
        config = config[p]
    return True, config


class OptunaSearch(Searcher):
    """Suggests configurations with an Optuna study (ask/tell).

    Args:
        space: a tune search space (dict of domains, nested dicts allowed), a dict of
            Optuna distributions (names with "/" become nested dicts), or a define-by-run
            function ``f(trial) -> Optional[dict]`` that calls ``trial.suggest_*`` and may
            return constants to add to the config. None takes the Tuner's ``param_space``.
        metric: the result key to optimise, or a list of keys (multi-objective).
        mode: "min" or "max", or a list of them matching ``metric``.
        points_to_evaluate: configs (full or partial) to try first, in order.
        sampler: any Optuna sampler. Default: TPE (seeded with ``seed``) for one
            objective, NSGA-II for several.
        seed: seed of the default sampler (ignored with a warning if ``sampler`` is given).
        evaluated_rewards: results of ``points_to_evaluate`` already known; those points
            are added to the study as completed trials instead of being run.
        constraints_func: passed to the default sampler (deprecated by Optuna 5 in favour
            of ``constraints``; see the module docstring).
        constraints: result keys whose final values are constraints (feasible when
            <= 0), set on the Optuna trial with ``Trial.set_constraint`` before it is told;
            samplers that support constraints (TPE, NSGA-II, GP) use them.
    """

    def __init__(self, space: Union[Dict[str, Any], Callable[[Any], Optional[Dict]], None] = None,
                 metric: Union[str, List[str], None] = None,
                 mode: Union[str, List[str], None] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 sampler: Any = None, seed: Optional[int] = None,
                 evaluated_rewards: Optional[List[Any]] = None, *,
                 constraints_func: Optional[Callable[[Any], Sequence[float]]] = None,
                 constraints: Optional[Sequence[str]] = None) -> None:
        super().__init__(metric=None, mode=None)
        _import_optuna()
        self._metric, self._mode = metric, mode
        self._check_metric_mode()
        if sampler is not None and seed is not None:
            logger.warning("OptunaSearch(seed=%r) only seeds the default sampler; seed the "
                           "sampler you passed instead", seed)
        if sampler is not None and constraints_func is not None:
            raise ValueError("OptunaSearch(sampler=..., constraints_func=...): give "
                             "constraints_func to your sampler (e.g. TPESampler("
                             "constraints_func=...)) instead")
        if evaluated_rewards is not None:
            if points_to_evaluate is None or len(points_to_evaluate) != len(evaluated_rewards):
                raise ValueError(
                    f"OptunaSearch(evaluated_rewards=...) needs points_to_evaluate of the "
                    f"same length; got {len(evaluated_rewards)} rewards and "
                    f"{0 if points_to_evaluate is None else len(points_to_evaluate)} points")
            if callable(space):
                raise ValueError("OptunaSearch(evaluated_rewards=...) needs a tune or Optuna "
                                 "distribution space, not a define-by-run function (the "
                                 "distributions of the points are unknown)")
        self._sampler = sampler
        self._seed = seed
        self._constraints_func = constraints_func
        if isinstance(constraints, str):
            constraints = [constraints]
        self._constraints = list(constraints or [])
        self._points = copy.deepcopy(list(points_to_evaluate or []))
        self._rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        self._space: Any = None          # "tune" params list, "dists" dict, or a function
        self._space_kind: Optional[str] = None
        self._study = None
        self._live: Dict[str, Any] = {}      # trial_id -> optuna Trial still running
        self._told: Dict[str, Dict[str, Any]] = {}  # trial_id -> finished params/dists
        self._numbers: Dict[str, int] = {}   # trial_id -> optuna trial number
        self._steps: Dict[str, int] = {}     # trial_id -> last reported step
        if space is not None:
            self._set_space(space)
        self._maybe_setup()

    # -- setup -----------------------------------------------------------------------
    def _check_metric_mode(self) -> None:
        metric, mode = self._metric, self._mode
        multi = isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple))
        if multi:
            if not (isinstance(metric, (list, tuple)) and isinstance(mode, (list, tuple))
                    and len(metric) == len(mode) and len(metric) > 0):
                raise ValueError(f"OptunaSearch(metric={metric!r}, mode={mode!r}): for "
                                 "several objectives give lists of the same length")
            modes = list(mode)
        else:
            modes = [mode]
        for m in modes:
            if m not in (None, "min", "max"):
                raise ValueError(f'OptunaSearch(mode={mode!r}): use "min" or "max" '
                                 "(or a list of them)")

    @property
    def _metrics(self) -> List[str]:
        return list(self._metric) if isinstance(self._metric, (list, tuple)) else [self._metric]

    @property
    def _modes(self) -> List[str]:
        return list(self._mode) if isinstance(self._mode, (list, tuple)) else [self._mode]

    def _set_space(self, space: Any) -> None:
        optuna = _import_optuna()
        if callable(space):
            self._space_kind, self._space = "define_by_run", space
        elif isinstance(space, dict) and space and all(
                isinstance(v, optuna.distributions.BaseDistribution) for v in space.values()):
            self._space_kind, self._space = "dists", dict(space)
        elif isinstance(space, dict):
            if any(isinstance(v, optuna.distributions.BaseDistribution)
                   for v in _flatten(space).values()):
                raise ValueError("OptunaSearch(space=...): mix of Optuna distributions and "
                                 "other values; use only Optuna distributions (flat, names "
                                 "with '/') or only tune domains")
            self._space_kind, self._space = "tune", convert_search_space(space)
        else:
            raise TypeError(f"OptunaSearch(space={space!r}): use a dict of tune domains, a "
                            "dict of Optuna distributions, or a function f(trial)")

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._space is not None and config and _contains_domain(config):
            raise ValueError("OptunaSearch got a space in its constructor and the Tuner's "
                             "param_space holds domains too; give the space in one place")
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._check_metric_mode()
        if self._space is None and config:
            self._set_space(config)
        self._maybe_setup()
        if self._study is None:
            self._require_setup()
        return True

    def _require_setup(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError("OptunaSearch needs a metric and a mode: pass OptunaSearch("
                             "metric=..., mode=...) or set TuneConfig(metric=..., mode=...)")
        if self._space is None:
            raise ValueError("OptunaSearch has no search space: pass OptunaSearch(space=...) "
                             "or a param_space with domains to the Tuner")

    def _dists(self) -> Dict[str, Any]:
        if self._space_kind == "tune":
            return {p.name: p.dist for p in self._space}
        if self._space_kind == "dists":
            return dict(self._space)
        return {}

    def _maybe_setup(self) -> None:
        if self._study is not None or self._space is None or not self._metric or not self._mode:
            return
        optuna = _import_optuna()
        multi = isinstance(self._metric, (list, tuple))
        sampler = self._sampler
        if sampler is None:
            kwargs = {"seed": self._seed, "constraints_func": self._constraints_func}
            sampler = (optuna.samplers.NSGAIISampler(**kwargs) if multi
                       else optuna.samplers.TPESampler(**kwargs))
        directions = ["minimize" if m == "min" else "maximize" for m in self._modes]
        self._study = optuna.create_study(sampler=sampler, directions=directions)
        if self._rewards is not None:
            for point, reward in zip(self._points, self._rewards):
                self.add_evaluated_point(point, reward)
        else:
            for point in self._points:
                self._study.enqueue_trial(self._point_to_params(point))
        self._points, self._rewards = [], None

    def _point_to_params(self, point: Dict[str, Any]) -> Dict[str, Any]:
        if self._space_kind != "tune":
            return _flatten(point)
        return point_to_params(self._space, point, "OptunaSearch: point value for")

    # -- the Searcher interface --------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if self._study is None:
            self._require_setup()
            self._maybe_setup()
        if self._space_kind == "define_by_run":
            trial = self._study.ask()
            extra = self._space(trial)
            if extra is not None and not isinstance(extra, dict):
                raise TypeError(f"OptunaSearch define-by-run function returned {extra!r}; "
                                "it must return None or a dict of constants")
            config = _unflatten(dict(trial.params))
            if extra:
                config.update(copy.deepcopy(extra))
        else:
            dists = self._dists()
            trial = self._study.ask(fixed_distributions=dists)
            if self._space_kind == "tune":
                config = {}
                for p in self._space:
                    _set(config, p.path, p.from_optuna(trial.params[p.name]))
            else:
                config = _unflatten(dict(trial.params))
        self._live[trial_id] = trial
        self._numbers[trial_id] = trial.number
        return config

    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        if trial is None or isinstance(self._metric, (list, tuple)):
            return  # Optuna's intermediate values are single-objective only
        value = result.get(self._metric)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return
        step = result.get("training_iteration")
        if not isinstance(step, int) or isinstance(step, bool):
            step = self._steps.get(trial_id, 0) + 1
        self._steps[trial_id] = step
        trial.report(float(value), step)

    def _values(self, result: Optional[Dict[str, Any]]) -> Optional[List[float]]:
        if not result:
            return None
        values = []
        for m in self._metrics:
            v = result.get(m)
            if not isinstance(v, numbers.Real) or isinstance(v, bool):
                return None
            values.append(float(v))
        return values

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        optuna = _import_optuna()
        values = None if error else self._values(result)
        trial = self._live.pop(trial_id, None)
        if trial is None:
            done = self._told.get(trial_id)
            if done is not None and values is not None:
                # A trial told FAIL earlier and restarted (restart_errored) has now
                # finished: record its result as a completed trial with the same params.
                self._add_trial(done["params"], done["dists"], values, result)
            return
        if values is None and not error and result:
            logger.warning("OptunaSearch: trial %s ended without a number for %r in its "
                           "result; it is told to Optuna as failed", trial_id, self._metric)
        if result and values is not None:
            trial.set_user_attr("tune_result", _scalars(result))
            for key, value in self._constraint_values(result).items():
                trial.set_constraint(key, value)
        frozen = self._study.tell(
            trial, values if values is None or len(values) > 1 else values[0],
            state=None if values is not None else optuna.trial.TrialState.FAIL)
        self._told[trial_id] = {"params": dict(frozen.params),
                                "dists": dict(frozen.distributions)}

    def _constraint_values(self, result: Dict[str, Any]) -> Dict[str, float]:
        out = {}
        for key in self._constraints:
            value = result.get(key)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                logger.warning("OptunaSearch: result has no number for the constraint %r; "
                               "the trial counts as infeasible", key)
                value = math.inf
            out[key] = float(value)
        return out

    def _add_trial(self, params, dists, values, result=None) -> None:
        optuna = _import_optuna()
        self._study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, values=values,
            user_attrs={"tune_result": _scalars(result)} if result else None,
            constraints=self._constraint_values(result or {}) or None))

    def add_evaluated_point(self, parameters: Dict[str, Any], value: Any, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        """Add a finished evaluation (tune-style config and its metric value[s])."""
        optuna = _import_optuna()
        if self._study is None:
            self._require_setup()
            self._maybe_setup()
        if self._space_kind == "define_by_run":
            raise ValueError("OptunaSearch.add_evaluated_point needs a tune or Optuna "
                             "distribution space, not a define-by-run function")
        params = self._point_to_params(parameters)
        dists = {k: v for k, v in self._dists().items() if k in params}
        missing = sorted(set(self._dists()) - set(params))
        if missing:
            raise ValueError(f"OptunaSearch.add_evaluated_point: the point lacks "
                             f"{missing}; give a value for every parameter")
        state = (optuna.trial.TrialState.FAIL if error else
                 optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE)
        values = None
        if state == optuna.trial.TrialState.COMPLETE:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(values) != len(self._metrics):
                raise ValueError(f"OptunaSearch: evaluated reward {value!r} does not match "
                                 f"metric {self._metric!r}")
        self._study.add_trial(optuna.trial.create_trial(
            state=state, params=params, distributions=dists, values=values,
            intermediate_values=dict(enumerate(intermediate_values or []))))

    # -- state -----------------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        # cloudpickle: a define-by-run function may be a lambda or a local function.
        import os

        import cloudpickle

        tmp = checkpoint_path + ".tmp"
        with open(tmp, "wb") as f:
            cloudpickle.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    @property
    def study(self):
        """The Optuna study (None until metric, mode and space are known)."""
        return self._study


def _scalars(result: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {k: v for k, v in (result or {}).items()
            if isinstance(v, (int, float, str, bool)) or v is None}
