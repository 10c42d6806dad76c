"""An experiment whose driver a test kills while a trial is writing a checkpoint.

Usage: python _checkpoint_crash_experiment.py STORAGE NAME

With the environment variable ``CKPT_CRASH_MARKER_DIR`` set to a directory, once the
test has created the file ``armed`` there, the next save writes half of its files,
touches a marker file (``<trial_id>_<iteration>``) in that directory and then sleeps, so
that the test can SIGKILL the driver exactly while the checkpoint is half written.
Without the variable (the restored run), saving is quick and complete.

The trainable is deterministic: ``x`` after ``ITERS`` steps is :func:`expected_x`, and
``load_checkpoint`` fails loudly on a checkpoint that is incomplete or inconsistent.
"""

from __future__ import annotations

import json
import os
import sys
import time

import tune_core as tune

ITERS = 16
STEP_S = 0.08
LRS = [0.1, 0.2, 0.3, 0.4]
PARTS = ("part_a.json", "part_b.json")
MARKER_ENV = "CKPT_CRASH_MARKER_DIR"


def next_x(x: float, lr: float, step: int) -> float:
    return x * (1.0 - lr) + lr * step


def expected_x(lr: float, iters: int = ITERS) -> list:
    """``x`` after each step 1..iters of an uninterrupted run."""
    x, out = 1.0, []
    for step in range(1, iters + 1):
        x = next_x(x, lr, step)
        out.append(x)
    return out


class HalfSaver(tune.Trainable):
    def setup(self, config):
        self.step_n = 0
        self.x = 1.0
        self.restored_from = 0

    def step(self):
        time.sleep(STEP_S)
        self.step_n += 1
        self.x = next_x(self.x, self.config["lr"], self.step_n)
        return {"step": self.step_n, "x": self.x, "restored_from": self.restored_from,
                "done": self.step_n >= ITERS}

    def save_checkpoint(self, checkpoint_dir):
        state = {"step": self.step_n, "x": self.x}
        with open(os.path.join(checkpoint_dir, PARTS[0]), "w") as f:
            json.dump(state, f)
        marker_dir = os.environ.get(MARKER_ENV)
        if marker_dir and os.path.exists(os.path.join(marker_dir, "armed")):
            # Half written: tell the test, then wait for the SIGKILL (the sleep is
            # bounded so that a process that somehow survives ends by itself).
            open(os.path.join(marker_dir, f"{self.trial_id}_{self.step_n}"), "w").close()
            time.sleep(60)
        with open(os.path.join(checkpoint_dir, PARTS[1]), "w") as f:
            json.dump(state, f)

    def load_checkpoint(self, checkpoint_dir):
        present = sorted(os.listdir(checkpoint_dir))
        missing = [p for p in PARTS if p not in present]
        assert not missing, f"half-written checkpoint {checkpoint_dir}: {present}"
        states = []
        for part in PARTS:
            with open(os.path.join(checkpoint_dir, part)) as f:
                states.append(json.load(f))
        assert states[0] == states[1], f"inconsistent checkpoint {checkpoint_dir}: {states}"
        self.step_n, self.x = states[0]["step"], states[0]["x"]
        self.restored_from = self.step_n


def make_tuner(storage: str, name: str) -> tune.Tuner:
    return tune.Tuner(
        HalfSaver,
        param_space={"lr": tune.grid_search(LRS)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            storage_path=storage, name=name, verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1)))


if __name__ == "__main__":
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    make_tuner(sys.argv[1], sys.argv[2]).fit()
