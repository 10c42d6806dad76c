"""Regularized evolution as a tune searcher (Syne Tune's ``RegularizedEvolution``).

Real, Aggarwal, Huang and Le, "Regularized Evolution for Image Classifier Architecture
Search" (AAAI 2019, arXiv:1802.01548): an evolutionary search that needs no model and
no extra library, and is hard to beat on discrete and mixed spaces.

How it searches:

* A *population* holds at most ``population_size`` evaluated configurations with their
  final metric values, oldest first.
* ``points_to_evaluate`` are suggested first. Then, until the population has
  ``population_size`` members, configurations are sampled at random from the space.
* After that, each suggestion is a *mutation*: ``sample_size`` members are drawn
  uniformly at random from the population (without replacement, so with
  ``sample_size == population_size`` the parent is always the best member), the best of
  them (by ``metric`` and ``mode``) is the parent, and the child is the parent with ONE
  hyperparameter, chosen at random, resampled to a different value: another category
  for a ``choice``, a fresh draw from the domain for a number (drawn again until it
  differs). Only hyperparameters that can take more than one value are chosen.
* When a trial completes, its configuration and final metric join the population and,
  once it is over ``population_size``, the oldest member leaves (aging: this is the
  "regularized" part; a good configuration survives only by having good children).
  Errored trials and results without a number for ``metric`` never join. A trial that
  errored and is run again (``Tuner.restore(..., restart_errored=True)``) joins when the
  rerun completes.

Values come from each domain's own ``sample``, so integer, log and quantized domains
give exactly the values the tune domain would. The space is checked before the first
trial; ``grid_search``, ``sample_from``, a ``choice`` whose categories hold domains and
a list holding domains raise a ``ValueError`` naming the parameter. Nested dicts are
searched; constants are left to the ``SearchGenerator``, which merges them into every
configuration.

Differences from the paper and Syne Tune: the tournament samples without replacement
(they sample with replacement), and a mutation never returns the parent's value when
another one exists (Syne Tune resamples the chosen hyperparameter, which may give it
back unchanged). The random state is a ``random.Random`` kept with the searcher, so a
saved and restored (or pickled) copy suggests exactly what the original would have.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import random
from typing import Any, Dict, List, Optional, Tuple

from tune_core.search.sample import Categorical, Domain, Float, Function, Integer
from tune_core.search.searcher import Searcher

__all__ = ["RegularizedEvolution"]

logger = logging.getLogger(__name__)

Path = Tuple[Any, ...]

# A mutation draws a number again until it differs from the parent's; a domain that gives
# the same value this many times in a row (a log domain whose lowest value dominates) is
# left as it is for this child.
_MAX_REDRAWS = 100


def _name(path: Path) -> str:
    return "/".join(str(p) for p in path)


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and "grid_search" in value


def _has_domains(value: Any) -> bool:
    if isinstance(value, Domain) or _is_grid(value):
        return True
    if isinstance(value, dict):
        return any(_has_domains(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_domains(v) for v in value)
    return False


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart (categories keep their types)."""
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    except Exception:  # e.g. numpy arrays
        return a is b


def _count_values(domain: Domain) -> float:
    """How many different values ``domain`` can give (``math.inf`` if unbounded)."""
    if isinstance(domain, Categorical):
        distinct: List[Any] = []
        for c in domain.categories:
            if not any(_same(c, d) for d in distinct):
                distinct.append(c)
        return len(distinct)
    if isinstance(domain, Integer):
        lo, hi = Integer._index_range(domain.lower, domain.upper, domain.q or 1)
        return hi - lo
    if isinstance(domain, Float) and domain.q is not None and domain.kind != "normal":
        lo = math.ceil(domain.lower / domain.q - 1e-9)
        hi = math.floor(domain.upper / domain.q + 1e-9)
        return hi - lo + 1
    return math.inf


def _refuse(path: Path, what: str, why: str) -> ValueError:
    return ValueError(f"RegularizedEvolution cannot search parameter {_name(path)!r} ({what}): "
                      f"{why}")


