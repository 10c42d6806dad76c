"""What the end-to-end scheduler tests share: a checkpointing trainable and a safety deadline."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List

import tune_core as tune


def checkpointing_trainable(config: Dict[str, Any]) -> None:
    """Six iterations; score = x * iteration (max), cost = iteration / x (min).

    Each result carries a checkpoint; a resumed trial starts after the iteration its
    checkpoint holds, and reports it as ``resumed_from``.
    """
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            start = json.load(f)["iteration"]
    for iteration in range(start + 1, config.get("iterations", 6) + 1):
        d = os.path.join(tune.get_context().get_trial_dir(), f"tmp_{iteration}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"iteration": iteration}, f)
        tune.report({"score": config["x"] * iteration, "cost": iteration / config["x"],
                     "resumed_from": start},
                    checkpoint=tune.Checkpoint.from_directory(d))


class Deadline(tune.Stopper):
    """A safety net: ends the experiment after ``seconds``, and remembers that it did."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.fired = False

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        self.fired = self.fired or time.monotonic() > self._end
        return self.fired


def rows(trial_path: str) -> List[Dict[str, Any]]:
    """The trial's result.json lines."""
    with open(os.path.join(trial_path, "result.json")) as f:
        return [json.loads(line) for line in f]
