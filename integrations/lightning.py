"""PyTorch Lightning callbacks that report to tune_core (Ray Tune's names and arguments).

``TuneReportCheckpointCallback`` reports the trainer's ``callback_metrics`` and a
checkpoint (``trainer.save_checkpoint``) at a hook of your choice;
``TuneReportCallback`` reports the metrics only::

    from integrations.lightning import TuneReportCheckpointCallback

    trainer = lightning.pytorch.Trainer(max_epochs=10, callbacks=[
        TuneReportCheckpointCallback({"loss": "val_loss"}, on="validation_end")])

Resume from a reported checkpoint with ``trainer.fit(model, ckpt_path=...)``::

    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.fit(module, ckpt_path=os.path.join(d, "checkpoint"))

Lightning is optional: install ``pip install 'tune-core[lightning]'`` (``lightning``;
the older ``pytorch_lightning`` package works too). It is imported when this module
is, never by ``import integrations``; without it, creating a callback raises an
ImportError that says what to install.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from tune_core.checkpoint import Checkpoint

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback", "TuneCallback"]

logger = logging.getLogger(__name__)

try:
    from lightning.pytorch import Callback as _Callback
    _IMPORT_ERROR: Optional[ImportError] = None
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback as _Callback
        _IMPORT_ERROR = None
    except ImportError:
        _Callback = object  # type: ignore[assignment,misc]
        _IMPORT_ERROR = _exc

# Hooks a report may not run in: saving and loading checkpoints would recurse or see a
# half-restored trainer; on_exception runs while the trial is failing.
_EXCLUDED_HOOKS = frozenset({"on_save_checkpoint", "on_load_checkpoint", "on_exception"})
_HOOKS = sorted(name for name in dir(_Callback)
                if name.startswith("on_") and callable(getattr(_Callback, name))
                and name not in _EXCLUDED_HOOKS)


def _hook_method(name: str) -> Any:
    def hook(self: "TuneCallback", trainer: Any, pl_module: Any = None, *args: Any,
             **kwargs: Any) -> None:
        if name in self._on:
            self._handle(trainer, pl_module)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = f"Reports when ``on`` includes ``{name[3:]!r}``."
    return hook


class TuneCallback(_Callback):  # type: ignore[misc,valid-type]
    """Base class: calls :meth:`_handle` at the Lightning hooks named by ``on``.

    Args:
        on: a hook name without its ``on_`` (``"validation_end"``, ``"train_epoch_end"``,
            ``"train_batch_end"``, ...) or a list of them.
    """

    def __init__(self, on: Union[str, Sequence[str]] = "validation_end") -> None:
        if _IMPORT_ERROR is not None:
            raise ImportError(
                f"{type(self).__name__} needs PyTorch Lightning: pip install "
                "'tune-core[lightning]' (or lightning>=2.1)") from _IMPORT_ERROR
        names = [on] if isinstance(on, str) else list(on)
        if not names:
            raise ValueError(f"{type(self).__name__}(on={on!r}): name at least one hook")
        allowed = [h[3:] for h in _HOOKS]
        for hook in names:
            if not isinstance(hook, str) or f"on_{hook}" not in _HOOKS:
                raise ValueError(f"{type(self).__name__}(on={hook!r}) is not a Lightning "
                                 f"callback hook; use one of {', '.join(allowed)}")
        self._on = frozenset(f"on_{hook}" for hook in names)

    def _handle(self, trainer: Any, pl_module: Any) -> None:
        raise NotImplementedError


for _name in _HOOKS:
    setattr(TuneCallback, _name, _hook_method(_name))


def _to_number(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "numel", lambda: 1)() == 1:
        return item()
    return value


class TuneReportCheckpointCallback(TuneCallback):
    """Reports the trainer's metrics, and a checkpoint, to tune_core at a Lightning hook.

    Nothing is reported during Lightning's sanity check, nor when none of the
    metrics asked for is there yet.

    Args:
        metrics: which of ``trainer.callback_metrics`` to report: None for all, a name
            or list of names (reported under the same names), or a dict of
            ``{name to report: Lightning metric name}``. A named metric missing at the
            hook is left out with a warning.
        filename: the file, inside the checkpoint directory, that
            ``trainer.save_checkpoint`` writes.
        save_checkpoints: False reports metrics only.
        on: the hook(s) to report at, without ``on_``: ``"validation_end"`` (default),
            ``"train_epoch_end"``, ``"train_end"``, ...
    """

    def __init__(self, metrics: Union[None, str, Sequence[str], Mapping[str, str]] = None,
                 filename: str = "checkpoint", save_checkpoints: bool = True,
                 on: Union[str, Sequence[str]] = "validation_end") -> None:
        super().__init__(on=on)
        if isinstance(metrics, str):
            metrics = [metrics]
        if metrics is not None and not isinstance(metrics, Mapping):
            metrics = list(metrics)
            if not all(isinstance(m, str) for m in metrics):
                raise ValueError(f"{type(self).__name__}(metrics={metrics!r}): use None, a "
                                 f"metric name, a list of names or a dict of names")
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{type(self).__name__}(filename={filename!r}): use a plain "
                             f"file name such as 'checkpoint'")
        self._metrics: Union[None, List[str], Dict[str, str]] = (
            dict(metrics) if isinstance(metrics, Mapping) else metrics)
        self._filename = filename
        self._save_checkpoints = bool(save_checkpoints)

    def _report_dict(self, trainer: Any) -> Dict[str, Any]:
        available = trainer.callback_metrics
        if self._metrics is None:
            return {k: _to_number(v) for k, v in available.items()}
        wanted = (self._metrics.items() if isinstance(self._metrics, dict)
                  else ((m, m) for m in self._metrics))
        out = {}
        for report_name, name in wanted:
            if name in available:
                out[report_name] = _to_number(available[name])
            else:
                logger.warning("%s: metric %r is not in trainer.callback_metrics (it has "
                               "%s)", type(self).__name__, name,
                               ", ".join(sorted(available)) or "none")
        return out

    def _handle(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        report = self._report_dict(trainer)
        if not report:
            return
        from tune_core.trainable.session import report as tune_report

        if not self._save_checkpoints:
            if trainer.is_global_zero:
                tune_report(report)
            return
        with tempfile.TemporaryDirectory(prefix="lightning_checkpoint_") as directory:
            # Every rank calls save_checkpoint (strategies may gather state); rank 0
            # reports, and tune.report copies the directory before it returns.
            trainer.save_checkpoint(os.path.join(directory, self._filename))
            if trainer.is_global_zero:
                tune_report(report, checkpoint=Checkpoint.from_directory(directory))


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports the trainer's metrics (no checkpoint) to tune_core at a Lightning hook.

    Args:
        metrics: as for :class:`TuneReportCheckpointCallback`.
        on: as for :class:`TuneReportCheckpointCallback`.
    """

    def __init__(self, metrics: Union[None, str, Sequence[str], Mapping[str, str]] = None,
                 on: Union[str, Sequence[str]] = "validation_end") -> None:
        super().__init__(metrics=metrics, save_checkpoints=False, on=on)
