"""Loggers: callbacks that write each trial's config and results (Ray Tune's names)."""

from tune_core.logger.csv import CSVLoggerCallback
from tune_core.logger.json import JsonLoggerCallback
from tune_core.logger.logger import LoggerCallback, pretty_print
from tune_core.logger.tensorboardx import TBXLoggerCallback

__all__ = ["LoggerCallback", "JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback",
           "pretty_print"]
