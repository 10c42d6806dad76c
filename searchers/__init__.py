"""Search algorithms (Ray Tune's ``ray.tune.search``).

The defaults that need no extra library live in ``tune_core`` and are re-exported here.
"""

from tune_core.search.basic_variant import BasicVariantGenerator
from tune_core.search.search_algorithm import SearchAlgorithm
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

__all__ = ["BasicVariantGenerator", "SearchAlgorithm", "SearchGenerator", "Searcher"]
