"""README: Experiment state and restore."""

import os
import tempfile

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "epoch.txt")) as f:
                start = int(f.read()) + 1
    for epoch in range(start, 5):
        if config["flaky"] and epoch == 3 and start == 0:
            raise RuntimeError("simulated failure")  # fails once, before epoch 3
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "epoch.txt"), "w") as f:
            f.write(str(epoch))
        tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))


results = tune.Tuner(
    train_fn,
    param_space={"flaky": tune.grid_search([False, True])},
    run_config=tune.RunConfig(name="restore_demo", storage_path=STORAGE, verbose=0),
).fit()
path = results.experiment_path
assert results.num_errors == 1

# Later (after a crash, a killed driver or Ctrl+C): continue where the experiment stopped.
if tune.Tuner.can_restore(path):
    tuner = tune.Tuner.restore(path, train_fn, resume_errored=True)
    results = tuner.fit()

# Results of a finished experiment, without the trainable (reads JSON only).
results = tune.ResultGrid.from_path(path)
print(results.num_errors, [r.metrics["epoch"] for r in results])
assert results.num_errors == 0 and [r.metrics["epoch"] for r in results] == [4, 4]
