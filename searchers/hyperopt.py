"""HyperOpt's Tree-structured Parzen Estimator as a tune searcher (Ray Tune's ``HyperOptSearch``).

The searcher asks hyperopt for one trial at a time: it keeps a ``hyperopt.Trials`` object,
calls ``tpe.suggest`` for one new trial document per :meth:`HyperOptSearch.suggest`, and
writes the loss into that document when the trial completes.

A tune search space is converted into a tree of our own (``_Node``) alongside the hyperopt
expression, so that configurations are rebuilt exactly as the user wrote them (dicts,
tuples, mixed-type categories) and ``points_to_evaluate`` can be mapped back onto
hyperopt's labels, also inside conditional (``choice`` over dicts) spaces. The conversion
is total or refuses: anything hyperopt cannot represent raises a ``ValueError`` naming the
parameter path before the first trial.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, List, Optional, Tuple

from tune_core.search.sample import Categorical, Domain, Float, Function, Integer
from tune_core.search.searcher import Searcher

__all__ = ["HyperOptSearch"]

logger = logging.getLogger(__name__)

_EPS = 1e-6


def _import_hyperopt():
    try:
        import hyperopt  # noqa: F401
        from hyperopt import tpe  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("HyperOptSearch needs the hyperopt package: pip install hyperopt") from exc
    return hyperopt


def _objective(_: Any) -> None:  # hyperopt's Domain wants a function; trials run elsewhere
    raise RuntimeError("HyperOptSearch evaluates trials through tune, not hyperopt.fmin")


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and "grid_search" in value


def _has_domains(space: Any) -> bool:
    if isinstance(space, Domain) or _is_grid(space):
        return True
    if isinstance(space, dict):
        return any(_has_domains(v) for v in space.values())
    if isinstance(space, (list, tuple)):
        return any(_has_domains(v) for v in space)
    return False


def _is_hyperopt_space(space: Any) -> bool:
    try:
        from hyperopt.pyll import Apply
    except ImportError:  # pragma: no cover
        return False
    if isinstance(space, Apply):
        return True
    if isinstance(space, dict):
        return any(_is_hyperopt_space(v) for v in space.values())
    if isinstance(space, (list, tuple)):
        return any(_is_hyperopt_space(v) for v in space)
    return False


def _to_python(value: Any) -> Any:
    """numpy scalars (as hyperopt returns them) to plain Python numbers."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_python(v) for v in value)
    return value


# ----------------------------------------------------------------------------- the space tree
#
# Nodes are plain tuples so that they pickle without the hyperopt graph:
#   ("const", value)
#   ("dict", {key: node})
#   ("seq", [node], is_tuple)
#   ("param", label, domain)           a tune Float/Integer, one hyperopt label
#   ("choice", label, [node])          a tune Categorical, hp.choice over the options
_Node = Tuple[Any, ...]


def _describe(domain: Any) -> str:
    return f"{type(domain).__name__} {domain!r}"


def _refuse(path: str, domain: Any, why: str) -> ValueError:
    return ValueError(f"HyperOptSearch cannot use parameter {path!r} ({_describe(domain)}): {why}")


