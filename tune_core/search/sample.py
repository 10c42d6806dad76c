"""Search-space domains with Ray Tune's names and meanings.

A domain does not raise when it is built with bad arguments: it remembers the
problem, and ``Tuner(...)`` reports it with the parameter's path
(``param_space['model']['lr']: loguniform needs lower > 0, got -1``). Sampling a
bad domain directly raises the same message without the path.
"""

from __future__ import annotations

import inspect
import math
import numbers
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tune_core.error import SearchSpaceError

__all__ = [
    "Domain", "Float", "Integer", "Categorical", "Function",
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn", "randint",
    "qrandint", "lograndint", "qlograndint", "choice", "sample_from", "grid_search",
]


def _num(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _quantize(value: float, q: float) -> float:
    return round(value / q) * q


class Domain:
    """Base class of everything that can be sampled in a search space."""

    #: set when the arguments were bad; reported with the path by the Tuner
    problem: Optional[str] = None

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        raise NotImplementedError

    def check(self) -> None:
        if self.problem:
            raise SearchSpaceError(self.problem)

    def is_grid(self) -> bool:
        return False

    def is_function(self) -> bool:
        return False


class Float(Domain):
    """A float: uniform, log-uniform or normal, optionally quantized to multiples of ``q``."""

    def __init__(self, name: str, kind: str, lower: float = None, upper: float = None,
                 q: Optional[float] = None, base: float = 10, mean: float = 0.0,
                 sd: float = 1.0) -> None:
        self.name, self.kind, self.lower, self.upper = name, kind, lower, upper
        self.q, self.base, self.mean, self.sd = q, base, mean, sd
        self.problem = self._validate()

    def _validate(self) -> Optional[str]:
        n = self.name
        if self.kind == "normal":
            if not (_num(self.mean) and _num(self.sd)):
                return f"{n} needs numbers for mean and sd, got mean={self.mean!r}, sd={self.sd!r}"
            if self.sd <= 0:
                return f"{n} needs sd > 0, got sd={self.sd!r}"
        else:
            if not (_num(self.lower) and _num(self.upper)):
                return (f"{n} needs numbers for lower and upper, got lower={self.lower!r}, "
                        f"upper={self.upper!r}")
            if self.lower >= self.upper:
                return f"{n} needs lower < upper, got lower={self.lower!r}, upper={self.upper!r}"
            if self.kind == "log":
                if self.lower <= 0:
                    return f"{n} is a log domain and needs lower > 0, got lower={self.lower!r}"
                if not _num(self.base) or self.base <= 0 or self.base == 1:
                    return f"{n} needs a base > 0 other than 1, got base={self.base!r}"
        if self.q is not None:
            if not _num(self.q) or self.q <= 0:
                return f"{n} needs q > 0, got q={self.q!r}"
            if self.kind != "normal":
                lo, hi = math.ceil(self.lower / self.q - 1e-9), math.floor(self.upper / self.q
                                                                            + 1e-9)
                if lo > hi:
                    return (f"{n}: no multiple of q={self.q!r} lies in "
                            f"[{self.lower!r}, {self.upper!r}]")
        return None

    def sample(self, rng: random.Random, spec: Any = None) -> float:
        self.check()
        if self.kind == "normal":
            value = rng.gauss(self.mean, self.sd)
        elif self.kind == "log":
            lo, hi = math.log(self.lower), math.log(self.upper)
            value = math.exp(rng.uniform(lo, hi))
        else:
            value = rng.uniform(self.lower, self.upper)
        if self.q is not None:
            value = _quantize(value, self.q)
            if self.kind != "normal":  # stay inside the bounds after rounding
                lo = math.ceil(self.lower / self.q - 1e-9) * self.q
                hi = math.floor(self.upper / self.q + 1e-9) * self.q
                value = min(max(value, lo), hi)
            # Remove float noise such as 0.30000000000000004 for q=0.1.
            digits = max(0, -int(math.floor(math.log10(self.q)))) + 6 if self.q < 1 else 9
            value = round(value, digits)
        elif self.kind != "normal":
            value = min(max(value, self.lower), self.upper)
        return float(value)

    def __repr__(self) -> str:
        if self.kind == "normal":
            return f"{self.name}({self.mean!r}, {self.sd!r})"
        return f"{self.name}({self.lower!r}, {self.upper!r})"


def _whole(x: Any) -> bool:
    return _num(x) and float(x).is_integer()


class Integer(Domain):
    """An integer: uniform or log-uniform, optionally quantized to multiples of ``q``.

    With ``q`` the domain is one over the multiples of ``q`` in the bounds, so each
    multiple is equally likely (log-uniform over them for the log kind); ``upper`` is
    then included unless ``q == 1``, as in Ray Tune.
    """

    def __init__(self, name: str, kind: str, lower: int, upper: int, q: Optional[int] = None,
                 base: float = 10) -> None:
        self.name, self.kind, self.lower, self.upper, self.q, self.base = (
            name, kind, lower, upper, q, base)
        self.problem = self._validate()
        if self.problem is None:  # whole floats such as 1e3 become ints
            self.lower, self.upper = int(lower), int(upper)
            self.q = None if q is None else int(q)

    def _validate(self) -> Optional[str]:
        n = self.name
        bad = [f"{k}={v!r}" for k, v in (("lower", self.lower), ("upper", self.upper))
               if not _whole(v)]
        if bad:
            return (f"{n} needs integer bounds, got {', '.join(bad)}; use whole numbers "
                    f"such as 0 or 1000 (for float values use uniform or quniform)")
        if self.lower >= self.upper:
            return f"{n} needs lower < upper, got lower={self.lower!r}, upper={self.upper!r}"
        if self.kind == "log" and self.lower <= 0:
            return f"{n} is a log domain and needs lower > 0, got lower={self.lower!r}"
        if self.q is not None:
            if not _whole(self.q) or self.q <= 0:
                return f"{n} needs an integer q > 0 such as 1 or 5, got q={self.q!r}"
            lo, hi = self._index_range(int(self.lower), int(self.upper), int(self.q))
            if lo >= hi:
                return (f"{n}: no multiple of q={self.q!r} lies in "
                        f"[{self.lower!r}, {self.upper!r}]")
        return None

    @staticmethod
    def _index_range(lower: int, upper: int, q: int) -> Tuple[int, int]:
        """The multiples ``k * q`` that may be drawn, as ``range(lo, hi)`` of ``k``."""
        lo = -((-lower) // q)  # ceil(lower / q), exact for ints
        hi = upper // q
        return lo, hi if q == 1 else hi + 1  # upper exclusive only for q == 1

    def sample(self, rng: random.Random, spec: Any = None) -> int:
        self.check()
        q = self.q or 1
        lo, hi = self._index_range(self.lower, self.upper, q)
        if self.kind == "log":
            k = int(math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
            k = min(max(k, lo), hi - 1)
        else:
            k = rng.randrange(lo, hi)
        return k * q

    def __repr__(self) -> str:
        return f"{self.name}({self.lower!r}, {self.upper!r})"


class Categorical(Domain):
    """A choice among categories, each equally likely."""

    def __init__(self, categories: Sequence[Any]) -> None:
        self.problem = None
        try:
            self.categories: List[Any] = list(categories)
        except TypeError:
            self.categories = []
            self.problem = f"choice needs a list of categories, got {categories!r}"
            return
        if isinstance(categories, (str, bytes, dict)):
            self.problem = f"choice needs a list of categories, got {categories!r}"
        elif not self.categories:
            self.problem = "choice needs at least one category, got an empty list"

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        """One category as it is; the resolver samples any domains it holds."""
        self.check()
        return self.categories[rng.randrange(len(self.categories))]

    def __repr__(self) -> str:
        return f"choice({self.categories!r})"


class Function(Domain):
    """``sample_from(func)``: a value computed by a function.

    A function of one argument gets the config being resolved (and may read the other
    values); a function of no arguments is just called, as in Ray Tune.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.pass_config = True
        self.problem = None
        if not callable(func):
            self.problem = f"sample_from needs a function, got {func!r}"
            return
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have none: pass the config
            return
        # Ray Tune's rule: pass the config whenever the function can take one argument.
        for args in (({},), ()):
            try:
                sig.bind(*args)
            except TypeError:
                continue
            self.pass_config = bool(args)
            return
        self.problem = (f"sample_from needs a function of 0 or 1 arguments, got "
                        f"{getattr(func, '__name__', func)!r} with signature {sig}")

    def is_function(self) -> bool:
        return True

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        self.check()
        return self.func(spec) if self.pass_config else self.func()

    def __repr__(self) -> str:
        return f"sample_from({getattr(self.func, '__name__', self.func)!r})"


def uniform(lower: float, upper: float) -> Float:
    """A float uniformly between ``lower`` and ``upper``."""
    return Float("uniform", "uniform", lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """A uniform float rounded to a multiple of ``q`` (``upper`` included)."""
    return Float("quniform", "uniform", lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float uniform on a log scale between ``lower`` > 0 and ``upper``."""
    return Float("loguniform", "log", lower, upper, base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """A log-uniform float rounded to a multiple of ``q``."""
    return Float("qloguniform", "log", lower, upper, q=q, base=base)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A normally distributed float."""
    return Float("randn", "normal", mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float rounded to a multiple of ``q``."""
    return Float("qrandn", "normal", mean=mean, sd=sd, q=q)


def randint(lower: int, upper: int) -> Integer:
    """An integer in ``[lower, upper)``."""
    return Integer("randint", "uniform", lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of ``q`` in ``[lower, upper]``, each equally likely.

    ``upper`` is excluded when ``q == 1``, as in Ray Tune.
    """
    return Integer("qrandint", "uniform", lower, upper, q=q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An integer in ``[lower, upper)`` uniform on a log scale."""
    return Integer("lograndint", "log", lower, upper, base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A multiple of ``q`` in ``[lower, upper]``, log-uniform (``upper`` excluded if q == 1)."""
    return Integer("qlograndint", "log", lower, upper, q=q, base=base)


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``, each equally likely; domains inside it are sampled too."""
    return Categorical(categories)


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed by ``func``, which may read other values of the config.

    ``lambda spec: spec.config.a`` (Ray Tune's style), ``lambda config: config["a"]``
    and ``lambda: random.random()`` all work. If the function returns a domain, or
    a value holding domains, those are sampled too.
    """
    return Function(func)


def grid_search(values: Sequence[Any]) -> Dict[str, List[Any]]:
    """Try every value: the experiment runs the cross product of all grid searches."""
    return {"grid_search": list(values)}
