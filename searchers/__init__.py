"""Search algorithms (Ray Tune's ``ray.tune.search``).

The defaults that need no extra library live in ``tune_core`` and are re-exported here.
``create_searcher(name, **kwargs)`` builds one by its Ray Tune name; searchers that need an
optional library (Optuna, HyperOpt, ...) are imported only when asked for.
"""

from __future__ import annotations

import typing

from tune_core._util import create_by_name as _create_by_name
from tune_core.search.basic_variant import BasicVariantGenerator
from tune_core.search.search_algorithm import SearchAlgorithm
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

from searchers.concurrency_limiter import ConcurrencyLimiter
from searchers.repeater import Repeater

__all__ = ["BasicVariantGenerator", "SearchAlgorithm", "SearchGenerator", "Searcher",
           "ConcurrencyLimiter", "Repeater", "create_searcher"]

# Name -> "module:class", imported when asked for. One line per searcher.
_SEARCHER_IMPORTS = {
    "variant_generator": "tune_core.search.basic_variant:BasicVariantGenerator",
    "random": "tune_core.search.basic_variant:BasicVariantGenerator",
    "optuna": "searchers.optuna:OptunaSearch",
    "hyperopt": "searchers.hyperopt:HyperOptSearch",
    "bayesopt": "searchers.bayesopt:BayesOptSearch",
    "bohb": "searchers.bohb:TuneBOHB",
    "rea": "searchers.rea:RegularizedEvolution",
}


def create_searcher(name: typing.Optional[str] = None,
                    **kwargs: typing.Any) -> typing.Union[Searcher, SearchAlgorithm]:
    """A search algorithm by name, built with ``kwargs`` (Ray Tune's ``tune.create_searcher``).

    Args:
        name: Ray Tune's name of the search algorithm (``"random"``,
            ``"variant_generator"``, ``"optuna"``, ``"hyperopt"``, ...; case-insensitive;
            an unknown name's error lists them all). Ray Tune's keyword spelling
            ``search_alg="optuna"`` works too.
        **kwargs: The search algorithm's own arguments.

    Raises:
        ValueError: ``name`` is not a known search algorithm (the message lists them).
        ImportError: the library the searcher is built on is not installed.

    Example::

        searcher = create_searcher("optuna", metric="loss", mode="min", seed=0)
    """
    return _create_by_name("create_searcher", "search_alg", _SEARCHER_IMPORTS, name, kwargs)
