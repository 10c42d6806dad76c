"""Ray Tune's ``ray.tune.search.search_algorithm`` module path: the search-algorithm interface
(defined in ``tune_core.search.search_algorithm``)."""

from tune_core.search.search_algorithm import SearchAlgorithm

__all__ = ["SearchAlgorithm"]
