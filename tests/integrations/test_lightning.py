"""integrations.lightning: a real Lightning training per trial, reported through real Ray."""

from __future__ import annotations

import os

import pytest

import tune_core as tune

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from integrations.lightning import (  # noqa: E402
    TuneReportCallback, TuneReportCheckpointCallback)

EPOCHS = 3


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 2, generator=g) * 2 - 1
    y = x[:, :1] * 2 - x[:, 1:] + 0.05 * torch.randn(128, 1, generator=g)
    return (x[:96], y[:96]), (x[96:], y[96:])


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                                       torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders(data):
    from torch.utils.data import DataLoader, TensorDataset

    (x, y), (xv, yv) = data
    return (DataLoader(TensorDataset(x, y), batch_size=32),
            DataLoader(TensorDataset(xv, yv), batch_size=len(xv)))


class FailOnce(pl.Callback):
    """Fails the first attempt of a trial as its third epoch starts."""

    def on_train_epoch_start(self, trainer, pl_module):
        marker = os.path.join(tune.get_context().get_trial_dir(), "failed_once")
        if trainer.current_epoch == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("the first attempt fails at epoch 2")


def train_fn(config, data=None):
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    callbacks = []
    if config["callback"] == "metrics":  # every metric, after each training epoch
        callbacks.append(TuneReportCallback(on="train_epoch_end"))
    else:
        callbacks.append(TuneReportCheckpointCallback({"loss": "val_loss"},
                                                      filename="model.ckpt"))
    if config["callback"] == "resume":
        callbacks.append(FailOnce())
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, callbacks=callbacks,
        logger=pl.loggers.CSVLogger(tune.get_context().get_trial_dir(), name="csv",
                                    version=0),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1)
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resume as the integrations.lightning docstring shows
        with checkpoint.as_directory() as d:
            trainer.fit(Regressor(config["lr"]), *loaders(data),
                        ckpt_path=os.path.join(d, "model.ckpt"))
    else:
        trainer.fit(Regressor(config["lr"]), *loaders(data))


def logged(result):
    """The epoch-level values Lightning's own CSV logger wrote, by metric name."""
    import pandas as pd

    df = pd.read_csv(os.path.join(result.path, "csv", "version_0", "metrics.csv"))
    return {name: list(df[name].dropna()) for name in ("val_loss", "train_loss")}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not a Lightning callback hook"):
        TuneReportCheckpointCallback(on="validation_finish")
    with pytest.raises(ValueError, match="not a Lightning callback hook"):
        TuneReportCallback(on="save_checkpoint")  # would recurse
    with pytest.raises(ValueError, match="filename"):
        TuneReportCheckpointCallback(filename="")


@pytest.mark.ray
def test_trials_report_lightning_metrics_checkpoints_and_resume(ray_local, tmp_path):
    data = make_data()
    grid = tune.Tuner(
        tune.with_parameters(train_fn, data=data),
        param_space={"lr": 0.1,
                     "callback": tune.grid_search(["checkpoint", "metrics", "resume"])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 3
    by_callback = {r.config["callback"]: r for r in grid}

    result = by_callback["checkpoint"]
    df = result.metrics_dataframe
    # one report per validation (no sanity check), renamed, as Lightning logged it
    assert list(df["loss"]) == pytest.approx(logged(result)["val_loss"], rel=1e-6)
    assert len(df) == EPOCHS and "train_loss" not in df.columns
    assert len(result.best_checkpoints) == EPOCHS
    (_, _), (xv, yv) = data
    for checkpoint, metrics in result.best_checkpoints:
        with checkpoint.as_directory() as d:
            assert os.listdir(d) == ["model.ckpt"]
            model = Regressor.load_from_checkpoint(os.path.join(d, "model.ckpt"))
        model.eval()
        with torch.no_grad():  # the checkpoint holds the weights that gave the metric
            loss = torch.nn.functional.mse_loss(model(xv), yv).item()
        assert loss == pytest.approx(metrics["loss"], rel=1e-6)

    result = by_callback["metrics"]
    df = result.metrics_dataframe
    assert len(df) == EPOCHS and result.checkpoint is None
    lightning_logged = logged(result)
    assert list(df["train_loss"]) == pytest.approx(lightning_logged["train_loss"], rel=1e-6)
    assert list(df["val_loss"]) == pytest.approx(lightning_logged["val_loss"], rel=1e-6)

    # failed at epoch 2, resumed from the checkpoint of epoch 1: the same losses as the
    # uninterrupted run
    resumed = by_callback["resume"].metrics_dataframe
    assert list(resumed["training_iteration"]) == list(range(1, EPOCHS + 1))
    assert list(resumed["iterations_since_restore"]) == [1, 2, 1]
    assert list(resumed["loss"]) == pytest.approx(
        list(by_callback["checkpoint"].metrics_dataframe["loss"]), rel=1e-6)
