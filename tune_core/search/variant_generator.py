"""Resolving a ``param_space`` into concrete configurations.

Grid searches expand to their cross product (grid parameters ordered by path, list
indices numerically, the first one varying fastest, as in Ray Tune); domains are
sampled; ``sample_from`` functions run once the values they read are resolved. A
sampled value, function result or grid value that holds domains has them resolved
too.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from tune_core.error import SearchSpaceError
from tune_core.search.sample import Categorical, Domain, Function

__all__ = ["validate_param_space", "constant_part", "count_grid_points", "generate_variants",
           "format_path", "resolve_one", "path_sort_key"]

Path = Tuple[Any, ...]

# Values produced by domains may hold domains; deeper than this is a space that refers
# to itself (a choice among values holding that same choice).
_MAX_NESTING = 50


def path_sort_key(path: Path) -> Tuple[Tuple[int, Any], ...]:
    """Order paths with list indices as numbers (``[2]`` before ``[10]``)."""
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def format_path(path: Path) -> str:
    return "param_space" + "".join(f"[{p!r}]" for p in path)


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and "grid_search" in value


def _is_special(value: Any) -> bool:
    return isinstance(value, Domain) or _is_grid(value)


def _walk(space: Any, path: Path = ()) -> Iterator[Tuple[Path, Any]]:
    """Every leaf that needs resolving (domains, grid searches, functions), with its path."""
    if _is_special(space):
        yield path, space
    elif isinstance(space, dict):
        for key, value in space.items():
            yield from _walk(value, path + (key,))
    elif isinstance(space, (list, tuple)):
        for i, value in enumerate(space):
            yield from _walk(value, path + (i,))


# Search-space objects of other libraries: a space holding one would silently pass the
# object itself to every trial as a constant.
_FOREIGN = {"ray.tune": "Ray Tune", "ray.air": "Ray Tune", "optuna.distributions": "Optuna",
            "hyperopt": "HyperOpt", "ConfigSpace": "ConfigSpace", "scipy.stats": "SciPy"}


def _check_foreign(value: Any, path: Path) -> None:
    module = type(value).__module__ or ""
    for prefix, library in _FOREIGN.items():
        if module == prefix or module.startswith(prefix + "."):
            raise SearchSpaceError(
                f"{format_path(path)} holds a {library} object ({type(value).__name__}). Build "
                "the space with tune_core's domains (import tune_core as tune; "
                "tune.uniform(...), tune.choice([...]), ...).")


def validate_param_space(space: Any) -> None:
    """Raise SearchSpaceError, naming the parameter's path, for anything malformed."""
    if not isinstance(space, dict):
        raise SearchSpaceError(f"param_space must be a dict, got {type(space).__name__}")

    choices_open: set = set()  # a choice may (oddly) hold itself: visit it once

    def visit(value: Any, path: Path, in_grid_or_choice: bool = False) -> None:
        _check_foreign(value, path)
        if isinstance(value, Domain):
            if value.problem:
                raise SearchSpaceError(f"{format_path(path)}: {value.problem}")
            if isinstance(value, Categorical) and id(value) not in choices_open:
                choices_open.add(id(value))  # a chosen category is resolved in turn
                for i, item in enumerate(value.categories):
                    visit(item, path + ("choice", i), True)
                choices_open.discard(id(value))
            return
        if _is_grid(value):
            if in_grid_or_choice:
                raise SearchSpaceError(f"{format_path(path)}: a grid_search inside a "
                                       "grid_search value or a choice category is not "
                                       "supported; list the combinations in one grid_search")
            extra = sorted(k for k in value if k != "grid_search")
            if extra:
                raise SearchSpaceError(f"{format_path(path)}: a grid_search dict may hold only "
                                       f"the 'grid_search' key, it also has {extra}")
            values = value["grid_search"]
            if not isinstance(values, (list, tuple)):
                raise SearchSpaceError(f"{format_path(path)}: grid_search needs a list of "
                                       f"values, got {values!r}")
            if not values:
                raise SearchSpaceError(f"{format_path(path)}: grid_search needs at least one "
                                       "value, got an empty list")
            for i, item in enumerate(values):
                visit(item, path + ("grid_search", i), True)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, path + (key,), in_grid_or_choice)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, path + (i,), in_grid_or_choice)

    for key, value in space.items():
        visit(value, (key,))


