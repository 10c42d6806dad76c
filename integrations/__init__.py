"""Adapters to ML libraries and experiment trackers."""

__all__: list = []
