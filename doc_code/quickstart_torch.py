"""Quick start: tune a small PyTorch model on data this script generates.

Run it with `make run`. It starts Ray on this machine, runs 12 trials on the CPU
cores there are (1 core each), prints a status table while they run, then the best
result, and writes everything under ./results/train_model_<date>/.
"""

import os
import tempfile

import torch
from torch import nn

import tune_core as tune

STORAGE = os.path.abspath(os.environ.get("TUNE_QUICKSTART_STORAGE", "results"))
EPOCHS = int(os.environ.get("TUNE_QUICKSTART_EPOCHS", "30"))
NUM_SAMPLES = int(os.environ.get("TUNE_QUICKSTART_SAMPLES", "12"))


def make_data(n=4096, seed=0):
    """A noisy 1-D regression problem: y = sin(3x) + x^2/2 + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = torch.sin(3 * x) + 0.5 * x**2 + 0.1 * torch.randn(n, 1, generator=g)
    split = int(0.8 * n)
    return (x[:split], y[:split]), (x[split:], y[split:])


def train_model(config, data=None):
    torch.set_num_threads(1)  # one core per trial; the cores are shared by trials
    torch.manual_seed(config["seed"])
    (x_train, y_train), (x_val, y_val) = data
    model = nn.Sequential(nn.Linear(1, config["hidden"]), nn.Tanh(),
                          nn.Linear(config["hidden"], config["hidden"]), nn.Tanh(),
                          nn.Linear(config["hidden"], 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start_epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resuming (after a failure or a pause): continue where we were
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "model.pt"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1
    loss_fn = nn.MSELoss()
    for epoch in range(start_epoch, EPOCHS):
        perm = torch.randperm(len(x_train))
        model.train()
        for i in range(0, len(x_train), config["batch_size"]):
            idx = perm[i:i + config["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x_val), y_val).item()
        with tempfile.TemporaryDirectory() as d:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch}, os.path.join(d, "model.pt"))
            tune.report({"val_loss": val_loss, "epoch": epoch},
                        checkpoint=tune.Checkpoint.from_directory(d))


def main():
    tuner = tune.Tuner(
        tune.with_parameters(train_model, data=make_data()),
        param_space={
            "lr": tune.loguniform(1e-4, 3e-2),
            "hidden": tune.choice([16, 32, 64]),
            "batch_size": tune.choice([32, 128]),
            "seed": 0,
        },
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=NUM_SAMPLES),
        run_config=tune.RunConfig(
            storage_path=STORAGE,
            # keep each trial's 2 best checkpoints by val_loss (and always its newest)
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_loss",
                checkpoint_score_order="min")),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print()
    print(f"Best trial: val_loss={best.metrics['val_loss']:.4f} with "
          f"lr={best.config['lr']:.2e}, hidden={best.config['hidden']}, "
          f"batch_size={best.config['batch_size']}")
    print(f"Its checkpoint: {best.checkpoint.path}")
    print(f"All results are under {results.experiment_path}")
    return results


if __name__ == "__main__":
    main()