def _build_tree(space: Any, path: str) -> _Node:
    shown = path or "<root>"
    if _is_grid(space):
        raise _refuse(shown, space, "grid_search has no hyperopt equivalent; use "
                      "tune.choice(...) for a searched category, or BasicVariantGenerator "
                      "(the default search) for a grid")
    if isinstance(space, Function):
        raise _refuse(shown, space, "sample_from computes values from other parameters, "
                      "which hyperopt cannot model; use a tune domain such as "
                      "tune.uniform or tune.choice")
    if isinstance(space, Domain):
        if space.problem:
            raise ValueError(f"HyperOptSearch: parameter {shown!r}: {space.problem}")
        if isinstance(space, Categorical):
            return ("choice", shown, [_build_tree(opt, f"{path}/{i}" if path else str(i))
                                      for i, opt in enumerate(space.categories)])
        if isinstance(space, Float):
            if space.kind not in ("uniform", "log", "normal"):
                raise _refuse(shown, space, f"unknown float kind {space.kind!r}")
            return ("param", shown, space)
        if isinstance(space, Integer):
            if space.kind not in ("uniform", "log"):
                raise _refuse(shown, space, f"unknown integer kind {space.kind!r}")
            return ("param", shown, space)
        raise _refuse(shown, space, "hyperopt has no equivalent for this domain type")
    if isinstance(space, dict):
        for key in space:
            if not isinstance(key, str):
                raise ValueError(f"HyperOptSearch: key {key!r} under {shown!r} must be a string")
        return ("dict", {k: _build_tree(v, f"{path}/{k}" if path else k)
                         for k, v in space.items()})
    if isinstance(space, (list, tuple)) and _has_domains(space):
        return ("seq", [_build_tree(v, f"{path}/{i}" if path else str(i))
                        for i, v in enumerate(space)], isinstance(space, tuple))
    return ("const", copy.deepcopy(space))


def _grid_bounds(lower: float, upper: float, q: float) -> Tuple[float, float]:
    return (math.ceil(lower / q - 1e-9) * q, math.floor(upper / q + 1e-9) * q)


def _round_q(value: float, q: float) -> float:
    digits = max(0, -int(math.floor(math.log10(q)))) + 6 if q < 1 else 9
    return round(value, digits)


