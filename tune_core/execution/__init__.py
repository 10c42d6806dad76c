"""The controller loop and the executors that run trials."""

from tune_core.execution.placement_groups import PlacementGroupFactory

__all__ = ["PlacementGroupFactory"]
