"""A small deterministic driver of the scheduler protocol, without Ray or an executor.

It calls a scheduler the way ``TuneController`` does (see the order of calls in
``TrialScheduler``'s docstring) and checks the protocol on the way: decisions are
``SchedulerDecision`` members and ``choose_trial_to_run`` names a candidate or None.
"""

from __future__ import annotations

import dataclasses
import pickle
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tune_core.checkpoint import Checkpoint
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, RestartTrial, SchedulerDecision, TrialScheduler)

PENDING, RUNNING, PAUSED = TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED
TERMINATED, ERROR = TrialStatus.TERMINATED, TrialStatus.ERROR
CONTINUE, PAUSE, STOP = SchedulerDecision.CONTINUE, SchedulerDecision.PAUSE, SchedulerDecision.STOP

_RESOURCES = PlacementGroupFactory([{"CPU": 1}])


def snapshot(trial_id: str, status: TrialStatus = RUNNING, *,
             config: Optional[Mapping[str, Any]] = None,
             last_result: Optional[Mapping[str, Any]] = None,
             checkpoint: Optional[Checkpoint] = None, num_failures: int = 0) -> TrialSnapshot:
    return TrialSnapshot(trial_id=trial_id, status=status,
                         config=MappingProxyType(dict(config or {})), experiment_tag="",
                         last_result=MappingProxyType(dict(last_result or {})),
                         resources=_RESOURCES, has_checkpoint=checkpoint is not None,
                         num_failures=num_failures, checkpoint=checkpoint)


def curves(n: int = 8, length: int = 9) -> List[List[Dict[str, float]]]:
    """Synthetic learning curves that cross: ``score`` (max) rises, ``cost`` (min) grows."""
    qualities = [0.3, 0.9, 0.5, 0.1, 0.7, 0.2, 0.8, 0.4, 0.6, 0.35]
    out = []
    for i in range(n):
        q = qualities[i % len(qualities)]
        out.append([{"training_iteration": t, "time_total_s": 0.5 * t,
                     "score": q * (1 - 0.6 ** t) + 0.05 * ((i * t) % 3),
                     "cost": (1.1 - q) * t + 0.1 * i} for t in range(1, length + 1)])
    return out


@dataclasses.dataclass
class SimTrial:
    trial_id: str
    curve: List[Dict[str, float]]
    status: TrialStatus = PENDING
    done: int = 0            # results reported; a resumed trial continues from here
    last_result: Dict[str, Any] = dataclasses.field(default_factory=dict)
    num_failures: int = 0
    config: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def snap(self) -> TrialSnapshot:
        # Every result checkpoints: the newest checkpoint is at ``done``.
        checkpoint = Checkpoint(f"/sim/{self.trial_id}/checkpoint_{self.done:06d}") \
            if self.done else None
        return snapshot(self.trial_id, self.status, config=self.config,
                        last_result=self.last_result, checkpoint=checkpoint,
                        num_failures=self.num_failures)


