"""Search spaces, random/grid search and the search-algorithm interfaces."""

from tune_core.search.basic_variant import BasicVariantGenerator
from tune_core.search.sample import (
    Categorical, Domain, Float, Function, Integer, choice, grid_search, lograndint,
    loguniform, qlograndint, qloguniform, qrandint, qrandn, quniform, randint, randn,
    sample_from, uniform)
from tune_core.search.search_algorithm import SearchAlgorithm, TrialSuggestion
from tune_core.search.search_generator import SearchGenerator
from tune_core.search.searcher import Searcher

__all__ = [
    "BasicVariantGenerator", "SearchAlgorithm", "SearchGenerator", "Searcher", "TrialSuggestion",
    "Domain", "Float", "Integer", "Categorical", "Function",
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn", "randint",
    "qrandint", "lograndint", "qlograndint", "choice", "sample_from", "grid_search",
]
