"""integrations.torch: checkpoint round trips, resuming a failed trial, the trial's device.

Real PyTorch, real local Ray. The last test starts a Ray of its own with fake GPUs.
"""

from __future__ import annotations

import copy
import gc
import os
import time

import pytest

import tune_core as tune

torch = pytest.importorskip("torch")

from integrations.torch import (  # noqa: E402
    CHECKPOINT_FILENAME, get_device, load_checkpoint, save_checkpoint)

EPOCHS = 5


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=g) * 2 - 1
    y = x[:, :1] * 3 - x[:, 1:] ** 2 + 0.05 * torch.randn(256, 1, generator=g)
    return (x[:192], y[:192]), (x[192:], y[192:])


def make_parts(lr):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train_epoch(model, optimizer, scheduler, data):
    """Full-batch steps: deterministic, so a resumed run must match an uninterrupted one."""
    (x, y), (xv, yv) = data
    model.train()
    for _ in range(4):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    scheduler.step()
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(xv), yv).item()


def assert_same_state(a, b):
    """Two (nested) state dicts hold equal values, tensors bit for bit."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def test_save_load_round_trip_restores_everything(tmp_path):
    torch.set_num_threads(1)
    data = make_data()
    model, optimizer, scheduler = make_parts(0.05)
    for _ in range(3):
        train_epoch(model, optimizer, scheduler, data)
    checkpoint = save_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler,
                                 extra={"epoch": 2, "best": 0.25})
    saved_model_state = copy.deepcopy(model.state_dict())
    assert os.listdir(checkpoint.path) == [CHECKPOINT_FILENAME]

    model2, optimizer2, scheduler2 = make_parts(0.9)  # other lr: must be overwritten
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    extra = load_checkpoint(checkpoint, model=model2, optimizer=optimizer2,
                            scheduler=scheduler2)
    assert extra == {"epoch": 2, "best": 0.25}
    assert_same_state(model.state_dict(), model2.state_dict())
    assert_same_state(optimizer.state_dict(), optimizer2.state_dict())
    assert_same_state(scheduler.state_dict(), scheduler2.state_dict())
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    # ... so training on gives the very same numbers
    for _ in range(2):
        assert train_epoch(model, optimizer, scheduler, data) == \
            train_epoch(model2, optimizer2, scheduler2, data)

    # a wrapped model loads the bare model's state; a path works as well as a Checkpoint
    wrapped = torch.nn.DataParallel(make_parts(0.1)[0])
    load_checkpoint(checkpoint.path, model=wrapped)
    assert_same_state(wrapped.module.state_dict(), saved_model_state)

    # the temporary directory goes when the Checkpoint does
    path = checkpoint.path
    del checkpoint
    gc.collect()
    assert not os.path.exists(path)


def test_save_into_a_directory_and_clear_errors(tmp_path):
    model, optimizer, _ = make_parts(0.1)
    checkpoint = save_checkpoint(model=model, path=tmp_path / "ckpt")
    assert checkpoint.path == str(tmp_path / "ckpt")
    assert load_checkpoint(checkpoint, model=model) == {}
    with pytest.raises(KeyError, match="holds no optimizer state"):
        load_checkpoint(checkpoint, optimizer=optimizer)
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILENAME):
        load_checkpoint(tmp_path, model=model)
    with pytest.raises(TypeError, match="state_dict"):
        save_checkpoint(model=object())
    del checkpoint
    gc.collect()
    assert os.path.isdir(tmp_path / "ckpt")  # a directory you named is yours


def test_get_device_outside_a_trial_is_cpu_without_cuda():
    assert not torch.cuda.is_available()  # this machine has no GPU
    assert get_device() == torch.device("cpu")


def train_fn(config, data=None):
    torch.set_num_threads(1)
    model, optimizer, scheduler = make_parts(config["lr"])
    start = 0
    if tune.get_checkpoint():
        start = load_checkpoint(tune.get_checkpoint(), model=model, optimizer=optimizer,
                                scheduler=scheduler, map_location=get_device())["epoch"] + 1
    model.to(get_device())
    for epoch in range(start, EPOCHS):
        if epoch == 2 and start == 0:
            raise RuntimeError("the first attempt fails at epoch 2")
        val_loss = train_epoch(model, optimizer, scheduler, data)
        tune.report({"val_loss": val_loss, "epoch": epoch, "start": start,
                     "device": str(get_device())},
                    checkpoint=save_checkpoint(model=model, optimizer=optimizer,
                                               scheduler=scheduler, extra={"epoch": epoch}))


@pytest.mark.ray
def test_trials_report_checkpoint_fail_and_resume(ray_local, tmp_path):
    data = make_data()
    grid = tune.Tuner(
        tune.with_parameters(train_fn, data=data),
        param_space={"lr": tune.grid_search([0.02, 0.05])},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 2
    torch.set_num_threads(1)
    for result in grid:
        lr = result.config["lr"]
        # the same training, uninterrupted, here
        model, optimizer, scheduler = make_parts(lr)
        expected = [train_epoch(model, optimizer, scheduler, data) for _ in range(EPOCHS)]
        df = result.metrics_dataframe
        assert list(df["epoch"]) == list(range(EPOCHS))
        # epochs 0-1 from the first attempt, 2-4 resumed from the checkpoint of epoch 1
        assert list(df["start"]) == [0, 0, 2, 2, 2]
        assert set(df["device"]) == {"cpu"}
        assert list(df["val_loss"]) == pytest.approx(expected, rel=1e-6)
        # the newest checkpoint loads into a model that predicts the same
        fresh, _, _ = make_parts(0.5)
        assert load_checkpoint(result.checkpoint, model=fresh) == {"epoch": EPOCHS - 1}
        (_, _), (xv, yv) = data
        with torch.no_grad():
            assert torch.equal(fresh(xv), model(xv))
            assert torch.nn.functional.mse_loss(fresh(xv), yv).item() == \
                pytest.approx(result.metrics["val_loss"], rel=1e-6)


# --------------------------------------------------------------------------- fake GPUs

@pytest.fixture(scope="module")
def ray_with_fake_gpus():
    """A Ray of its own with 2 CPUs and 2 (logical) GPUs.

    Shut down afterwards rather than left running: ``ray_local`` reuses any running
    Ray with 2 CPUs, and tests after this module must not get one with GPUs.
    ``ray_local`` starts its own when none is running.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def gpu_fn(config, barrier=None):
    # Both trials wait for each other, so they hold their GPUs at the same time.
    open(os.path.join(barrier, tune.get_context().get_trial_id()), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tune.report({"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "device": str(get_device()), "together": len(os.listdir(barrier)),
                 "gpus": tune.get_context().get_trial_resources().head_bundle.get("GPU")})


@pytest.mark.ray
def test_gpu_trials_get_their_own_cuda_visible_devices(ray_with_fake_gpus, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    grid = tune.Tuner(
        tune.with_resources(tune.with_parameters(gpu_fn, barrier=str(barrier)),
                            {"cpu": 1, "gpu": 1}),
        param_space={"i": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert grid.num_errors == 0
    metrics = [r.metrics for r in grid]
    assert all(m["together"] == 2 for m in metrics)
    assert all(m["gpus"] == 1 for m in metrics)
    ids = sorted(m["cuda_visible_devices"] for m in metrics)
    assert ids == ["0", "1"]
    # no CUDA on this machine: get_device falls back to the CPU even for a GPU trial
    assert {m["device"] for m in metrics} == {"cpu"}