class Sim:
    """Runs trials with scripted curves, ``slots`` at a time, one result per running trial a step.

    * A new trial is created (``on_trial_add``) whenever no PENDING trial is waiting.
    * Free slots are filled through ``choose_trial_to_run`` (PENDING and PAUSED
      snapshots in creation order).
    * STOP completes a trial; PAUSE (and ``ChangeResources``) pauses it (every result
      checkpoints, so it resumes where it paused); ``RestartTrial`` makes it PENDING
      again, to continue from the donor's checkpoint with the new config; a trial
      whose curve ends completes with its last result.
    * ``fail`` = {trial index: iteration}: the trial fails as it would report that
      iteration; with ``retry`` it comes back PENDING once (the scheduler is not told,
      as with ``FailureConfig(max_failures=1)``), otherwise ``on_trial_error``.
    * When no trial runs, no new trial will come and ``choose_trial_to_run`` returns
      None, the PAUSED trials are completed (the controller's rule for trials that
      nothing can resume).

    ``log`` records every call and decision, to compare runs.
    """

    def __init__(self, scheduler: TrialScheduler, trial_curves: Sequence[List[Dict[str, float]]],
                 slots: int = 2, fail: Optional[Dict[int, int]] = None,
                 retry: bool = False) -> None:
        self.scheduler = scheduler
        self.curves = list(trial_curves)
        self.slots = slots
        self.fail = dict(fail or {})
        self.retry = retry
        self.trials: List[SimTrial] = []
        self.log: List[Tuple[Any, ...]] = []
        self.steps = 0

    # --- the loop ------------------------------------------------------------------------------
    def finished(self) -> bool:
        return len(self.trials) == len(self.curves) and all(
            t.status in (TERMINATED, ERROR) for t in self.trials)

    def run(self, max_steps: int = 500, swap_at: Optional[int] = None) -> List[Tuple[Any, ...]]:
        """Steps until every trial ended; ``swap_at``: pickle round-trip the scheduler then."""
        while not self.finished():
            assert self.steps < max_steps, f"not finished after {max_steps} steps: {self.log[-8:]}"
            if swap_at is not None and self.steps == swap_at:
                self.scheduler = pickle.loads(pickle.dumps(self.scheduler))
                self.log.append(("pickled",))
            self.step()
        return self.log

    def step(self) -> None:
        self.steps += 1
        self._create()
        self._start()
        for trial in [t for t in self.trials if t.status == RUNNING]:
            self._report(trial)
        self._create()
        if not any(t.status == RUNNING for t in self.trials) and \
                len(self.trials) == len(self.curves) and not self._start():
            for trial in self.trials:
                if trial.status == PAUSED:
                    self._complete(trial, "complete-paused")

    def _create(self) -> None:
        if len(self.trials) < len(self.curves) and not any(t.status == PENDING
                                                           for t in self.trials):
            index = len(self.trials)
            trial = SimTrial(f"t{index:02d}", self.curves[index])
            self.trials.append(trial)
            self.scheduler.on_trial_add(trial.snap())
            self.log.append(("add", trial.trial_id))

    def _start(self) -> bool:
        started = False
        while sum(t.status == RUNNING for t in self.trials) < self.slots:
            candidates = [t for t in self.trials if t.status in (PENDING, PAUSED)]
            if not candidates:
                break
            chosen = self.scheduler.choose_trial_to_run([t.snap() for t in candidates])
            if chosen is None:
                break
            trial = next((t for t in candidates if t.trial_id == chosen), None)
            assert trial is not None, f"choose_trial_to_run returned {chosen!r}, no candidate"
            trial.status = RUNNING
            started = True
            self.log.append(("start", chosen, trial.done))
            self._create()
        return started

    def _report(self, trial: SimTrial) -> None:
        index = self.trials.index(trial)
        if self.fail.get(index) == trial.done + 1 and trial.num_failures == 0:
            trial.num_failures += 1
            if self.retry:
                trial.status = PENDING
                self.log.append(("retry", trial.trial_id))
            else:
                trial.status = ERROR
                self.scheduler.on_trial_error(trial.snap())
                self.log.append(("error", trial.trial_id))
            return
        if trial.done >= len(trial.curve):
            self._complete(trial, "complete")
            return
        result = dict(trial.curve[trial.done])
        trial.done += 1
        decision = self.scheduler.on_trial_result(trial.snap(), dict(result))
        assert isinstance(decision, (SchedulerDecision, RestartTrial, ChangeResources)), \
            f"decision {decision!r}"
        trial.last_result = result
        self.log.append(("result", trial.trial_id, trial.done,
                         decision.value if isinstance(decision, SchedulerDecision)
                         else repr(decision)))
        if decision == STOP:
            self._complete(trial, "stop")
        elif decision == PAUSE or isinstance(decision, ChangeResources):
            trial.status = PAUSED
        elif isinstance(decision, RestartTrial):
            assert decision.checkpoint is None or isinstance(decision.checkpoint, Checkpoint)
            path = decision.checkpoint.path if decision.checkpoint is not None else ""
            trial.done = int(path.rsplit("_", 1)[1]) if path else 0
            trial.config = dict(decision.config)
            trial.status = PENDING

    def _complete(self, trial: SimTrial, why: str) -> None:
        trial.status = TERMINATED
        self.scheduler.on_trial_complete(trial.snap(), dict(trial.last_result) or None)
        self.log.append((why, trial.trial_id))

    # --- reading the log -------------------------------------------------------------------------
    def decisions(self) -> List[Tuple[str, int, str]]:
        return [e[1:] for e in self.log if e[0] == "result"]

    def iterations(self, trial_id: str) -> List[int]:
        return [e[2] for e in self.log if e[0] == "result" and e[1] == trial_id]
