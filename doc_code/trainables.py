"""README: Trainables."""

import os

import numpy as np

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


# The function API: report metrics (and checkpoints), resume from get_checkpoint().
def train_fn(config, data=None):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "step.txt")).read()) + 1
    for step in range(start, 3):
        ckpt_dir = os.path.join(tune.get_context().get_trial_dir(), f"tmp_{step}")
        os.makedirs(ckpt_dir, exist_ok=True)
        with open(os.path.join(ckpt_dir, "step.txt"), "w") as f:
            f.write(str(step))
        tune.report({"loss": float(data.mean()) * config["w"] / (step + 1)},
                    checkpoint=tune.Checkpoint.from_directory(ckpt_dir))


# The class API.
class MyTrainable(tune.Trainable):
    def setup(self, config):
        self.w = config["w"]

    def step(self):
        self.w *= 0.9
        return {"loss": self.w, "done": self.iteration >= 4}

    def save_checkpoint(self, checkpoint_dir):
        return {"w": self.w}  # or write files into checkpoint_dir

    def load_checkpoint(self, checkpoint):
        self.w = checkpoint["w"]


data = np.ones(1_000_000)  # stored once in Ray's object store
fn_results = tune.Tuner(
    tune.with_resources(tune.with_parameters(train_fn, data=data), {"cpu": 0.5}),
    param_space={"w": tune.uniform(1, 2)},
    tune_config=tune.TuneConfig(num_samples=2),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()
class_results = tune.Tuner(
    tune.with_resources(MyTrainable, tune.PlacementGroupFactory([{"CPU": 1}])),
    param_space={"w": tune.grid_search([1.0, 2.0])},
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()
assert all(r.checkpoint is not None for r in fn_results)
assert [r.metrics["training_iteration"] for r in class_results] == [5, 5]
