"""README: Framework integrations (PyTorch, XGBoost).

Not named integrations.py: a script of that name would shadow the integrations package.
"""

import os

import numpy as np
import torch
import xgboost

import tune_core as tune
from integrations.torch import get_device, load_checkpoint, save_checkpoint
from integrations.xgboost import TuneReportCheckpointCallback

STORAGE = os.environ.get("TUNE_DOC_STORAGE")

g = torch.Generator().manual_seed(0)
x = torch.rand(512, 1, generator=g) * 4 - 2
y = torch.sin(3 * x) + 0.1 * torch.randn(512, 1, generator=g)


# PyTorch: checkpoint model, optimizer and LR scheduler in one call; resume from them.
def train_model(config):
    device = get_device()  # cuda:0 when the trial was given a GPU, else cpu
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(),
                                torch.nn.Linear(32, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    start = 0
    if tune.get_checkpoint():  # resuming after a failure or a pause
        extra = load_checkpoint(tune.get_checkpoint(), model=model, optimizer=optimizer,
                                scheduler=scheduler, map_location=device)
        start = extra["epoch"] + 1
    for epoch in range(start, 3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        tune.report({"loss": loss.item()}, checkpoint=save_checkpoint(
            model=model, optimizer=optimizer, scheduler=scheduler, extra={"epoch": epoch}))


torch_results = tune.Tuner(
    train_model,
    param_space={"lr": tune.grid_search([0.01, 0.03])},
    tune_config=tune.TuneConfig(metric="loss", mode="min"),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0,
                              failure_config=tune.FailureConfig(max_failures=2)),
).fit()
best_model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(),
                                 torch.nn.Linear(32, 1))
load_checkpoint(torch_results.get_best_result().checkpoint, model=best_model)

rng = np.random.default_rng(0)
features = rng.normal(size=(500, 4))
labels = (features[:, 0] + features[:, 1] ** 2 > 0.5).astype(int)


# XGBoost: one result per boosting round, named "<eval name>-<metric>"; the final
# booster is checkpointed.
def train_xgboost(config):
    dtrain = xgboost.DMatrix(features[:400], label=labels[:400])
    dvalid = xgboost.DMatrix(features[400:], label=labels[400:])
    xgboost.train({"objective": "binary:logistic", "eval_metric": "logloss",
                   "max_depth": config["max_depth"], "nthread": 1},
                  dtrain, num_boost_round=10, evals=[(dvalid, "eval")], verbose_eval=False,
                  callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss"})])


xgb_results = tune.Tuner(
    train_xgboost,
    param_space={"max_depth": tune.grid_search([2, 4])},
    tune_config=tune.TuneConfig(metric="loss", mode="min"),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()
booster = TuneReportCheckpointCallback.get_model(xgb_results.get_best_result().checkpoint)
print(booster.predict(xgboost.DMatrix(features[:3])))
