"""Trainables: the function and class APIs and their wrappers."""

from tune_core.trainable.session import TuneContext, get_checkpoint, get_context, report
from tune_core.trainable.trainable import Trainable
from tune_core.trainable.util import with_parameters, with_resources

__all__ = ["Trainable", "TuneContext", "get_checkpoint", "get_context", "report",
           "with_parameters", "with_resources"]
