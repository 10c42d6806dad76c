"""Ray Tune's ``ray.tune.search.search_generator`` module path: a searcher as the
controller's trial source
(defined in ``tune_core.search.search_generator``)."""

from tune_core.search.search_generator import SearchGenerator

__all__ = ["SearchGenerator"]
