"""Random and grid search: ``BasicVariantGenerator`` (Ray Tune's semantics)."""

from __future__ import annotations

import copy
import random
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from tune_core.error import SearchSpaceError
from tune_core.search.search_algorithm import SearchAlgorithm, TrialSuggestion
from tune_core.search.variant_generator import (
    Path, count_grid_points, flatten_point, format_tag, generate_variants, path_sort_key,
    path_str, validate_param_space)

__all__ = ["BasicVariantGenerator"]


def _seed_from_numpy() -> int:
    """A seed drawn from numpy's global generator, so ``np.random.seed`` repeats a run."""
    import numpy as np  # a dependency of Ray, imported only when needed

    return int(np.random.randint(0, 2**31 - 1))


def _make_rng(random_state: Any) -> random.Random:
    if random_state is None:
        return random.Random()  # reseeded from numpy in add_configurations
    if isinstance(random_state, random.Random):
        return random_state
    if isinstance(random_state, bool):
        raise ValueError(f"BasicVariantGenerator(random_state={random_state!r}): use an int "
                         "seed, a random.Random or a numpy Generator/RandomState")
    if isinstance(random_state, int):
        return random.Random(random_state)
    # numpy Generator or RandomState, without importing numpy here.
    if hasattr(random_state, "integers"):
        return random.Random(int(random_state.integers(0, 2**63 - 1)))
    if hasattr(random_state, "randint"):
        return random.Random(int(random_state.randint(0, 2**31 - 1)))
    raise ValueError(f"BasicVariantGenerator(random_state={random_state!r}): use an int seed, "
                     "a random.Random or a numpy Generator/RandomState")


class BasicVariantGenerator(SearchAlgorithm):
    """Grid search and random sampling of the ``param_space``.

    The experiment runs ``num_samples`` samples, each the cross product of all grid
    searches, with random domains sampled anew for every configuration.

    Args:
        points_to_evaluate: configurations (possibly partial) to run first; each
            takes the place of one of the ``num_samples`` samples, and keys it does not
            fix are sampled or grid-expanded as usual.
        max_concurrent: at most this many of its trials run at once (0 = no limit).
        constant_grid_search: resolve the random domains, and the ``sample_from``
            functions that do not read a grid value, once per sample and keep them across
            that sample's grid points (Ray Tune's rule).
        random_state: an int seed, a ``random.Random`` or a numpy Generator/RandomState;
            the same seed gives the same sequence of configurations. ``None`` draws
            the seed from numpy's global generator when the configurations are added,
            so ``np.random.seed(...)`` makes the run repeatable, as in Ray Tune.
    """

    def __init__(self, points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 max_concurrent: int = 0, constant_grid_search: bool = False,
                 random_state: Any = None) -> None:
        if points_to_evaluate is not None:
            if not isinstance(points_to_evaluate, (list, tuple)) or not all(
                    isinstance(p, dict) for p in points_to_evaluate):
                raise ValueError("BasicVariantGenerator(points_to_evaluate=...): use a list of "
                                 f"config dicts, got {points_to_evaluate!r}")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or \
                max_concurrent < 0:
            raise ValueError(f"BasicVariantGenerator(max_concurrent={max_concurrent!r}): use an "
                             "integer >= 0 (0 = no limit)")
        self._points = [copy.deepcopy(p) for p in (points_to_evaluate or [])]
        self._max_concurrent = max_concurrent
        self._constant_grid_search = bool(constant_grid_search)
        self._numpy_seeded = random_state is None
        self._rng = _make_rng(random_state)
        self._initial_rng_state = self._rng.getstate()
        self._space: Dict[str, Any] = {}
        self._num_samples = 1
        self._total: Optional[int] = 0
        self._produced = 0
        self._iter: Optional[Iterator[Tuple[Dict[str, Any], Dict[Path, Any]]]] = None
        self._live: Set[str] = set()
        self._exhausted = False

    def add_configurations(self, param_space: Mapping[str, Any], num_samples: int) -> None:
        validate_param_space(dict(param_space))
        self._space = dict(param_space)
        self._num_samples = num_samples
        presets = [flatten_point(p) for p in self._points]
        for preset in presets:
            for path in preset:
                if not path or path[0] not in self._space:
                    raise SearchSpaceError(f"points_to_evaluate sets {path_str(path)!r}, which "
                                           f"is not in the param_space (keys: "
                                           f"{sorted(map(str, self._space))})")
        if num_samples == -1:
            self._total = None
        else:
            rest = max(num_samples - len(presets), 0)
            self._total = sum(count_grid_points(self._space, p) for p in presets) + \
                rest * count_grid_points(self._space)
        if self._numpy_seeded:
            self._rng.seed(_seed_from_numpy())
            self._initial_rng_state = self._rng.getstate()
        self._rng.setstate(self._initial_rng_state)
        self._produced = 0
        self._exhausted = False
        self._iter = self._variants(presets)

    def _variants(self, presets: List[Dict[Path, Any]]
                  ) -> Iterator[Tuple[Dict[str, Any], Dict[Path, Any]]]:
        for preset in presets:
            yield from generate_variants(self._space, self._rng, self._constant_grid_search,
                                         preset)
        rest = None if self._num_samples == -1 else max(self._num_samples - len(presets), 0)
        n = 0
        while rest is None or n < rest:
            n += 1
            yield from generate_variants(self._space, self._rng, self._constant_grid_search)

    def next_trial(self, trial_id: str) -> Optional[TrialSuggestion]:
        if self._iter is None or self._exhausted:
            return None
        if self._max_concurrent and len(self._live) >= self._max_concurrent:
            return None
        try:
            config, chosen = next(self._iter)
        except StopIteration:
            self._exhausted = True
            return None
        self._produced += 1
        self._live.add(trial_id)
        params = {path_str(p): chosen[p] for p in sorted(chosen, key=path_sort_key)}
        return TrialSuggestion(config=config, experiment_tag=format_tag(self._produced - 1,
                                                                        chosen),
                               evaluated_params=params)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        self._live.discard(trial_id)

    def is_finished(self) -> bool:
        if self._exhausted:
            return True
        return self._total is not None and self._produced >= self._total

    @property
    def total_samples(self) -> Optional[int]:
        return self._total

    def get_state(self) -> Dict[str, Any]:
        """Enough to continue without repeating: the seed state and how far we got."""
        return {"initial_rng_state": self._initial_rng_state, "produced": self._produced,
                "live": sorted(self._live), "exhausted": self._exhausted}

    def __getstate__(self) -> Dict[str, Any]:
        # The variant generator cannot be pickled; it is rebuilt by replaying the seed.
        state = {k: v for k, v in self.__dict__.items() if k != "_iter"}
        state["_replay"] = self.get_state() if self._iter is not None else None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        replay = state.pop("_replay", None)
        self.__dict__.update(state)
        self._iter = None
        if replay is not None:
            self.set_state(replay)

    def set_state(self, state: Dict[str, Any]) -> None:
        """Continue after ``state["produced"]`` configurations (call after add_configurations)."""
        self._initial_rng_state = state["initial_rng_state"]
        self._rng.setstate(self._initial_rng_state)
        presets = [flatten_point(p) for p in self._points]
        self._iter = self._variants(presets)
        self._produced = 0
        self._exhausted = False
        for _ in range(state["produced"]):  # replay: the same seed gives the same sequence
            try:
                next(self._iter)
            except StopIteration:
                self._exhausted = True
                break
            self._produced += 1
        self._live = set(state.get("live", ()))
        self._exhausted = self._exhausted or state.get("exhausted", False)