def _int_index_range(domain: Integer) -> Tuple[int, int]:
    """Admissible values are ``k * q`` for ``k`` in ``range(lo, hi)`` (tune's semantics)."""
    q = domain.q or 1
    lo = -((-domain.lower) // q)
    hi = domain.upper // q
    return lo, (hi if q == 1 else hi + 1)


def _hp_param(label: str, d: Domain):
    """The hyperopt expression sampling the raw value of a ``("param", ...)`` node."""
    from hyperopt import hp

    if isinstance(d, Float):
        if d.kind == "normal":
            return hp.qnormal(label, d.mean, d.sd, d.q) if d.q else hp.normal(label, d.mean, d.sd)
        if d.q is None:
            if d.kind == "log":
                return hp.loguniform(label, math.log(d.lower), math.log(d.upper))
            return hp.uniform(label, d.lower, d.upper)
        lo, hi = _grid_bounds(d.lower, d.upper, d.q)
        if d.kind == "log":
            return hp.qloguniform(label, math.log(d.lower), math.log(d.upper), d.q)
        # Each multiple of q in the bounds equally likely, as in tune's quniform.
        return hp.quniform(label, lo - d.q / 2 + _EPS * d.q, hi + d.q / 2 - _EPS * d.q, d.q)
    # Integer: hyperopt samples the index k; the value is k * q. Ordinal (quniform) rather
    # than categorical (randint), so TPE models neighbourhoods.
    lo, hi = _int_index_range(d)
    if d.kind == "log":
        return hp.qloguniform(label, math.log(lo - 0.5 + _EPS), math.log(hi - 0.5 - _EPS), 1)
    return hp.quniform(label, lo - 0.5 + _EPS, hi - 0.5 - _EPS, 1)


def _hp_space(node: _Node):
    from hyperopt import hp

    kind = node[0]
    if kind == "const":
        return None  # a placeholder: constants are rebuilt from the tree, not by hyperopt
    if kind == "dict":
        return {k: _hp_space(v) for k, v in node[1].items()}
    if kind == "seq":
        return [_hp_space(v) for v in node[1]]
    if kind == "param":
        return _hp_param(node[1], node[2])
    return hp.choice(node[1], [_hp_space(v) for v in node[2]])


def _decode_param(d: Domain, raw: float) -> Any:
    raw = float(raw)
    if isinstance(d, Float):
        if d.kind == "normal":
            return _round_q(raw, d.q) if d.q else raw
        if d.q is None:
            return float(min(max(raw, d.lower), d.upper))
        lo, hi = _grid_bounds(d.lower, d.upper, d.q)
        return float(_round_q(min(max(round(raw / d.q) * d.q, lo), hi), d.q))
    lo, hi = _int_index_range(d)
    k = min(max(int(round(raw)), lo), hi - 1)
    return k * (d.q or 1)


def _encode_param(d: Domain, value: Any, path: str) -> float:
    """A user value (from points_to_evaluate) as hyperopt's raw value; checks it is valid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"HyperOptSearch(points_to_evaluate=...): {path!r} must be a number "
                         f"for {_describe(d)}, got {value!r}")
    if isinstance(d, Float):
        if d.kind != "normal" and not d.lower <= value <= d.upper:
            raise ValueError(f"HyperOptSearch(points_to_evaluate=...): {path!r}={value!r} is "
                             f"outside [{d.lower!r}, {d.upper!r}] of {_describe(d)}")
        return float(value)
    q = d.q or 1
    lo, hi = _int_index_range(d)
    if value != int(value) or int(value) % q or not lo <= int(value) // q < hi:
        raise ValueError(f"HyperOptSearch(points_to_evaluate=...): {path!r}={value!r} is not "
                         f"a value of {_describe(d)} (a multiple of {q} with index in "
                         f"[{lo}, {hi}))")
    return float(int(value) // q)


def _decode(node: _Node, vals: Dict[str, Any], prune: bool = False) -> Any:
    """The configuration for hyperopt's ``vals``.

    With ``prune``, constants outside any choice are left out (the Tuner merges the
    param_space's constants back in), so trial names list only searched values.
    """
    kind = node[0]
    if kind == "const":
        return copy.deepcopy(node[1])
    if kind == "dict":
        out = {}
        for k, v in node[1].items():
            if prune and v[0] == "const":
                continue
            value = _decode(v, vals, prune)
            if not (prune and v[0] == "dict" and value == {}):
                out[k] = value
        return out
    if kind == "seq":
        items = [_decode(v, vals) for v in node[1]]
        return tuple(items) if node[2] else items
    if kind == "param":
        return _decode_param(node[2], vals[node[1]])
    return _decode(node[2][int(vals[node[1]])], vals)


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart (choice must round-trip types exactly)."""
    if type(a) is not type(b) and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays
        return a is b


def _encode(node: _Node, value: Any, path: str, vals: Dict[str, float]) -> bool:
    """Fills ``vals`` with the labels that produce ``value``; False if it cannot."""
    kind = node[0]
    if kind == "const":
        return _same(node[1], value)
    if kind == "dict":
        if not isinstance(value, dict) or set(value) - set(node[1]):
            return False
        for k, child in node[1].items():
            sub = f"{path}/{k}" if path else k
            if k not in value:
                continue  # left out of the point: sampled (constants: kept as written)
            if not _encode(child, value[k], sub, vals):
                return False
        return True
    if kind == "seq":
        if not isinstance(value, (list, tuple)) or len(value) != len(node[1]):
            return False
        return all(_encode(c, v, f"{path}/{i}", vals) for i, (c, v) in enumerate(zip(node[1],
                                                                                      value)))
    if kind == "param":
        vals[node[1]] = _encode_param(node[2], value, path)
        return True
    for i, option in enumerate(node[2]):  # the first option that can produce the value
        trial_vals: Dict[str, float] = {}
        try:
            ok = _encode(option, value, path, trial_vals)
        except ValueError:
            ok = False
        if ok:
            vals[node[1]] = float(i)
            vals.update(trial_vals)
            return True
    return False


# ------------------------------------------------------------------- native hyperopt spaces

def _native_encode(expr: Any, value: Any, vals: Dict[str, Any]) -> bool:
    """Like :func:`_encode` for a space written with ``hyperopt.hp``."""
    from hyperopt.pyll import Apply, Literal

    if isinstance(expr, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and _native_encode(v, value[k], vals) for k, v in expr.items())
    if isinstance(expr, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(expr)
                and all(_native_encode(e, v, vals) for e, v in zip(expr, value)))
    if isinstance(expr, Literal):
        return _same(_to_python(expr.obj), value)
    if not isinstance(expr, Apply):
        return _same(expr, value)
    name = expr.name
    if name == "dict":
        return _native_encode(dict(expr.named_args), value, vals)
    if name == "pos_args":
        return _native_encode(list(expr.pos_args), value, vals)
    if name in ("float", "int"):
        return _native_encode(expr.pos_args[0], value, vals)
    if name == "hyperopt_param":
        vals[expr.pos_args[0].obj] = value
        return True
    if name == "switch":
        label = expr.pos_args[0].pos_args[0].obj
        for i, option in enumerate(expr.pos_args[1:]):
            sub: Dict[str, Any] = {}
            if _native_encode(option, value, sub):
                vals[label] = i
                vals.update(sub)
                return True
        return False
    raise ValueError(f"HyperOptSearch(points_to_evaluate=...): cannot map a point onto the "
                     f"hyperopt expression {name!r}; give the points as hyperopt values")


# ------------------------------------------------------------------------------ the searcher

class HyperOptSearch(Searcher):
    """TPE (hyperopt) over a tune search space or a hyperopt space.

    Args:
        space: A tune param_space (``{"lr": tune.loguniform(1e-4, 1e-1)}``) or a space
            written with ``hyperopt.hp``. If None, the Tuner's ``param_space`` is used.
        metric: The result key to optimise; else ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; else ``TuneConfig(mode=...)``.
        points_to_evaluate: Configurations (dicts as the trainable receives them) to try
            first, in order. With a tune space, parameters left out are sampled; with a
            hyperopt space, give every parameter of the branches the point takes.
        n_initial_points: Random trials before TPE starts modelling (hyperopt's
            ``n_startup_jobs``).
        random_state_seed: Seed; the same seed gives the same suggestions.
        gamma: TPE's quantile separating good from bad trials.
    """

    def __init__(self, space: Optional[Dict[str, Any]] = None, metric: Optional[str] = None,
                 mode: Optional[str] = None,
                 points_to_evaluate: Optional[List[Dict[str, Any]]] = None,
                 n_initial_points: int = 20, random_state_seed: Optional[int] = None,
                 gamma: float = 0.25) -> None:
        _import_hyperopt()
        import numpy as np

        super().__init__(metric=metric, mode=mode)
        if not isinstance(n_initial_points, int) or n_initial_points < 0:
            raise ValueError(f"HyperOptSearch(n_initial_points={n_initial_points!r}): use an "
                             "integer >= 0")
        if not 0 < gamma < 1:
            raise ValueError(f"HyperOptSearch(gamma={gamma!r}): use a number in (0, 1)")
        if points_to_evaluate is not None and not (
                isinstance(points_to_evaluate, (list, tuple))
                and all(isinstance(p, dict) for p in points_to_evaluate)):
            raise ValueError(f"HyperOptSearch(points_to_evaluate={points_to_evaluate!r}): use a "
                             "list of dicts")
        self._points = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self._n_initial_points = n_initial_points
        self._gamma = gamma
        self._rng = np.random.RandomState(random_state_seed)
        self._tree: Optional[_Node] = None
        self._native: Any = None  # a hyperopt.hp space given by the user
        self._space_from_config = False
        self._trials: Any = None
        self._live: Dict[str, int] = {}  # trial_id -> hyperopt tid
        self._domain: Any = None
        if space is not None:
            self._set_space(space)

    # -- space ------------------------------------------------------------------------------

    def _set_space(self, space: Dict[str, Any]) -> None:
        import hyperopt

        if not isinstance(space, dict):
            raise ValueError(f"HyperOptSearch(space={space!r}): use a dict (a tune param_space "
                             "or a space of hyperopt.hp expressions)")
        if _is_hyperopt_space(space):
            if _has_domains(space):
                raise ValueError("HyperOptSearch(space=...): mixes tune domains and hyperopt.hp "
                                 "expressions; write the space with one of them")
            self._native, self._tree = space, None
        else:
            self._tree, self._native = _build_tree(space, ""), None
        self._domain = None
        self._trials = hyperopt.Trials()
        self._live = {}
        self._check_points()
        self._hyperopt_domain()  # build now so hyperopt's own complaints come early

    def _hyperopt_domain(self):
        import hyperopt

        if self._domain is None:
            space = self._native if self._native is not None else _hp_space(self._tree)
            self._domain = hyperopt.Domain(_objective, space)
        return self._domain

    def _point_vals(self, point: Dict[str, Any]) -> Dict[str, Any]:
        vals: Dict[str, Any] = {}
        if self._native is not None:
            ok = _native_encode(self._native, point, vals)
        else:
            ok = _encode(self._tree, point, "", vals)
        if not ok:
            raise ValueError(f"HyperOptSearch(points_to_evaluate=...): the point {point!r} is not "
                             "in the search space (a value matches no category of a choice, or "
                             "has the wrong shape)")
        return vals

    def _check_points(self) -> None:
        for point in self._points:
            self._point_vals(point)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict[str, Any], **spec: Any) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        if self._metric is None or self._mode is None:
            raise ValueError("HyperOptSearch needs a metric and a mode: pass "
                             "HyperOptSearch(metric=..., mode=...) or set "
                             "TuneConfig(metric=..., mode=...)")
        if config and _has_domains(config):
            if self._tree is not None or self._native is not None:
                if not self._space_from_config:
                    raise ValueError("HyperOptSearch got a space twice: in HyperOptSearch(space="
                                     "...) and as domains in the Tuner's param_space; give it "
                                     "in one place")
                return True  # restored: keep the trials already made
            self._set_space(config)
            self._space_from_config = True
        return True

    # -- the ask/tell loop ------------------------------------------------------------------

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        from hyperopt import tpe

        if self._tree is None and self._native is None:
            raise ValueError("HyperOptSearch has no search space: pass HyperOptSearch(space=...) "
                             "or put tune domains in the Tuner's param_space")
        if self._metric is None or self._mode is None:
            raise ValueError("HyperOptSearch needs a metric and a mode: pass "
                             "HyperOptSearch(metric=..., mode=...) or set "
                             "TuneConfig(metric=..., mode=...)")
        domain = self._hyperopt_domain()
        trials = self._trials
        new_ids = trials.new_trial_ids(1)
        trials.refresh()
        seed = int(self._rng.randint(2 ** 31 - 1))
        if self._points:
            point = self._points.pop(0)
            docs = self._docs_for_point(new_ids, domain, point, seed)
        else:
            docs = tpe.suggest(new_ids, domain, trials, seed,
                               n_startup_jobs=self._n_initial_points, gamma=self._gamma)
        trials.insert_trial_docs(docs)
        trials.refresh()
        doc = docs[0]
        self._live[trial_id] = doc["tid"]
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if len(v)}
        return self._config(vals)

    def _docs_for_point(self, new_ids, domain, point, seed):
        """A trial document for a user's point; missing parameters sampled at random."""
        from hyperopt import rand

        docs = rand.suggest(new_ids, domain, self._trials, seed)
        fixed = self._point_vals(point)
        sampled = {k: v[0] for k, v in docs[0]["misc"]["vals"].items() if len(v)}
        merged = {**sampled, **fixed}
        if self._tree is not None:
            import numpy as np

            _fill(self._tree, merged, np.random.default_rng(seed))
        # Keep only the labels active under the point's choices (hyperopt's idxs/vals layout).
        active = self._active_labels(merged)
        tid = docs[0]["tid"]
        misc = docs[0]["misc"]
        misc["vals"] = {k: ([merged[k]] if k in active else []) for k in misc["vals"]}
        misc["idxs"] = {k: ([tid] if k in active else []) for k in misc["vals"]}
        return docs

    def _active_labels(self, vals: Dict[str, Any]) -> set:
        if self._native is not None:
            return set(_native_active(self._native, vals))
        return set(_tree_active(self._tree, vals))

    def _config(self, vals: Dict[str, Any]) -> Dict[str, Any]:
        if self._native is not None:
            import hyperopt

            return _to_python(hyperopt.space_eval(self._native, vals))
        return _decode(self._tree, vals, prune=self._space_from_config)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        import hyperopt

        tid = self._live.pop(trial_id, None)
        if tid is None:
            return
        doc = next((d for d in self._trials._dynamic_trials if d["tid"] == tid), None)
        if doc is None:
            return
        value = None if (error or not result) else result.get(self._metric)
        if value is not None and not isinstance(value, bool):
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
        if value is not None and math.isfinite(value):
            loss = -value if self._mode == "max" else value
            doc["result"] = {"loss": loss, "status": hyperopt.STATUS_OK}
        else:
            if not error and result:
                logger.warning("HyperOptSearch: trial %s reported no finite %r; recorded as "
                               "failed", trial_id, self._metric)
            doc["result"] = {"status": hyperopt.STATUS_FAIL}
        doc["state"] = hyperopt.JOB_STATE_DONE  # failed ones too: kept, with STATUS_FAIL
        self._trials.refresh()

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        """Tells TPE about a configuration evaluated outside this search."""
        domain = self._hyperopt_domain()
        new_ids = self._trials.new_trial_ids(1)
        self._trials.refresh()
        docs = self._docs_for_point(new_ids, domain, parameters, int(self._rng.randint(2 ** 31 - 1)))
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        key = f"__evaluated_{new_ids[0]}"
        self._live[key] = docs[0]["tid"]
        self.on_trial_complete(key, None if error or pruned else {self._metric: value},
                               error=error or pruned)

    # -- state ------------------------------------------------------------------------------

    def get_state(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_domain"] = None  # rebuilt from the tree; holds hyperopt's compiled graph
        return state

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._domain = None

    def __getstate__(self) -> Dict[str, Any]:
        return self.get_state()

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.set_state(state)


def _tree_active(node: _Node, vals: Dict[str, Any]):
    kind = node[0]
    if kind == "dict":
        for child in node[1].values():
            yield from _tree_active(child, vals)
    elif kind == "seq":
        for child in node[1]:
            yield from _tree_active(child, vals)
    elif kind == "param":
        yield node[1]
    elif kind == "choice":
        yield node[1]
        yield from _tree_active(node[2][int(vals[node[1]])], vals)


def _fill(node: _Node, vals: Dict[str, Any], rng: Any) -> None:
    """Samples the active labels ``vals`` lacks (a point that chose a branch rand did not)."""
    from hyperopt.pyll.stochastic import sample

    kind = node[0]
    if kind in ("dict", "seq"):
        children = node[1].values() if kind == "dict" else node[1]
        for child in children:
            _fill(child, vals, rng)
    elif kind == "param":
        if node[1] not in vals:
            expr = _hp_param(node[1], node[2])
            vals[node[1]] = float(sample(expr, rng=rng))
    elif kind == "choice":
        if node[1] not in vals:
            vals[node[1]] = float(rng.integers(len(node[2])))
        _fill(node[2][int(vals[node[1]])], vals, rng)


def _native_active(expr: Any, vals: Dict[str, Any]):
    from hyperopt.pyll import Apply

    if isinstance(expr, dict):
        for v in expr.values():
            yield from _native_active(v, vals)
    elif isinstance(expr, (list, tuple)):
        for v in expr:
            yield from _native_active(v, vals)
    elif isinstance(expr, Apply):
        if expr.name == "hyperopt_param":
            yield expr.pos_args[0].obj
            yield from _native_active(expr.pos_args[1], vals)
        elif expr.name == "switch":
            label = expr.pos_args[0].pos_args[0].obj
            yield label
            yield from _native_active(expr.pos_args[1 + int(vals[label])], vals)
        else:
            for a in list(expr.pos_args) + [v for _, v in expr.named_args]:
                yield from _native_active(a, vals)
