"""Resource requests as values: hashable, picklable, separate from acquiring them."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

__all__ = ["PlacementGroupFactory", "resource_dict_to_pg_factory", "normalize_resources"]

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
# Ray Tune's spelling of resource keys in `with_resources({...})` dicts.
_ALIASES = {"cpu": "CPU", "gpu": "GPU", "memory": "memory", "CPU": "CPU", "GPU": "GPU"}


def _clean_bundle(bundle: Mapping[str, Any], where: str) -> Dict[str, float]:
    if not isinstance(bundle, Mapping):
        raise ValueError(f"{where}: a bundle must be a dict of resource name to amount, "
                         f"got {bundle!r}")
    out: Dict[str, float] = {}
    for key, value in bundle.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: resource names must be non-empty strings, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                math.isnan(value) or value < 0:
            raise ValueError(f"{where}: resource {key!r} must be a number >= 0, got {value!r}")
        if value == 0:
            continue
        out[_ALIASES.get(key, key)] = float(value)
    return out


class PlacementGroupFactory:
    """A trial's resource request: a list of bundles and a placement strategy.

    The first bundle is where the trainable itself runs; further bundles are
    reserved for workers the trainable starts on its own (as Ray Tune does).

    Args:
        bundles: a list of dicts of resource name to amount, for example
            ``[{"CPU": 1, "GPU": 0.5}, {"CPU": 2}]``.
        strategy: one of ``PACK`` (default), ``SPREAD``, ``STRICT_PACK``, ``STRICT_SPREAD``.
    """

    def __init__(self, bundles: List[Dict[str, float]], strategy: str = "PACK",
                 *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise ValueError("PlacementGroupFactory(bundles, strategy=...) takes no other "
                             f"arguments, got {args!r} {kwargs!r}")
        if isinstance(bundles, Mapping) or not isinstance(bundles, (list, tuple)) or not bundles:
            raise ValueError("PlacementGroupFactory: bundles must be a non-empty list of dicts, "
                             f"got {bundles!r}")
        if strategy not in _STRATEGIES:
            raise ValueError(f"PlacementGroupFactory: strategy={strategy!r} is not one of "
                             f"{', '.join(_STRATEGIES)}")
        cleaned = [_clean_bundle(b, f"PlacementGroupFactory bundle {i}")
                   for i, b in enumerate(bundles)]
        # Ray rejects empty bundles; an all-zero head bundle still needs to exist so the
        # trainable has somewhere to live, so give it a token of CPU 0 handled by the executor.
        self._bundles = [b for b in cleaned]
        self.strategy = strategy
        self._key = (tuple(tuple(sorted(b.items())) for b in self._bundles), strategy)

    @property
    def bundles(self) -> List[Dict[str, float]]:
        return [dict(b) for b in self._bundles]

    @property
    def head_bundle(self) -> Dict[str, float]:
        return dict(self._bundles[0])

    @property
    def required_resources(self) -> Dict[str, float]:
        """The sum of all bundles."""
        total: Dict[str, float] = {}
        for b in self._bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupFactory) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles!r}, strategy={self.strategy!r})"

    def __getstate__(self):
        return {"bundles": self._bundles, "strategy": self.strategy}

    def __setstate__(self, state):
        self.__init__(state["bundles"], state["strategy"])

    def short_str(self) -> str:
        """``1 CPU, 0.5 GPU`` style text for the console."""
        parts = []
        for k, v in sorted(self.required_resources.items()):
            parts.append(f"{v:g} {k}")
        return ", ".join(parts) or "0 CPU"


def resource_dict_to_pg_factory(spec: Optional[Mapping[str, Any]]) -> PlacementGroupFactory:
    """Turn Ray Tune's ``{"cpu": 1, "gpu": 0.5, "memory": ..., "custom": 1}`` dict into a factory."""
    if spec is None:
        return PlacementGroupFactory([{"CPU": 1}])
    spec = dict(spec)
    head: Dict[str, float] = {}
    for key, value in spec.items():
        if key in ("extra_cpu", "extra_gpu", "extra_memory", "extra_custom_resources"):
            raise ValueError(f"with_resources: {key!r} is not supported; use a "
                             "PlacementGroupFactory with several bundles instead")
        if key == "custom_resources":
            head.update(dict(value or {}))
        else:
            head[key] = value
    if "cpu" not in {k.lower() for k in head}:
        head["CPU"] = 1  # Ray Tune's default when only GPUs or custom resources are named
    return PlacementGroupFactory([head])


def normalize_resources(resources: Union[None, Mapping[str, Any], PlacementGroupFactory],
                        ) -> PlacementGroupFactory:
    """A dict, a factory or None (1 CPU) to a PlacementGroupFactory."""
    if resources is None:
        return PlacementGroupFactory([{"CPU": 1}])
    if isinstance(resources, PlacementGroupFactory):
        return resources
    if isinstance(resources, Mapping):
        return resource_dict_to_pg_factory(resources)
    raise ValueError("resources must be a dict, a PlacementGroupFactory or a callable of the "
                     f"config returning one of them; got {resources!r}")


def _fits(free: Mapping[str, float], need: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def can_ever_fit(pgf: PlacementGroupFactory, total: Mapping[str, float],
                 nodes: List[Mapping[str, float]]) -> bool:
    """Whether an empty cluster with these nodes could place ``pgf`` at all."""
    if not _fits(total, pgf.required_resources):
        return False
    bundles = [b for b in pgf.bundles if b]
    if pgf.strategy == "STRICT_PACK":
        return any(_fits(n, pgf.required_resources) for n in nodes)
    if pgf.strategy == "STRICT_SPREAD":
        # Each bundle on its own node: look for such an assignment (bundles are few).
        def assign(i: int, used: frozenset) -> bool:
            if i == len(bundles):
                return True
            return any(assign(i + 1, used | {j}) for j, n in enumerate(nodes)
                       if j not in used and _fits(n, bundles[i]))
        return len(bundles) <= len(nodes) and assign(0, frozenset())
    return all(any(_fits(n, b) for n in nodes) for b in bundles)
