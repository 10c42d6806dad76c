"""README: Extending: a custom searcher."""

import os
import random
import tempfile

import tune_core as tune
from searchers import Searcher
from tune_core.search.sample import Categorical, Domain, Float

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


class HillClimbing(Searcher):
    """Local search: perturb the best configuration so far; halve the step when stuck."""

    def __init__(self, metric=None, mode=None, step=0.2, min_step=0.01, patience=5,
                 seed=None):
        super().__init__(metric=metric, mode=mode)  # checks mode; sets self.metric/mode
        # The state is this object's __dict__ (the inherited get_state): all picklable.
        self._step, self._min_step, self._patience = step, min_step, patience
        self._rng = random.Random(seed)  # picklable: a restored copy continues the sequence
        self._space = {}                 # name -> tune domain, from the Tuner's param_space
        self._best = None                # (score, config); a larger score is better
        self._live = {}                  # trial_id -> the config it was given
        self._stuck = 0                  # trials completed since the last improvement

    def set_search_properties(self, metric, mode, config, **spec):
        # Called once by the Tuner with TuneConfig's metric/mode and its param_space.
        if not super().set_search_properties(metric, mode, config, **spec):
            return False  # metric/mode given here and in TuneConfig differ: Tuner says so
        if not (self.metric and self.mode):
            raise ValueError("HillClimbing needs a metric and a mode: pass them here or "
                             "set TuneConfig(metric=..., mode=...)")
        for name, domain in config.items():
            if isinstance(domain, Categorical) or (
                    isinstance(domain, Float) and domain.kind == "uniform" and not domain.q):
                self._space[name] = domain
            elif isinstance(domain, Domain):
                raise ValueError(f"HillClimbing cannot search {name!r} ({domain!r}): use "
                                 "tune.uniform or tune.choice")
            # Constants are not ours: the Tuner merges them into every config.
        return True

    def suggest(self, trial_id):
        if self._step < self._min_step:
            return Searcher.FINISHED  # converged: no more trials, whatever num_samples says
        if self._best is None:
            if self._live:
                return None  # not now: wait for the first result before climbing
            config = {name: d.sample(self._rng) for name, d in self._space.items()}
        else:
            config = dict(self._best[1])  # a neighbour of the best configuration
            for name, d in self._space.items():
                if isinstance(d, Float):
                    value = config[name] + self._rng.gauss(0, self._step * (d.upper - d.lower))
                    config[name] = min(max(value, d.lower), d.upper)
                elif self._rng.random() < 0.3:
                    config[name] = self._rng.choice(d.categories)
        self._live[trial_id] = config
        return config

    def on_trial_complete(self, trial_id, result=None, error=False):
        config = self._live.pop(trial_id, None)
        if config is None or error or not result or self.metric not in result:
            return  # a failed trial teaches nothing here
        score = result[self.metric] if self.mode == "max" else -result[self.metric]
        if self._best is None or score > self._best[0]:
            self._best, self._stuck = (score, config), 0
        else:
            self._stuck += 1
            if self._stuck >= self._patience:
                self._step, self._stuck = self._step / 2, 0

    @property
    def best_config(self):
        return None if self._best is None else dict(self._best[1])


def objective(config):
    loss = (config["x"] - 0.3) ** 2 + (config["y"] - 2.0) ** 2
    return {"loss": loss + (0.5 if config["act"] == "tanh" else 0.0)}


searcher = HillClimbing(seed=0)
results = tune.Tuner(
    objective,
    param_space={"x": tune.uniform(-2, 2), "y": tune.uniform(0, 5),
                 "act": tune.choice(["relu", "tanh"]), "epochs": 3},  # a constant
    tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min",
                                num_samples=100),  # an upper bound: it stops on its own
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()
best = results.get_best_result()
print(f"{len(results)} trials, best {best.config} loss {best.metrics['loss']:.4f}")

# The searcher's state on its own (Tuner.restore restores it with the experiment).
path = os.path.join(tempfile.mkdtemp(), "hill_climbing.pkl")
searcher.save(path)
restored = HillClimbing()
restored.restore(path)

assert results.num_errors == 0
assert len(results) < 100  # suggest() returned Searcher.FINISHED before num_samples
assert best.metrics["loss"] < 0.2 and best.config["act"] == "relu"
assert best.config["epochs"] == 3  # constants are merged into every suggestion
assert {k: best.config[k] for k in ("x", "y", "act")} == searcher.best_config
assert restored.best_config == searcher.best_config and restored.metric == "loss"
assert restored.suggest("next_trial") == Searcher.FINISHED
