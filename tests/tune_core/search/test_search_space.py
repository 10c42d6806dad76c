"""Domains, resolution of nested spaces, and BasicVariantGenerator."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import pytest

import tune_core as tune
from tune_core.error import SearchSpaceError
from tune_core.search.basic_variant import BasicVariantGenerator
from tune_core.search.variant_generator import validate_param_space

N = 2000


def draw(domain, n=N, seed=0):
    rng = random.Random(seed)
    return [domain.sample(rng) for _ in range(n)]


def test_uniform_and_quniform():
    xs = draw(tune.uniform(-2, 3))
    assert all(-2 <= x <= 3 for x in xs) and all(isinstance(x, float) for x in xs)
    assert abs(statistics.mean(xs) - 0.5) < 0.15
    qs = draw(tune.quniform(0, 1, 0.25))
    assert set(qs) == {0.0, 0.25, 0.5, 0.75, 1.0}  # upper bound reachable
    assert set(draw(tune.quniform(0, 1, 0.1))) <= {round(i / 10, 6) for i in range(11)}


def test_loguniform_is_uniform_in_log_space():
    xs = draw(tune.loguniform(1e-4, 1e-1))
    assert all(1e-4 <= x <= 1e-1 for x in xs)
    logs = [math.log10(x) for x in xs]
    assert abs(statistics.mean(logs) - (-2.5)) < 0.1
    assert all(1e-4 <= x <= 1e-1 for x in draw(tune.loguniform(1e-4, 1e-1, base=2)))
    q = draw(tune.qloguniform(1, 1000, 5))
    assert all(x % 5 == 0 and 0 < x <= 1000 for x in q)


def test_normal_domains():
    xs = draw(tune.randn(10, 2))
    assert abs(statistics.mean(xs) - 10) < 0.2 and abs(statistics.stdev(xs) - 2) < 0.2
    qs = draw(tune.qrandn(0, 1, 0.5))
    assert all((x / 0.5).is_integer() for x in qs)


def test_integer_domains():
    xs = draw(tune.randint(0, 5))
    assert set(xs) == {0, 1, 2, 3, 4} and all(type(x) is int for x in xs)  # upper excluded
    q = draw(tune.qrandint(0, 10, 5))
    assert set(q) == {0, 5, 10}  # upper included once q > 1
    assert set(draw(tune.qrandint(1, 4))) == {1, 2, 3}
    logs = draw(tune.lograndint(1, 1000))
    assert all(1 <= x < 1000 and type(x) is int for x in logs)
    assert sum(1 for x in logs if x < 10) > N * 0.25  # a log scale favours small values
    ql = draw(tune.qlograndint(10, 100, 10))
    assert set(ql) <= set(range(10, 101, 10)) and 100 in set(draw(tune.qlograndint(10, 100, 10),
                                                                  n=5000))


def test_choice():
    xs = draw(tune.choice(["a", [1, 2], {"k": 1}]))
    assert {repr(x) for x in xs} == {"'a'", "[1, 2]", "{'k': 1}"}


@pytest.mark.parametrize("space,fragment", [
    ({"lr": tune.uniform(1, 1)}, "lower < upper"),
    ({"m": {"lr": tune.loguniform(0, 1)}}, "lower > 0"),
    ({"x": tune.quniform(0, 1, 0)}, "q > 0"),
    ({"x": tune.qrandint(0, 10, -1)}, "q > 0"),
    ({"x": tune.randint(5, 2)}, "lower < upper"),
    ({"x": tune.randn(0, 0)}, "sd > 0"),
    ({"layers": [1, {"act": tune.choice([])}]}, "at least one category"),
    ({"x": tune.grid_search([])}, "at least one value"),
    ({"x": {"grid_search": 3}}, "list of values"),
    ({"x": tune.sample_from(3)}, "needs a function"),
])
def test_bad_spaces_name_the_path(space, fragment):
    with pytest.raises(SearchSpaceError) as info:
        validate_param_space(space)
    message = str(info.value)
    assert fragment in message
    key = next(iter(space))
    assert f"param_space[{key!r}]" in message


def test_bad_space_at_tuner_names_nested_path():
    with pytest.raises(SearchSpaceError, match=r"\['layers'\]\[1\]\['act'\]"):
        tune.Tuner(lambda c: None, param_space={"layers": [1, {"act": tune.choice([])}]})


def configs(space, num_samples=1, **kwargs):
    gen = BasicVariantGenerator(**kwargs)
    gen.add_configurations(space, num_samples)
    out = []
    while True:
        s = gen.next_trial(f"t{len(out)}")
        if s is None:
            break
        out.append(s)
    assert gen.is_finished()
    assert gen.total_samples == len(out)
    return out


def test_grid_cross_product_first_path_varies_fastest():
    out = configs({"b": tune.grid_search([1, 2]), "a": tune.grid_search(["x", "y", "z"])},
                  num_samples=2)
    pairs = [(s.config["a"], s.config["b"]) for s in out]
    assert pairs[:6] == [("x", 1), ("y", 1), ("z", 1), ("x", 2), ("y", 2), ("z", 2)]
    assert len(out) == 12 and pairs[6:] == pairs[:6]


def test_random_values_resampled_per_grid_point_unless_constant():
    space = {"g": tune.grid_search([1, 2, 3]), "u": tune.uniform(0, 1)}
    assert len({s.config["u"] for s in configs(space, random_state=0)}) == 3
    out = configs(space, num_samples=2, random_state=0, constant_grid_search=True)
    assert len({s.config["u"] for s in out[:3]}) == 1
    assert out[0].config["u"] != out[3].config["u"]


def test_nested_dicts_lists_and_constants():
    obj = object()
    (s,) = configs({"model": {"layers": [tune.choice([8, 16]), 4], "act": "relu"},
                    "obj": obj, "t": (1, tune.randint(0, 3))})
    assert s.config["model"]["layers"][0] in (8, 16) and s.config["model"]["layers"][1] == 4
    assert s.config["model"]["act"] == "relu" and s.config["obj"] is obj
    assert s.config["t"][0] == 1 and s.config["t"][1] in (0, 1, 2)
    assert set(s.evaluated_params) == {"model/layers/0", "t/1"}
    assert s.experiment_tag.startswith("0_")


def test_sample_from_both_styles_and_chains():
    out = configs({
        "a": tune.grid_search([1, 2]),
        "b": tune.sample_from(lambda spec: spec.config.a * 10),
        "c": tune.sample_from(lambda config: config["b"] + 1),
        "d": tune.sample_from(lambda spec: spec.config["nested"]["x"] * 2),
        "nested": {"x": tune.sample_from(lambda config: config.get("c") - 1)},
        "e": tune.sample_from(lambda _: tune.choice([5])),
    })
    assert [(s.config["b"], s.config["c"], s.config["nested"]["x"], s.config["d"])
            for s in out] == [(10, 11, 10, 20), (20, 21, 20, 40)]
    assert all(s.config["e"] == 5 for s in out)


def test_circular_dependency_is_a_clear_error():
    gen = BasicVariantGenerator()
    gen.add_configurations({"a": tune.sample_from(lambda c: c["b"]),
                            "b": tune.sample_from(lambda c: c["a"])}, 1)
    with pytest.raises(SearchSpaceError) as info:
        gen.next_trial("t")
    assert "['a'] reads param_space['b']" in str(info.value)


def test_sample_from_error_names_the_path():
    gen = BasicVariantGenerator()
    gen.add_configurations({"x": {"y": tune.sample_from(lambda c: c["missing"])}}, 1)
    with pytest.raises(SearchSpaceError, match=r"\['x'\]\['y'\].*KeyError"):
        gen.next_trial("t")


def test_ray_tune_domains_are_refused():
    class Float:  # stands in for a Ray Tune domain
        pass

    Float.__module__ = "ray.tune.search.sample"
    with pytest.raises(SearchSpaceError, match=r"\['lr'\].*Ray Tune"):
        validate_param_space({"lr": Float()})


def test_other_libraries_distributions_are_refused():
    import optuna

    with pytest.raises(SearchSpaceError, match=r"\['m'\]\['lr'\].*Optuna.*FloatDistribution"):
        validate_param_space({"m": {"lr": optuna.distributions.FloatDistribution(0, 1)}})


def test_points_to_evaluate():
    space = {"a": tune.uniform(0, 1), "g": tune.grid_search([1, 2])}
    out = configs(space, num_samples=3, points_to_evaluate=[{"a": 0.5}, {"a": 0.7, "g": 9}])
    # the first point runs for each grid value, the second fixes g; one sample is left
    assert [(s.config["a"], s.config["g"]) for s in out[:3]] == [(0.5, 1), (0.5, 2), (0.7, 9)]
    assert len(out) == 5
    many = configs({"a": tune.uniform(0, 1)}, num_samples=1,
                   points_to_evaluate=[{"a": 0.1}, {"a": 0.2}])
    assert [s.config["a"] for s in many] == [0.1, 0.2]
    with pytest.raises(SearchSpaceError, match="'zz'"):
        configs(space, points_to_evaluate=[{"zz": 1}])


def test_seed_makes_the_sequence_reproducible():
    space = {"a": tune.uniform(0, 1), "b": tune.choice(list(range(100))),
             "g": tune.grid_search([1, 2])}
    one = [s.config for s in configs(space, num_samples=5, random_state=42)]
    two = [s.config for s in configs(space, num_samples=5, random_state=42)]
    other = [s.config for s in configs(space, num_samples=5, random_state=43)]
    assert one == two and one != other
    import numpy as np

    a = [s.config for s in configs(space, num_samples=3,
                                   random_state=np.random.default_rng(1))]
    b = [s.config for s in configs(space, num_samples=3,
                                   random_state=np.random.default_rng(1))]
    assert a == b


def test_max_concurrent_gates_new_trials():
    gen = BasicVariantGenerator(max_concurrent=2)
    gen.add_configurations({"a": tune.uniform(0, 1)}, 5)
    assert gen.next_trial("t1") and gen.next_trial("t2")
    assert gen.next_trial("t3") is None
    gen.on_trial_complete("t1")
    assert gen.next_trial("t3") is not None


def test_state_round_trip_continues_without_repeats():
    space = {"a": tune.uniform(0, 1)}
    gen = BasicVariantGenerator(random_state=7)
    gen.add_configurations(space, 6)
    first = [gen.next_trial(f"t{i}").config["a"] for i in range(3)]
    state = gen.get_state()
    restored = BasicVariantGenerator(random_state=0)
    restored.add_configurations(space, 6)
    restored.set_state(state)
    rest = [restored.next_trial(f"u{i}").config["a"] for i in range(3)]
    assert restored.next_trial("x") is None and restored.is_finished()
    full = [s.config["a"] for s in configs(space, num_samples=6, random_state=7)]
    assert first + rest == full


def test_unbounded_samples_are_lazy():
    gen = BasicVariantGenerator()
    gen.add_configurations({"a": tune.uniform(0, 1), "g": tune.grid_search([1, 2])}, -1)
    assert gen.total_samples is None
    for i in range(1000):
        assert gen.next_trial(f"t{i}") is not None
    assert not gen.is_finished()


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="max_concurrent=-1"):
        BasicVariantGenerator(max_concurrent=-1)
    with pytest.raises(ValueError, match="random_state='x'"):
        BasicVariantGenerator(random_state="x")
    with pytest.raises(ValueError, match="points_to_evaluate"):
        BasicVariantGenerator(points_to_evaluate={"a": 1})


# --- fixed bugs -------------------------------------------------------------------------------


def test_qrandint_draws_each_multiple_equally_often():
    n = 6000
    for domain, multiples in [(tune.qrandint(0, 10, 5), {0, 5, 10}),
                              (tune.qrandint(1, 10, 3), {3, 6, 9})]:  # bounds off the grid
        counts = Counter(draw(domain, n=n))
        assert set(counts) == multiples
        assert all(abs(c / n - 1 / 3) < 0.03 for c in counts.values()), counts
    # qlograndint is log-uniform over the multiples k*q, k in [1, 11): as Ray Tune
    counts = Counter(draw(tune.qlograndint(10, 100, 10), n=n))
    assert set(counts) == set(range(10, 101, 10))
    assert abs(counts[10] / n - math.log(2) / math.log(11)) < 0.03


@pytest.mark.parametrize("domain,bad", [
    (tune.randint(0, 2.5), "upper=2.5"),
    (tune.randint(0.5, 3), "lower=0.5"),
    (tune.randint("0", 3), "lower='0'"),
    (tune.qrandint(0, 10, 2.5), "q=2.5"),
    (tune.lograndint(1, 100.5), "upper=100.5"),
    (tune.qlograndint(1, 100, 0.5), "q=0.5"),
])
def test_integer_domains_refuse_non_integers(domain, bad):
    with pytest.raises(SearchSpaceError) as info:
        validate_param_space({"m": {"n": domain}})
    message = str(info.value)
    assert "param_space['m']['n']" in message and bad in message and "integer" in message
    with pytest.raises(SearchSpaceError, match="integer"):
        domain.sample(random.Random(0))


def test_integer_domains_accept_whole_floats():
    xs = draw(tune.randint(0, 1e3), n=200)
    assert all(type(x) is int and 0 <= x < 1000 for x in xs)
    assert set(draw(tune.qrandint(0, 4.0, 2.0))) == {0, 2, 4}


def test_sample_from_without_arguments():
    (s,) = configs({"a": tune.sample_from(lambda: 7),
                    "b": tune.sample_from(lambda spec: spec.config.a + 1)})
    assert s.config == {"a": 7, "b": 8}
    with pytest.raises(SearchSpaceError, match=r"\['x'\].*0 or 1 arguments"):
        validate_param_space({"x": tune.sample_from(lambda a, b: a)})


def test_domains_inside_chosen_values_are_sampled():
    space = {"opt": tune.choice([{"name": "sgd", "lr": tune.uniform(0, 1)},
                                 {"name": "adam", "lr": 5}]),
             "double_lr": tune.sample_from(lambda c: c["opt"]["lr"] * 2),
             "made": tune.sample_from(lambda _: {"k": tune.randint(0, 3)})}
    out = configs(space, num_samples=40, random_state=0)
    sgd = [s.config["opt"]["lr"] for s in out if s.config["opt"]["name"] == "sgd"]
    assert sgd and all(isinstance(x, float) and 0 <= x <= 1 for x in sgd)
    assert len(set(sgd)) == len(sgd)  # sampled anew each time
    assert all(s.config["opt"]["lr"] == 5 for s in out if s.config["opt"]["name"] == "adam")
    assert all(s.config["double_lr"] == 2 * s.config["opt"]["lr"] for s in out)
    assert all(s.config["made"]["k"] in (0, 1, 2) for s in out)
    assert all("uniform(" not in repr(s.evaluated_params) for s in out)
    assert space["opt"].categories[0]["lr"].__class__.__name__ == "Float"  # space untouched


def test_domains_inside_grid_values_are_sampled():
    out = configs({"opt": tune.grid_search([{"lr": tune.loguniform(1e-4, 1e-1)},
                                            {"lr": 0.5}])}, random_state=0)
    assert 1e-4 <= out[0].config["opt"]["lr"] <= 1e-1 and out[1].config["opt"]["lr"] == 0.5
    assert out[0].evaluated_params["opt"] == out[0].config["opt"]
    assert "uniform" not in out[0].experiment_tag
    with pytest.raises(SearchSpaceError, match=r"\['g'\]\['grid_search'\]\[0\].*not supported"):
        validate_param_space({"g": tune.grid_search([tune.grid_search([1, 2])])})


def test_sample_from_returning_part_of_the_config_gets_plain_values():
    (s,) = configs({"model": {"width": 4, "shape": (1, 2)},
                    "copy": tune.sample_from(lambda c: c["model"])})
    assert s.config["copy"] == {"width": 4, "shape": (1, 2)} and type(s.config["copy"]) is dict


def test_user_except_exception_does_not_hide_dependencies():
    def fallback(config):
        try:
            return config["b"] * 2
        except Exception:
            return "fallback"

    (s,) = configs({"a": tune.sample_from(fallback), "b": tune.sample_from(lambda c: 1)})
    assert s.config["a"] == 2
    gen = BasicVariantGenerator()
    gen.add_configurations({"a": tune.sample_from(fallback),
                            "b": tune.sample_from(lambda c: c["a"])}, 1)
    with pytest.raises(SearchSpaceError, match=r"\['a'\] reads param_space\['b'\]"):
        gen.next_trial("t")


def test_function_returning_a_function_waits_for_its_inputs():
    (s,) = configs({"a": tune.sample_from(lambda _: tune.sample_from(lambda c: c["b"] + 1)),
                    "b": tune.sample_from(lambda _: 1)})
    assert s.config == {"a": 2, "b": 1}
    gen = BasicVariantGenerator()
    gen.add_configurations({"a": tune.sample_from(lambda _: tune.sample_from(lambda c: c["a"]))},
                           1)
    with pytest.raises(SearchSpaceError, match=r"\['a'\] reads param_space\['a'\]"):
        gen.next_trial("t")


def test_grid_over_many_list_elements_in_natural_order():
    out = configs({"l": [tune.grid_search([0, 1]) for _ in range(11)]})
    assert len(out) == 2 ** 11
    assert out[1].config["l"] == [1] + [0] * 10  # the first element varies fastest
    assert out[2].config["l"] == [0, 1] + [0] * 9
    assert out[2 ** 10].config["l"] == [0] * 10 + [1]
    assert list(out[0].evaluated_params) == [f"l/{i}" for i in range(11)]


def test_default_random_state_follows_numpy_global_seed():
    import numpy as np

    space = {"a": tune.uniform(0, 1), "b": tune.randint(0, 10 ** 6),
             "g": tune.grid_search([1, 2])}
    saved = np.random.get_state()
    try:
        runs = []
        for seed in (123, 123, 124):
            np.random.seed(seed)
            runs.append([s.config for s in configs(space, num_samples=3)])
    finally:
        np.random.set_state(saved)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_constant_grid_search_samples_sample_from_once():
    space = {"g": tune.grid_search([1, 2, 3]),
             "noise": tune.sample_from(lambda _: random.random()),
             "u": tune.uniform(0, 1),
             "twice_u": tune.sample_from(lambda c: c["u"] * 2),
             "per_g": tune.sample_from(lambda c: (c["g"], random.random()))}
    out = configs(space, num_samples=2, random_state=0, constant_grid_search=True)
    first = out[:3]
    assert len({s.config["noise"] for s in first}) == 1
    assert len({s.config["twice_u"] for s in first}) == 1
    assert all(s.config["twice_u"] == 2 * s.config["u"] for s in out)
    assert [s.config["per_g"][0] for s in first] == [1, 2, 3]  # reads the grid: per point
    assert len({s.config["per_g"][1] for s in first}) == 3
    assert out[3].config["noise"] != out[0].config["noise"]  # the next sample draws anew
