"""``with_parameters`` and ``with_resources``: wrap a trainable without changing it."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Union

from tune_core.execution.placement_groups import PlacementGroupFactory, normalize_resources
from tune_core.trainable.trainable import Trainable

__all__ = ["with_parameters", "with_resources", "get_trainable_name", "resolve_resources"]


class _ObjectStoreParams:
    """Large objects passed to ``with_parameters``.

    When pickled for the workers, each object is put into Ray's object store once
    and only its reference travels; each worker process fetches it once.
    """

    def __init__(self, params: Dict[str, Any]) -> None:
        self._params = params
        self._refs: Dict[str, Any] = {}
        self._refs_owner: Any = None
        self._cache: Dict[str, Any] = {}

    def __getstate__(self):
        import ray  # deferred: only pickling for Ray workers needs it

        # References belong to one Ray session: put the objects again after a
        # ray.shutdown()/ray.init() (a new job or a new cluster).
        ctx = ray.get_runtime_context()
        owner = (ctx.get_job_id(), ctx.get_node_id())
        if not self._refs or self._refs_owner != owner:
            self._refs = {k: ray.put(v) for k, v in self._params.items()}
            self._refs_owner = owner
        return {"refs": self._refs}

    def __setstate__(self, state):
        self._params = {}
        self._refs = state["refs"]
        self._cache = {}

    def get(self) -> Dict[str, Any]:
        if self._params:
            return self._params
        if not self._cache and self._refs:
            import ray

            keys = list(self._refs)
            values = ray.get([self._refs[k] for k in keys])
            self._cache = dict(zip(keys, values))
        return self._cache


class _FunctionWrapper:
    """A function trainable with attached parameters and/or resources."""

    def __init__(self, fn: Callable, params: "_ObjectStoreParams | None" = None,
                 resources: Any = None) -> None:
        self._fn = fn
        self._params = params
        self._tune_resources = resources
        functools.update_wrapper(self, fn)

    def __call__(self, config: Dict[str, Any]) -> Any:
        if self._params is None:
            return self._fn(config)
        return self._fn(config, **self._params.get())


def _check_trainable(trainable: Any, what: str) -> None:
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise TypeError(f"{what}: a class trainable must subclass tune.Trainable, got "
                            f"{trainable!r}")
    elif not callable(trainable):
        raise TypeError(f"{what}: the trainable must be a function or a tune.Trainable "
                        f"subclass, got {trainable!r}")


def with_parameters(trainable: Any, **kwargs: Any) -> Any:
    """Pass large objects (data sets, models) to a trainable through Ray's object store.

    Each object is stored once, however many trials run. For a function
    ``train_fn(config, data=None)``, call ``with_parameters(train_fn, data=data)``;
    for a ``Trainable`` class, ``setup(config, **kwargs)`` receives them.
    """
    _check_trainable(trainable, "with_parameters")
    holder = _ObjectStoreParams(kwargs)
    if inspect.isclass(trainable):
        base = trainable

        def setup(self, config, _base=base, _holder=holder):
            return _base.setup(self, config, **_holder.get())

        return type(base.__name__, (base,), {"setup": setup, "__module__": base.__module__,
                                             "_tune_name": get_trainable_name(base)})
    if isinstance(trainable, _FunctionWrapper):
        if trainable._params is not None:
            raise ValueError("with_parameters was applied twice to the same trainable; pass "
                             "all parameters in one call")
        return _FunctionWrapper(trainable._fn, holder, trainable._tune_resources)
    sig = inspect.signature(trainable)
    missing = [k for k in kwargs if k not in sig.parameters and not any(
        p.kind == p.VAR_KEYWORD for p in sig.parameters.values())]
    if missing:
        raise ValueError(f"with_parameters: {get_trainable_name(trainable)}() has no parameter "
                         f"named {', '.join(map(repr, missing))}; its signature is {sig}")
    return _FunctionWrapper(trainable, holder)


def with_resources(trainable: Any, resources: Union[Dict[str, float], PlacementGroupFactory,
                                                     Callable[[Dict[str, Any]], Any]]) -> Any:
    """Attach a resource request to a trainable.

    Args:
        resources: a dict such as ``{"cpu": 2, "gpu": 0.5}``, a
            ``PlacementGroupFactory``, or a function of the trial's config
            returning either.
    """
    _check_trainable(trainable, "with_resources")
    if not callable(resources) or isinstance(resources, PlacementGroupFactory):
        normalize_resources(resources)  # validate now, before any trial
    if inspect.isclass(trainable):
        return type(trainable.__name__, (trainable,), {
            "__module__": trainable.__module__, "_tune_resources": resources,
            "_tune_name": get_trainable_name(trainable),
            "default_resource_request": classmethod(lambda cls, config: None)})
    if isinstance(trainable, _FunctionWrapper):
        return _FunctionWrapper(trainable._fn, trainable._params, resources)
    return _FunctionWrapper(trainable, None, resources)


def get_trainable_name(trainable: Any) -> str:
    if inspect.isclass(trainable):
        return getattr(trainable, "_tune_name", None) or trainable.__name__
    if isinstance(trainable, _FunctionWrapper):
        return get_trainable_name(trainable._fn)
    if isinstance(trainable, functools.partial):
        return get_trainable_name(trainable.func)
    return getattr(trainable, "__name__", None) or type(trainable).__name__


def resolve_resources(trainable: Any, config: Dict[str, Any]) -> PlacementGroupFactory:
    """The resource request of a trial of ``trainable`` with ``config``."""
    if inspect.isclass(trainable):
        request = trainable.default_resource_request(config)
        if request is not None:
            return normalize_resources(request)
    spec = getattr(trainable, "_tune_resources", None)
    if callable(spec) and not isinstance(spec, PlacementGroupFactory):
        spec = spec(config)
    return normalize_resources(spec)


def has_static_resources(trainable: Any) -> bool:
    """True when the resources do not depend on the config (known before any trial)."""
    spec = getattr(trainable, "_tune_resources", None)
    if spec is not None:
        return not (callable(spec) and not isinstance(spec, PlacementGroupFactory))
    if inspect.isclass(trainable):
        own = trainable.default_resource_request.__func__
        return own is Trainable.default_resource_request.__func__
    return True