def constant_part(space: Mapping[str, Any]) -> Dict[str, Any]:
    """The space without its domains and grid searches (what every config shares)."""
    out: Dict[str, Any] = {}
    for key, value in space.items():
        if _is_special(value):
            continue
        out[key] = constant_part(value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def count_grid_points(space: Any, fixed: Optional[Dict[Path, Any]] = None) -> int:
    n = 1
    for path, value in _walk(space):
        if _is_grid(value) and not _fixed_by(path, fixed):
            n *= len(value["grid_search"])
    return n


def _fixed_by(path: Path, fixed: Optional[Dict[Path, Any]]) -> bool:
    if not fixed:
        return False
    return any(path[:len(p)] == p for p in fixed)


def _set(config: Any, path: Path, value: Any) -> None:
    target = config
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def _get(config: Any, path: Path) -> Any:
    for p in path:
        config = config[p]
    return config


class _Unresolved(BaseException):
    """A ``sample_from`` function read a value that is not resolved yet: try it later.

    A BaseException, so a user's ``except Exception`` inside the function does not
    swallow it; ``resolve_one`` catches every one it causes.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path


class _View:
    """What a ``sample_from`` function receives: the partially resolved config.

    Supports ``spec.config.a``, ``spec.config["a"]``, ``spec["a"]``, ``spec.a`` and
    ``spec.get("a")``. Reading a value that is not resolved yet defers the function.
    """

    __slots__ = ("_data", "_path")

    def __init__(self, data: Any, path: Path = ()) -> None:
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_path", path)

    @property
    def config(self) -> "_View":
        if isinstance(self._data, dict) and "config" in self._data and self._path:
            return self._wrap("config")
        return self

    def _wrap(self, key: Any) -> Any:
        value = self._data[key]
        path = self._path + (key,)
        if _is_special(value):
            raise _Unresolved(path)
        if isinstance(value, (dict, list, tuple)):
            return _View(value, path)
        return value

    def __getitem__(self, key: Any) -> Any:
        return self._wrap(key)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._wrap(key)
        except (KeyError, IndexError, TypeError):
            raise AttributeError(key) from None

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self._wrap(key)
        except (KeyError, IndexError):
            return default

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def keys(self):
        return self._data.keys()

    def items(self):
        return [(k, self._wrap(k)) for k in self._data]

    def values(self):
        return [self._wrap(k) for k in self._data]

    def __repr__(self) -> str:
        return f"spec({self._data!r})"


def _unview(value: Any) -> Any:
    """A function's result with the ``_View`` objects it returned made plain values again.

    A view holding values that are not resolved yet defers the function until they are.
    """
    if isinstance(value, _View):
        for sub_path, _ in _walk(value._data):
            raise _Unresolved(value._path + sub_path)
        return _freeze(_thaw(value._data))
    if type(value) in (dict, list, tuple):
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        plain = [(k, _unview(v)) for k, v in items]
        if any(new is not old for (_, new), (_, old) in zip(plain, items)):
            if isinstance(value, dict):
                return dict(plain)
            return type(value)(v for _, v in plain)
    return value


def _holds_special(value: Any) -> bool:
    return any(True for _ in _walk(value))


def resolve_one(config: Dict[str, Any], rng: random.Random, keep_grids: bool = False,
                allow_pending: bool = False) -> Dict[Path, Any]:
    """Resolve every domain and function in ``config`` (in place); return what was chosen.

    A value a domain or function produces that holds domains itself (a ``choice`` among
    dicts of domains, a function returning ``tune.uniform(...)``) is resolved in turn;
    its leaves are reported under their own paths as well.

    Args:
        config: a thawed space (see ``_thaw``); grid values must already be set.
        rng: the source of randomness.
        keep_grids: leave grid searches in place instead of refusing them.
        allow_pending: leave functions that read unresolved values (such as a grid
            kept by ``keep_grids``) in place instead of raising.
    """
    order: Dict[Path, None] = {}  # an ordered set
    pending: List[Tuple[Path, int]] = []

    def visit(path: Path, value: Any, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise SearchSpaceError(f"{format_path(path)}: sampled values hold domains more "
                                   f"than {_MAX_NESTING} levels deep; does the space contain "
                                   "itself?")
        if _is_grid(value):
            if keep_grids:
                return
            raise SearchSpaceError(f"{format_path(path)}: a grid_search inside a grid_search "
                                   "value or a sampled value is not supported")
        if value.problem:
            raise SearchSpaceError(f"{format_path(path)}: {value.problem}")
        if isinstance(value, Function):
            pending.append((path, depth))
        else:
            place(path, value.sample(rng), depth)

    def place(path: Path, value: Any, depth: int) -> None:
        if _holds_special(value):
            value = _thaw(value)  # never resolve inside the space's own objects
        _set(config, path, value)
        order[path] = None
        for sub_path, sub_value in list(_walk(value, path)):
            visit(sub_path, sub_value, depth + 1)

    for path, value in list(_walk(config)):
        visit(path, value, 0)
    view = _View(config)
    while pending:
        batch, pending = pending, []
        deferred: List[Tuple[Path, int, Path]] = []
        for path, depth in batch:
            fn = _get(config, path)
            try:
                value = _unview(fn.sample(rng, view))
            except _Unresolved as exc:
                deferred.append((path, depth, exc.path))
                continue
            except SearchSpaceError:
                raise
            except Exception as exc:
                raise SearchSpaceError(f"{format_path(path)}: the sample_from function raised "
                                       f"{type(exc).__name__}: {exc}") from exc
            place(path, value, depth)
        if len(deferred) == len(batch):  # no function could run
            if allow_pending:
                break
            waits = "; ".join(f"{format_path(p)} reads {format_path(q)}"
                              for p, _, q in deferred)
            raise SearchSpaceError("sample_from functions depend on each other in a circle or "
                                   f"on values that never resolve: {waits}")
        pending = [(p, d) for p, d, _ in deferred] + pending
    return {path: _freeze(_get(config, path)) for path in order}


def _grid_points(space: Any, fixed: Optional[Dict[Path, Any]]) -> Iterator[Dict[Path, Any]]:
    grids = sorted(((path, value["grid_search"]) for path, value in _walk(space)
                    if _is_grid(value) and not _fixed_by(path, fixed)),
                   key=lambda item: path_sort_key(item[0]))
    if not grids:
        yield {}
        return
    paths = [p for p, _ in grids]
    # itertools.product varies its last argument fastest; reversed, the first path does.
    for combo in itertools.product(*[values for _, values in reversed(grids)]):
        yield dict(zip(reversed(paths), combo))


def generate_variants(space: Dict[str, Any], rng: random.Random,
                      constant_grid_search: bool = False,
                      preset: Optional[Dict[Path, Any]] = None,
                      ) -> Iterator[Tuple[Dict[str, Any], Dict[Path, Any]]]:
    """One sample of the space: a config for each grid point, lazily.

    Yields ``(config, chosen)`` where ``chosen`` maps each resolved path to its value.
    ``preset`` fixes some paths (a point to evaluate) before anything is sampled.
    With ``constant_grid_search``, everything that does not read a grid value (domains
    and ``sample_from`` functions alike) is resolved once and shared by all grid points,
    as in Ray Tune; the rest is resolved for each grid point.
    """
    base = _thaw(space)
    for path, value in (preset or {}).items():
        _set_creating(base, path, _thaw(value))
    constant: Dict[Path, Any] = {}
    if constant_grid_search:
        constant = resolve_one(base, rng, keep_grids=True, allow_pending=True)
    for point in _grid_points(space, preset):
        config = _thaw(base)
        for path, value in point.items():
            _set(config, path, _thaw(value))
        resolved = resolve_one(config, rng)
        # Read the values back: a grid or constant value may have held domains that were
        # resolved only now.
        paths = [*(preset or {}), *point, *constant, *resolved]
        chosen = {path: _freeze(_get(config, path)) for path in dict.fromkeys(paths)}
        yield _freeze(config), chosen


class _TupleList(list):
    """A tuple being resolved: a list while values are set, a tuple again at the end."""


def _thaw(value: Any) -> Any:
    """Copy the containers of a space (not the leaves: constants are shared, not copied)."""
    if _is_grid(value):
        return value
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, _TupleList)):
        return _TupleList(_thaw(v) for v in value)
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, _TupleList):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, list):
        return [_freeze(v) for v in value]
    return value


def _set_creating(config: Dict[str, Any], path: Path, value: Any) -> None:
    target = config
    for p in path[:-1]:
        if isinstance(target, dict) and (p not in target or not isinstance(target[p],
                                                                           (dict, list))):
            target[p] = {}
        target = target[p]
    target[path[-1]] = value


def flatten_point(point: Mapping[str, Any], prefix: Path = ()) -> Dict[Path, Any]:
    """A point to evaluate (nested dict) as ``{path: value}`` leaves."""
    out: Dict[Path, Any] = {}
    for key, value in point.items():
        path = prefix + (key,)
        if isinstance(value, dict) and value and not _is_grid(value):
            out.update(flatten_point(value, path))
        else:
            out[path] = value
    return out


def format_tag(index: int, chosen: Mapping[Path, Any]) -> str:
    """``"<index>_a=1,lr=0.001"``: the short tag shown for a trial."""
    parts = []
    for path, value in sorted(chosen.items(), key=lambda item: path_sort_key(item[0])):
        if not path:
            continue
        name = str(path[-1])
        if isinstance(path[-1], int) and len(path) > 1:  # a list element: "k_0"
            name = f"{path[-2]}_{path[-1]}"
        if isinstance(value, float):
            text = f"{value:.4g}"
        else:
            text = str(value)
        parts.append(f"{name}={text[:30]}")
    return f"{index}_" + ",".join(parts) if parts else str(index)


def path_str(path: Path) -> str:
    return "/".join(str(p) for p in path)