def _parameters(space: Dict[str, Any]) -> List[Tuple[Path, Domain]]:
    """The searched parameters of a tune space as ``(path, domain)``, in the space's order.

    Raises:
        ValueError: naming the parameter path, for a domain this searcher cannot mutate.
    """
    params: List[Tuple[Path, Domain]] = []

    def visit(value: Any, path: Path) -> None:
        if _is_grid(value):
            raise _refuse(path, f"grid_search({value['grid_search']!r})", "a grid is "
                          "enumerated, not evolved; use tune.choice(...), or the default "
                          "search (BasicVariantGenerator) for a grid")
        if isinstance(value, Function):
            raise _refuse(path, repr(value), "a value computed by a function cannot be "
                          "mutated; use a tune domain such as tune.uniform or tune.choice")
        if isinstance(value, Domain):
            if value.problem:
                raise ValueError(f"RegularizedEvolution: parameter {_name(path)!r}: "
                                 f"{value.problem}")
            if isinstance(value, Categorical):
                for i, c in enumerate(value.categories):
                    if _has_domains(c):
                        raise _refuse(path, f"choice with a domain in category {i}",
                                      "conditional spaces are not supported; put each "
                                      "parameter at its own key")
            params.append((path, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(v, path + (k,))
        elif isinstance(value, (list, tuple)) and _has_domains(value):
            raise _refuse(path, "a list holding domains", "put the values in a dict "
                          "(nested dicts are supported)")

    visit(space, ())
    return params


def _get(config: Any, path: Path) -> Tuple[bool, Any]:
    for p in path:
        if not isinstance(config, dict) or p not in config:
            return False, None
        config = config[p]
    return True, config


def _set(config: Dict[str, Any], path: Path, value: Any) -> None:
    for p in path[:-1]:
        config = config.setdefault(p, {})
    config[path[-1]] = value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _score(result: Optional[Dict[str, Any]], metric: str) -> Optional[float]:
    """The result's number for ``metric``; None if it has none (or NaN)."""
    if not result:
        return None
    value = result.get(metric)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


class RegularizedEvolution(Searcher):
    """Regularized evolution (aging evolution) over a tune search space.

    Args:
        space: A tune search space (dict of domains; nested dicts allowed; constants are
            left to the Tuner). None takes the Tuner's ``param_space``.
        metric: The result key to optimise; else ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; else ``TuneConfig(mode=...)``.
        points_to_evaluate: Configurations (full or partial dicts) to try first, in order;
            parameters left out are sampled. They join the population like any trial.
        population_size: How many evaluated configurations the population keeps (the
            newest); also how many are sampled at random before evolution starts.
        sample_size: How many members a tournament draws to pick a parent, from 1 (a
            random parent) to ``population_size`` (always the best member).
        random_seed: Seed of the searcher's random state; the same seed gives the same
            suggestions for the same results.

    Example::

        searcher = RegularizedEvolution(metric="loss", mode="min", population_size=20,
                                        sample_size=5, random_seed=0)
        tune.Tuner(train, param_space=space,
                   tune_config=tune.TuneConfig(search_alg=searcher, num_samples=200)).fit()
    """

    def __init__(self, space: Optional[Dict[str, Any]] = None, metric: Optional[str] = None,
                 mode: Optional[str] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 population_size: int = 100, sample_size: int = 10,
                 random_seed: Optional[int] = None) -> None:
        super().__init__(metric=metric, mode=mode)
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"RegularizedEvolution(metric={metric!r}): use the name of one "
                             "result key (a str); several objectives are not supported")
        if not _is_int(population_size) or population_size < 1:
            raise ValueError(f"RegularizedEvolution(population_size={population_size!r}): use "
                             "an int >= 1")
        if not _is_int(sample_size) or not 1 <= sample_size <= population_size:
            raise ValueError(f"RegularizedEvolution(sample_size={sample_size!r}): use an int "
                             f"from 1 to population_size ({population_size})")
        if random_seed is not None and not _is_int(random_seed):
            raise ValueError(f"RegularizedEvolution(random_seed={random_seed!r}): use an int "
                             "or None")
        if points_to_evaluate is not None and not (
                isinstance(points_to_evaluate, (list, tuple))
                and all(isinstance(p, dict) for p in points_to_evaluate)):
            raise ValueError(f"RegularizedEvolution(points_to_evaluate={points_to_evaluate!r}):"
                             " use a list of dicts")
        self._population_size = int(population_size)
        self._sample_size = int(sample_size)
        self._rng = random.Random(random_seed)
        self._points: List[Dict[str, Any]] = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self._params: Optional[List[Tuple[Path, Domain]]] = None
        self._space_from_config = False
        # Evaluated members, oldest first: (configuration of the searched params, value).
        self._population: List[Tuple[Dict[str, Any], float]] = []
        self._live: Dict[str, Dict[str, Any]] = {}     # trial_id -> suggested config
        self._errored: Dict[str, Dict[str, Any]] = {}  # trial_id -> config, may be rerun
        if space is not None:
            self._set_space(space)

    # -- the space ------------------------------------------------------------------------

    def _set_space(self, space: Dict[str, Any]) -> None:
        if not isinstance(space, dict):
            raise ValueError(f"RegularizedEvolution(space={space!r}): use a dict of tune "
                             "domains (nested dicts allowed)")
        params = _parameters(space)
        if not params:
            raise ValueError(f"RegularizedEvolution: the search space {space!r} holds no "
                             "domains to search; use tune.uniform, tune.choice, ... for the "
                             "values to tune")
        self._params = params
        for point in self._points:
            self._check_point(point, "points_to_evaluate")

    def _check_point(self, point: Dict[str, Any], where: str) -> None:
        """Raises a ValueError if a value of ``point`` cannot come from its domain."""
        for path, domain in self._params or []:
            found, value = _get(point, path)
            if found and not _contains(domain, value):
                raise ValueError(f"RegularizedEvolution({where}=...): {_name(path)!r}="
                                 f"{value!r} is not a value of {domain!r}")

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict[str, Any], **spec: Any) -> bool:
        if (config and _has_domains(config) and self._params is not None
                and not self._space_from_config):
            raise ValueError("RegularizedEvolution got a space in its constructor and the "
                             "Tuner's param_space holds domains too; give the space in one "
                             "place")
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._require_metric_mode()
        if self._params is None and config and _has_domains(config):
            self._set_space(config)
            self._space_from_config = True
        return True

    def _require_metric_mode(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError(f"RegularizedEvolution needs a metric and a mode (got metric="
                             f"{self._metric!r}, mode={self._mode!r}): pass "
                             "RegularizedEvolution(metric=..., mode=...) or set "
                             "TuneConfig(metric=..., mode=...)")
        if not isinstance(self._metric, str):
            raise ValueError(f"RegularizedEvolution(metric={self._metric!r}): use the name of "
                             "one result key (a str); several objectives are not supported")
        if self._mode not in ("min", "max"):
            raise ValueError(f'RegularizedEvolution(mode={self._mode!r}): use "min" or "max"')

    # -- suggestions ----------------------------------------------------------------------

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        self._require_metric_mode()
        if self._params is None:
            raise ValueError("RegularizedEvolution has no search space: pass "
                             "RegularizedEvolution(space=...) or put tune domains in the "
                             "Tuner's param_space")
        if self._points:
            config = self._points.pop(0)
            for path, domain in self._params:
                if not _get(config, path)[0]:
                    _set(config, path, self._draw(domain))
        elif len(self._population) < self._population_size:
            config = {}
            for path, domain in self._params:
                _set(config, path, self._draw(domain))
        else:
            config = self._mutate(self._tournament())
        self._live[trial_id] = config
        return copy.deepcopy(config)

    def _draw(self, domain: Domain) -> Any:
        # A category is handed out as a copy, so configurations never share a list or dict.
        return copy.deepcopy(domain.sample(self._rng))

    def _tournament(self) -> Dict[str, Any]:
        """The best of ``sample_size`` members drawn without replacement (ties: first drawn)."""
        drawn = self._rng.sample(self._population, min(self._sample_size, len(self._population)))
        pick = min if self._mode == "min" else max
        return pick(drawn, key=lambda member: member[1])[0]

    def _mutate(self, parent: Dict[str, Any]) -> Dict[str, Any]:
        """The parent with one hyperparameter (that can change) given a different value."""
        child: Dict[str, Any] = {}
        for path, _ in self._params:
            _set(child, path, copy.deepcopy(_get(parent, path)[1]))
        mutable = [(path, d) for path, d in self._params if _count_values(d) > 1]
        if not mutable:  # every domain has a single value: nothing can change
            return child
        path, domain = mutable[self._rng.randrange(len(mutable))]
        current = _get(parent, path)[1]
        if isinstance(domain, Categorical):
            others = [c for c in domain.categories if not _same(c, current)]
            value = copy.deepcopy(others[self._rng.randrange(len(others))])
        else:
            value = current
            for _ in range(_MAX_REDRAWS):
                value = self._draw(domain)
                if not _same(value, current):
                    break
        _set(child, path, value)
        return child

    # -- results --------------------------------------------------------------------------

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        config = self._live.pop(trial_id, None)
        if config is None:
            # A trial that errored earlier and was run again (restart_errored).
            config = self._errored.pop(trial_id, None) if not error else None
            if config is None:
                return
        if error:
            self._errored[trial_id] = config
            return
        score = _score(result, self._metric)
        if score is None:
            if result:
                logger.warning("RegularizedEvolution: trial %s ended without a number for %r "
                               "in its result; it does not join the population", trial_id,
                               self._metric)
            return
        self._add(config, score)

    def _add(self, config: Dict[str, Any], score: float) -> None:
        self._population.append((config, score))
        if len(self._population) > self._population_size:
            self._population.pop(0)  # aging: the oldest leaves, however good

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        """Adds a configuration evaluated elsewhere to the population (newest member).

        Raises:
            ValueError: the searcher has no space yet, or ``parameters`` lacks a
                searched parameter or holds a value its domain cannot give.
        """
        if self._params is None:
            raise ValueError("RegularizedEvolution.add_evaluated_point needs the search "
                             "space first: pass space=... or call set_search_properties")
        if error or pruned:
            return
        self._check_point(parameters, "add_evaluated_point")
        config: Dict[str, Any] = {}
        for path, _ in self._params:
            found, v = _get(parameters, path)
            if not found:
                raise ValueError(f"RegularizedEvolution.add_evaluated_point: the point lacks "
                                 f"{_name(path)!r}; give a value for every parameter")
            _set(config, path, copy.deepcopy(v))
        score = _score({"value": value}, "value")
        if score is None:
            raise ValueError(f"RegularizedEvolution.add_evaluated_point(value={value!r}): use "
                             "a number")
        self._add(config, score)

    # -- inspection and state ---------------------------------------------------------------

    @property
    def population(self) -> List[Tuple[Dict[str, Any], float]]:
        """A copy of the population, oldest first, as ``(config, metric value)`` pairs."""
        return copy.deepcopy(self._population)

    def get_state(self) -> Dict[str, Any]:
        # A deep copy: a state kept in memory must not change as the search goes on.
        return copy.deepcopy(dict(self.__dict__))

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state))


def _contains(domain: Domain, value: Any) -> bool:
    """Whether ``value`` is one the domain could give (loosely for floats: within bounds)."""
    if isinstance(domain, Categorical):
        return any(_same(c, value) for c in domain.categories)
    if isinstance(domain, Integer):
        if not _is_int(value):
            return False
        q = domain.q or 1
        lo, hi = Integer._index_range(domain.lower, domain.upper, q)
        return value % q == 0 and lo <= value // q < hi
    if isinstance(domain, Float):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return False
        return domain.kind == "normal" or domain.lower <= value <= domain.upper
    return True
