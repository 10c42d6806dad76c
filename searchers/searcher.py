"""Ray Tune's ``ray.tune.search.searcher`` module path: the searcher interface
(defined in ``tune_core.search.searcher``)."""

from tune_core.search.searcher import Searcher

__all__ = ["Searcher"]
