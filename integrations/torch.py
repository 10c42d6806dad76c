"""PyTorch helpers: checkpoint a model, optimizer and LR scheduler in one call; pick the device.

PyTorch is optional: install it with ``pip install 'tune-core[torch]'``. It is imported
when a helper is first called, never when ``integrations`` is imported.

Inside a trainable::

    from integrations.torch import get_device, load_checkpoint, save_checkpoint

    device = get_device()
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    start = 0
    if tune.get_checkpoint():
        start = load_checkpoint(tune.get_checkpoint(), model=model, optimizer=optimizer,
                                map_location=device)["epoch"] + 1
    for epoch in range(start, 10):
        ...
        tune.report({"loss": loss}, checkpoint=save_checkpoint(
            model=model, optimizer=optimizer, extra={"epoch": epoch}))
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import Any, Dict, Mapping, Optional

from tune_core.checkpoint import Checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "get_device", "CHECKPOINT_FILENAME"]

#: The file, inside the checkpoint directory, that ``save_checkpoint`` writes.
CHECKPOINT_FILENAME = "torch_state.pt"

# The parts of the saved dict, in the order they are restored.
_PARTS = ("model", "optimizer", "scheduler")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "integrations.torch needs PyTorch: pip install 'tune-core[torch]' "
            "(or any torch>=2.1)") from exc
    return torch


def _unwrap(model: Any) -> Any:
    """The module inside ``DataParallel`` / ``DistributedDataParallel``, so that a
    checkpoint loads into the bare model and the wrapped one alike."""
    torch = _import_torch()
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


def _check_state_holder(name: str, obj: Any) -> None:
    if obj is not None and not (callable(getattr(obj, "state_dict", None)) and
                                callable(getattr(obj, "load_state_dict", None))):
        raise TypeError(f"{name}={obj!r} has no state_dict()/load_state_dict(): pass a "
                        f"torch.nn.Module, torch.optim.Optimizer or LR scheduler, or None")


def save_checkpoint(*, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                    extra: Optional[Mapping[str, Any]] = None,
                    path: "Optional[str | os.PathLike[str]]" = None) -> Checkpoint:
    """Write the state of a model, optimizer and LR scheduler into a checkpoint directory.

    The states (``state_dict()``) go into one file, :data:`CHECKPOINT_FILENAME`, with
    ``extra``: your own values to resume from, such as the epoch. Hand the result to
    ``tune.report(metrics, checkpoint=...)``, which copies it into the trial's storage.

    Args:
        model: a ``torch.nn.Module`` (``DataParallel``/``DistributedDataParallel``
            wrappers are unwrapped, so the state loads into either); None to leave out.
        optimizer: a ``torch.optim.Optimizer``; None to leave out.
        scheduler: an LR scheduler (anything with ``state_dict()``); None to leave out.
        extra: a dict of values to store alongside (epoch, step, best loss, ...). With the
            default safe loading (``load_checkpoint(weights_only=True)``) keep it to
            numbers, strings, lists, dicts and tensors.
        path: the directory to write into (created if missing). None writes into a new
            temporary directory that is deleted when the returned ``Checkpoint`` is
            garbage-collected, which is after ``tune.report`` has copied it.

    Returns:
        A ``tune_core.Checkpoint`` of the directory.
    """
    torch = _import_torch()
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        _check_state_holder(name, obj)
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"save_checkpoint(extra={extra!r}) takes a dict of values to store, "
                        f"or None")
    state: Dict[str, Any] = {"extra": dict(extra or {})}
    if model is not None:
        state["model"] = _unwrap(model).state_dict()
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    temporary = path is None
    directory = tempfile.mkdtemp(prefix="torch_checkpoint_") if temporary else os.fspath(path)
    try:
        os.makedirs(directory, exist_ok=True)
        # Written under another name and renamed, so the file is never seen half-written.
        target = os.path.join(directory, CHECKPOINT_FILENAME)
        torch.save(state, target + ".tmp")
        os.replace(target + ".tmp", target)
    except BaseException:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    checkpoint = Checkpoint.from_directory(directory)
    if temporary:
        weakref.finalize(checkpoint, shutil.rmtree, directory, True)
    return checkpoint


def load_checkpoint(checkpoint: "Checkpoint | str | os.PathLike[str]", *, model: Any = None,
                    optimizer: Any = None, scheduler: Any = None, map_location: Any = None,
                    strict: bool = True, weights_only: bool = True) -> Dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the objects you pass.

    Args:
        checkpoint: a ``tune_core.Checkpoint`` (``tune.get_checkpoint()``,
            ``Result.checkpoint``; local or remote) or a local directory.
        model: the module to load the model state into (unwrapped like in
            ``save_checkpoint``); None to skip it.
        optimizer: the optimizer to load its state into; None to skip it.
        scheduler: the LR scheduler to load its state into; None to skip it.
        map_location: where tensors go, as for ``torch.load`` (e.g. ``get_device()``);
            None keeps the devices they were saved from.
        strict: passed to the model's ``load_state_dict``.
        weights_only: as for ``torch.load``: True (the default) refuses to unpickle
            arbitrary objects, so a checkpoint from storage cannot run code; False allows
            any picklable ``extra`` (only for checkpoints you trust).

    Returns:
        The ``extra`` dict that was saved (empty if none).

    Raises:
        FileNotFoundError: the checkpoint has no :data:`CHECKPOINT_FILENAME`.
        KeyError: an object was passed whose state the checkpoint does not hold.
    """
    torch = _import_torch()
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        _check_state_holder(name, obj)
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_directory(checkpoint)
    with checkpoint.as_directory() as directory:
        file = os.path.join(directory, CHECKPOINT_FILENAME)
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"{checkpoint!r} has no {CHECKPOINT_FILENAME}: load_checkpoint reads "
                f"checkpoints written by integrations.torch.save_checkpoint (it holds "
                f"{sorted(os.listdir(directory))})")
        state = torch.load(file, map_location=map_location, weights_only=weights_only)
    targets = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    for part in _PARTS:
        obj = targets[part]
        if obj is None:
            continue
        if part not in state:
            saved = ", ".join(p for p in _PARTS if p in state) or "none of them"
            raise KeyError(f"load_checkpoint({part}=...): {checkpoint!r} holds no {part} "
                           f"state (of model, optimizer, scheduler it holds: {saved})")
        if part == "model":
            _unwrap(obj).load_state_dict(state["model"], strict=strict)
        else:
            obj.load_state_dict(state[part])
    return dict(state.get("extra") or {})


def get_device() -> Any:
    """The ``torch.device`` the current trial should train on.

    ``cuda:0`` when the trial was given GPUs (``tune.with_resources(fn, {"gpu": 1})``)
    and CUDA is available, else ``cpu``. Ray sets ``CUDA_VISIBLE_DEVICES`` of the trial's
    process to the GPUs of its placement group, so ``cuda:0`` is the trial's own first
    GPU. Outside a trial: ``cuda:0`` if CUDA is available, else ``cpu``.
    """
    torch = _import_torch()
    from tune_core.error import TuneError
    from tune_core.trainable.session import get_context

    try:
        resources = get_context().get_trial_resources()
    except TuneError:  # not in a trial
        wants_gpu = True
    else:
        # The trainable runs in the head bundle; later bundles are for workers it starts.
        head = resources.head_bundle if resources is not None else {}
        wants_gpu = head.get("GPU", 0) > 0
    if wants_gpu and torch.cuda.is_available():
        return torch.device("cuda:0")
    return torch.device("cpu")
