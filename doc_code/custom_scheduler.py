"""README: Extending: a custom scheduler."""

import os

import tune_core as tune
from schedulers import SchedulerDecision, TrialScheduler

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


class BehindTheBest(TrialScheduler):
    """Stops a trial whose metric trails the best trial's at the same iteration by more
    than ``margin``."""

    def __init__(self, margin, metric=None, mode=None, time_attr="training_iteration"):
        self.metric, self.mode = metric, mode  # None: taken from TuneConfig
        self.margin, self.time_attr = margin, time_attr
        self._best = {}      # time -> best score reported at that time (larger is better)
        self.stopped = []    # ids of the trials it stopped
        self.completed = []  # ids of the trials that ended, stopped ones included

    def set_search_properties(self, metric, mode, **spec):
        # Called once by the Tuner, before any trial, with TuneConfig's metric and mode.
        if not super().set_search_properties(metric, mode, **spec):
            return False  # metric/mode given here and in TuneConfig differ: Tuner says so
        self._sign = 1 if self.mode == "max" else -1  # Tuner checked metric/mode are set
        return True

    def on_trial_result(self, trial, result):
        # ``trial`` is a frozen TrialSnapshot (trial_id, status, config, last_result, ...).
        t, score = result[self.time_attr], self._sign * result[self.metric]
        best = self._best.get(t)
        if best is not None and score < best - self.margin:
            self.stopped.append(trial.trial_id)
            return SchedulerDecision.STOP
        self._best[t] = score if best is None else max(best, score)
        return SchedulerDecision.CONTINUE

    def on_trial_complete(self, trial, result):
        self.completed.append(trial.trial_id)

    def choose_trial_to_run(self, candidates):
        # Required (the base class has no default). It never pauses trials, so the
        # candidates are PENDING ones, in creation order: first come, first served.
        return candidates[0].trial_id if candidates else None


def train_fn(config):
    for step in range(10):
        tune.report({"loss": (config["x"] - 3) ** 2 + 1 / (step + 1)})


scheduler = BehindTheBest(margin=1.0)
results = tune.Tuner(
    train_fn,
    param_space={"x": tune.grid_search([3.0, 2.5, 9.0, 0.0, 6.0, 3.2])},
    tune_config=tune.TuneConfig(scheduler=scheduler, metric="loss", mode="min",
                                max_concurrent_trials=2),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()

iterations = {r.config["x"]: r.metrics["training_iteration"] for r in results}
print(iterations)
# The first two trials set the bests at every iteration before the others start:
# x = 9, 0 and 6 trail them by more than 1.0 at once; x = 3.2 stays within the margin.
stopped_x = sorted(r.config["x"] for r in results if r.metrics["trial_id"] in scheduler.stopped)
assert results.num_errors == 0 and stopped_x == [0.0, 6.0, 9.0]
assert all(iterations[x] == 10 for x in (3.0, 2.5, 3.2))
assert all(iterations[x] < 10 for x in stopped_x)
assert sorted(scheduler.completed) == sorted(r.metrics["trial_id"] for r in results)
assert results.get_best_result().config["x"] == 3.0
