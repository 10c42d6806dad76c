"""README: Storage, checkpoints and fault tolerance."""

import os
import tempfile

import tune_core as tune


def train_fn(config):
    start, weight = 0, 0.0
    checkpoint = tune.get_checkpoint()          # after a retry, a pause or a restore
    if checkpoint:
        with checkpoint.as_directory() as d:    # downloaded when it is on S3
            with open(os.path.join(d, "state.txt")) as f:
                start, weight = f.read().split()
                start, weight = int(start) + 1, float(weight)
    for epoch in range(start, 6):
        weight += config["lr"]
        loss = (weight - 0.3) ** 2
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "state.txt"), "w") as f:
            f.write(f"{epoch} {weight}")
        with open("notes.txt", "a") as f:       # an artifact in the trial's working dir
            f.write(f"epoch {epoch}: loss {loss:.4f}\n")
        tune.report({"loss": loss}, checkpoint=tune.Checkpoint.from_directory(d))


# A local or NFS path, or any URI pyarrow.fs understands (options as query parameters).
STORAGE = os.environ.get("TUNE_DOC_S3_URI", "s3://my-bucket/experiments")

run_config = tune.RunConfig(
    name="on_storage",
    storage_path=STORAGE,
    # or a path inside your own filesystem:
    #   storage_path="my-bucket/experiments",
    #   storage_filesystem=pyarrow.fs.S3FileSystem(endpoint_override="minio:9000", ...)
    checkpoint_config=tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="loss", checkpoint_score_order="min"),
    sync_config=tune.SyncConfig(sync_period=60, sync_artifacts=True),
    failure_config=tune.FailureConfig(max_failures=3),
    verbose=0,
)
results = tune.Tuner(train_fn, param_space={"lr": tune.grid_search([0.05, 0.1])},
                     run_config=run_config).fit()

best = results.get_best_result("loss", "min")
checkpoint, metrics = best.best_checkpoints[-1]  # the kept checkpoints, best last
with checkpoint.as_directory() as d:
    print("best loss", metrics["loss"], "state", open(os.path.join(d, "state.txt")).read())

# The same experiment, from anywhere that can reach the storage:
results = tune.ResultGrid.from_path(results.experiment_path)
assert len(best.best_checkpoints) == 2 and results.num_errors == 0
