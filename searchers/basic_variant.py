"""Ray Tune's ``ray.tune.search.basic_variant`` module path: random and grid search
(defined in ``tune_core.search.basic_variant``)."""

from tune_core.search.basic_variant import BasicVariantGenerator

__all__ = ["BasicVariantGenerator"]
