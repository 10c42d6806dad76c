"""An executor without Ray for controller tests: trials follow a script in their config.

A trial's config may hold:
    results:   list of metric dicts the trial reports, one per poll (default 3 results)
    fail_at:   index of the result at which the trial raises instead (first attempt only
               unless fail_always=True)
    fail_always: fail at ``fail_at`` on every attempt
    checkpoint_every: report a checkpoint with every n-th result
"""

from __future__ import annotations

from typing import Any, Dict, List

from tune_core.error import TrialError
from tune_core.execution.executor import (
    Executor, TrialFailed, TrialFinished, TrialLaunch, TrialPaused, TrialResults, TrialStarted,
    TrialStopped)
from tune_core.execution.placement_groups import PlacementGroupFactory


class FakeExecutor(Executor):
    def __init__(self, cpus: float = 2.0) -> None:
        self.cpus = cpus
        self.used = 0.0
        self.running: Dict[str, Dict[str, Any]] = {}
        self.launches: List[TrialLaunch] = []
        self.attempts: Dict[str, int] = {}
        self.max_running_seen = 0
        self.outbox: List[Any] = []
        self.shut_down = False

    def total_resources(self) -> Dict[str, float]:
        return {"CPU": self.cpus}

    def can_start(self, resources: PlacementGroupFactory) -> bool:
        return self.used + resources.required_resources.get("CPU", 0) <= self.cpus + 1e-9

    def start_trial(self, launch: TrialLaunch) -> None:
        self.launches.append(launch)
        self.attempts[launch.trial_id] = self.attempts.get(launch.trial_id, 0) + 1
        self.used += launch.resources.required_resources.get("CPU", 0)
        start_index = launch.restored_iteration
        self.running[launch.trial_id] = {"launch": launch, "i": start_index,
                                          "ckpt": launch.checkpoint_index}
        self.max_running_seen = max(self.max_running_seen, len(self.running))
        self.outbox.append(TrialStarted(launch.trial_id, "127.0.0.1", 1))

    def _release(self, trial_id: str) -> Dict[str, Any]:
        state = self.running.pop(trial_id)
        self.used -= state["launch"].resources.required_resources.get("CPU", 0)
        return state

    def stop_trial(self, trial_id: str) -> None:
        # Like a class trainable: with checkpoint_at_end it saves as it stops.
        if trial_id in self.running:
            state = self._release(trial_id)
            if state["launch"].checkpoint_at_end:
                path = f"{state['launch'].trial_dir}/checkpoint_{state['ckpt']:06d}"
                self.outbox.append(TrialStopped(trial_id, path, state["i"], float(state["i"])))
            else:
                self.outbox.append(TrialStopped(trial_id))

    def pause_trial(self, trial_id: str) -> None:
        # Like a class trainable: it saves at the iteration it has reached.
        if trial_id in self.running:
            state = self._release(trial_id)
            path = f"{state['launch'].trial_dir}/checkpoint_{state['ckpt']:06d}"
            self.outbox.append(TrialPaused(trial_id, path, state["i"], float(state["i"])))

    def poll(self, timeout: float) -> List[Any]:
        events, self.outbox = self.outbox, []
        for trial_id, state in list(self.running.items()):
            if any(getattr(e, "trial_id", None) == trial_id and isinstance(e, TrialStarted)
                   for e in events):
                continue  # results start on the next poll
            config = state["launch"].config
            script = config.get("results", [{"score": 1}, {"score": 2}, {"score": 3}])
            i = state["i"]
            fail_at = config.get("fail_at")
            if fail_at is not None and i == fail_at and (
                    config.get("fail_always") or self.attempts[trial_id] == 1):
                self._release(trial_id)
                err = TrialError("ValueError: boom", trial_id=trial_id,
                                 traceback_str="Traceback ...\nValueError: boom",
                                 cause_type="ValueError")
                events.append(TrialFailed(trial_id, err, err.traceback_str))
                continue
            if i >= len(script):
                self._release(trial_id)
                events.append(TrialFinished(trial_id))
                continue
            result = dict(script[i])
            result.setdefault("training_iteration", i + 1)
            every = config.get("checkpoint_every")
            if every and (i + 1) % every == 0:
                result["checkpoint_dir_name"] = f"checkpoint_{state['ckpt']:06d}"
                state["ckpt"] += 1
            state["i"] = i + 1
            events.append(TrialResults(trial_id, [result]))
        return events

    def shutdown(self) -> None:
        self.shut_down = True
