"""The controller's decisions and trial state transitions, driven by a fake executor (no Ray)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import pytest

from tune_core.callback import Callback
from tune_core.error import TuneError
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialStatus
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision)
from tune_core.search.search_algorithm import SearchAlgorithm, TrialSuggestion
from tune_core.stopper.stopper import Stopper

from .fake_executor import FakeExecutor


class ListSearch(SearchAlgorithm):
    """Hands out a fixed list of configs."""

    def __init__(self, configs: List[Dict[str, Any]]) -> None:
        self.configs = list(configs)
        self.completed: Dict[str, Any] = {}
        self.results: List[str] = []

    def next_trial(self, trial_id: str) -> Optional[TrialSuggestion]:
        if not self.configs:
            return None
        return TrialSuggestion(self.configs.pop(0), experiment_tag="t")

    def on_trial_result(self, trial_id, result) -> None:
        self.results.append(trial_id)

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self.completed[trial_id] = (result, error)

    def is_finished(self) -> bool:
        return not self.configs


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: List[tuple] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.trial_id))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.events.append(("result", trial.trial_id, result["training_iteration"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", trial.trial_id))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.events.append(("error", trial.trial_id))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.events.append(("recover", trial.trial_id))

    def on_experiment_end(self, trials, **info):
        self.events.append(("end",))


def make(configs, tmp_path, **kwargs):
    executor = kwargs.pop("executor", None) or FakeExecutor()
    search = ListSearch(configs)
    rec = Recorder()
    ctrl = TuneController(executor=executor, search_alg=search, callbacks=[rec],
                          experiment_path=str(tmp_path), poll_timeout=0, **kwargs)
    return ctrl, executor, search, rec


def step_until_finished(ctrl, max_steps):
    for _ in range(max_steps):
        if ctrl.is_finished():
            return
        ctrl.step()


def statuses(trials):
    return [t.status for t in trials]


def test_trials_run_to_completion(tmp_path):
    ctrl, executor, search, rec = make([{}, {}, {}], tmp_path)
    trials = ctrl.run()
    assert statuses(trials) == [TrialStatus.TERMINATED] * 3
    assert all(t.last_result["score"] == 3 and t.last_result["done"] for t in trials)
    assert executor.max_running_seen == 2  # 2 CPUs, 1 CPU each
    assert executor.shut_down
    assert set(search.completed) == {t.trial_id for t in trials}
    first = trials[0].trial_id
    mine = [e for e in rec.events if len(e) > 1 and e[1] == first]
    assert mine == [("start", first), ("result", first, 1), ("result", first, 2),
                    ("result", first, 3), ("complete", first)]
    assert rec.events[-1] == ("end",)


def test_pending_until_resources_free(tmp_path):
    ctrl, executor, _, _ = make([{}, {}, {}], tmp_path, executor=FakeExecutor(cpus=1))
    ctrl.step()
    ctrl.step()
    assert ctrl.trials[0].status == TrialStatus.RUNNING
    assert len(ctrl.trials) == 2  # one more trial created, waiting for the CPU
    assert [t.status for t in ctrl.trials[1:]] == [TrialStatus.PENDING] * (len(ctrl.trials) - 1)
    ctrl.run()
    assert executor.max_running_seen == 1


def test_max_concurrent_trials(tmp_path):
    ctrl, executor, _, _ = make([{}] * 5, tmp_path, executor=FakeExecutor(cpus=8),
                                max_concurrent_trials=2)
    ctrl.run()
    assert executor.max_running_seen == 2
    assert statuses(ctrl.trials) == [TrialStatus.TERMINATED] * 5


def test_fractional_resources_pack(tmp_path):
    ctrl, executor, _, _ = make([{}] * 6, tmp_path, executor=FakeExecutor(cpus=2),
                                resources_fn=lambda c: PlacementGroupFactory([{"CPU": 0.5}]))
    ctrl.run()
    assert executor.max_running_seen == 4


def test_stopper_terminates_trial(tmp_path):
    class AtTwo(Stopper):
        def __call__(self, trial_id, result):
            return result["training_iteration"] >= 2

        def stop_all(self):
            return False

    ctrl, _, search, rec = make([{}], tmp_path, stopper=AtTwo())
    (trial,) = ctrl.run()
    assert trial.status == TrialStatus.TERMINATED
    assert trial.last_result["training_iteration"] == 2
    assert [e for e in rec.events if e[0] == "result"][-1][2] == 2
    # The searcher saw the stopping result as the trial's final one.
    assert search.completed[trial.trial_id][0]["training_iteration"] == 2


def test_error_without_retries(tmp_path):
    ctrl, _, search, rec = make([{"fail_at": 1}, {}], tmp_path)
    trials = ctrl.run()
    assert statuses(trials) == [TrialStatus.ERROR, TrialStatus.TERMINATED]
    bad = trials[0]
    assert bad.num_failures == 1
    with open(bad.error_file) as f:
        text = f.read()
    assert "ValueError: boom" in text and "Failure # 1" in text
    assert os.path.dirname(bad.error_file) == bad.path
    assert search.completed[bad.trial_id][1] is True
    assert ("error", bad.trial_id) in rec.events


def test_retry_from_checkpoint(tmp_path):
    config = {"results": [{"score": i} for i in range(4)], "fail_at": 2, "checkpoint_every": 1}
    ctrl, executor, _, rec = make([config], tmp_path, max_failures=1)
    (trial,) = ctrl.run()
    assert trial.status == TrialStatus.TERMINATED
    assert trial.num_failures == 1
    assert ("recover", trial.trial_id) in rec.events
    relaunch = executor.launches[1]
    assert relaunch.checkpoint_path.endswith("checkpoint_000001")
    assert relaunch.restored_iteration == 2
    assert relaunch.checkpoint_index == 2
    iterations = [e[2] for e in rec.events if e[0] == "result"]
    assert iterations == [1, 2, 3, 4]


def test_retries_exhausted_is_error(tmp_path):
    ctrl, executor, _, _ = make([{"fail_at": 0, "fail_always": True}], tmp_path,
                                max_failures=2)
    (trial,) = ctrl.run()
    assert trial.status == TrialStatus.ERROR
    assert trial.num_failures == 3
    assert executor.attempts[trial.trial_id] == 3


def test_fail_fast_stops_everything(tmp_path):
    configs = [{"fail_at": 0}] + [{"results": [{"score": 1}] * 50}] * 3
    ctrl, _, _, _ = make(configs, tmp_path, fail_fast=True)
    trials = ctrl.run()
    assert trials[0].status == TrialStatus.ERROR
    assert all(t.status == TrialStatus.TERMINATED for t in trials[1:])
    assert all(t.last_result.get("training_iteration", 0) < 50 for t in trials[1:])


def test_fail_fast_raise(tmp_path):
    ctrl, _, _, _ = make([{"fail_at": 0}], tmp_path, fail_fast="raise")
    with pytest.raises(Exception, match="boom"):
        ctrl.run()


class PauseOnce(FIFOScheduler):
    """Pauses every trial once at iteration 2, then lets it finish."""

    pauses_trials = True

    def __init__(self):
        super().__init__()
        self.paused = set()

    def on_trial_result(self, trial, result):
        if result["training_iteration"] == 2 and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return SchedulerDecision.PAUSE
        return SchedulerDecision.CONTINUE


def test_pause_and_resume(tmp_path):
    config = {"results": [{"score": i} for i in range(4)]}
    ctrl, executor, _, rec = make([config], tmp_path, scheduler=PauseOnce())
    ctrl.step()  # create + start
    seen = set()
    while not ctrl.is_finished():
        ctrl.step()
        seen.add(ctrl.trials[0].status)
    (trial,) = ctrl.trials
    assert TrialStatus.PAUSED in seen
    assert trial.status == TrialStatus.TERMINATED
    assert len(executor.launches) == 2
    resumed = executor.launches[1]
    assert resumed.checkpoint_path is not None
    assert resumed.restored_iteration == 2
    iterations = [e[2] for e in rec.events if e[0] == "result"]
    assert iterations == [1, 2, 3, 4]


class PauseAndForget(FIFOScheduler):
    """Pauses every trial at iteration 2 and never picks a paused trial again."""

    pauses_trials = True

    def __init__(self):
        super().__init__()
        self.completed = []

    def on_trial_result(self, trial, result):
        if result["training_iteration"] == 2:
            return SchedulerDecision.PAUSE
        return SchedulerDecision.CONTINUE

    def on_trial_complete(self, trial, result):
        self.completed.append((trial.trial_id, trial.status))

    def choose_trial_to_run(self, candidates):
        for trial in candidates:
            if trial.status == TrialStatus.PENDING:
                return trial.trial_id
        return None


def test_paused_trials_nothing_will_resume_end_the_experiment(tmp_path):
    config = {"results": [{"score": i} for i in range(4)]}
    scheduler = PauseAndForget()
    ctrl, executor, search, rec = make([config, config, config], tmp_path, scheduler=scheduler)
    step_until_finished(ctrl, 200)
    assert ctrl.is_finished()
    assert statuses(ctrl.trials) == [TrialStatus.TERMINATED] * 3
    # Each trial ran to its pause and ended there, reported once to the scheduler.
    assert all(t.last_result["training_iteration"] == 2 for t in ctrl.trials)
    assert sorted(tid for tid, _ in scheduler.completed) == sorted(
        t.trial_id for t in ctrl.trials)
    assert len(executor.launches) == 3


class ExploitOnce(FIFOScheduler):
    """At the second trial's iteration 2, restarts it from the first trial's newest
    checkpoint with a new config (what PBT's exploit does)."""

    def __init__(self):
        super().__init__()
        self.latest = {}
        self.donated = None

    def on_trial_result(self, trial, result):
        self.latest[trial.trial_id] = trial
        first = min(self.latest)
        if trial.trial_id != first and result["training_iteration"] == 2 and \
                self.donated is None and self.latest[first].checkpoint is not None:
            donor = self.latest[first]
            self.donated = (donor.checkpoint, donor.last_result["training_iteration"])
            return RestartTrial(checkpoint=donor.checkpoint,
                                config=dict(trial.config, lr=9), donor_trial_id=first,
                                experiment_tag="lr=9@perturbed")
        return SchedulerDecision.CONTINUE


class RecordingSyncer:
    def __init__(self):
        self.deleted = []

    def state_written(self, paths):
        self.deleted += paths

    def due(self):
        return False

    def sync(self):
        pass

    def close(self):
        return True


def test_restart_from_another_trials_checkpoint(tmp_path):
    from tune_core.config import CheckpointConfig

    donor_cfg = {"results": [{"score": i} for i in range(6)], "checkpoint_every": 1, "lr": 1}
    weak_cfg = {"results": [{"score": i} for i in range(6)], "checkpoint_every": 1, "lr": 2}
    scheduler = ExploitOnce()
    syncer = RecordingSyncer()
    ctrl, executor, _, rec = make([donor_cfg, weak_cfg], tmp_path, scheduler=scheduler,
                                  syncer=syncer,
                                  checkpoint_config=CheckpointConfig(num_to_keep=1))
    step_until_finished(ctrl, 300)
    donor, weak = ctrl.trials
    assert statuses(ctrl.trials) == [TrialStatus.TERMINATED] * 2
    snapshot_checkpoint, snapshot_iteration = scheduler.donated
    relaunch = [launch for launch in executor.launches if launch.trial_id == weak.trial_id][1]
    # The weak trial starts again from the donor's newest checkpoint at the moment of the
    # exploit (the scheduler's snapshot may be a result older), with the new config,
    # counting on from that checkpoint's iteration and numbering its own checkpoints on.
    donated = relaunch.checkpoint_path
    assert donated.startswith(donor.path + "/")
    assert donated.endswith(f"checkpoint_{relaunch.restored_iteration - 1:06d}")
    assert relaunch.restored_iteration >= snapshot_iteration
    assert relaunch.config["lr"] == 9 and weak.config["lr"] == 9
    assert weak.experiment_tag == "lr=9@perturbed"
    assert relaunch.checkpoint_index == 2
    donor_iteration = relaunch.restored_iteration
    # Its rows before the exploit stay in its logs (no truncation on this restart).
    assert weak.resume_iteration is None
    iterations = [e[2] for e in rec.events if e[0] == "result" and e[1] == weak.trial_id]
    assert iterations[:2] == [1, 2] and iterations[2] == donor_iteration + 1
    assert iterations[-1] == 6
    # Retention dropped the donor checkpoint, but only once the weak trial moved on from it.
    ctrl.save_state()
    assert donated in syncer.deleted and snapshot_checkpoint.path in syncer.deleted
    assert not ctrl._held_checkpoints


class GrowOnce(FIFOScheduler):
    pauses_trials = True

    def __init__(self, resources):
        super().__init__()
        self.resources = resources
        self.done = False

    def on_trial_result(self, trial, result):
        if result["training_iteration"] == 2 and not self.done:
            self.done = True
            return ChangeResources(self.resources)
        return SchedulerDecision.CONTINUE


def test_change_resources_resumes_from_a_checkpoint_in_a_new_shape(tmp_path):
    config = {"results": [{"score": i} for i in range(4)]}
    ctrl, executor, _, rec = make([config], tmp_path, scheduler=GrowOnce({"CPU": 2}))
    step_until_finished(ctrl, 200)
    (trial,) = ctrl.trials
    assert trial.status == TrialStatus.TERMINATED
    first, second = executor.launches
    assert first.resources.required_resources == {"CPU": 1}
    assert second.resources.required_resources == {"CPU": 2}
    assert second.checkpoint_path is not None and second.restored_iteration == 2
    assert [e[2] for e in rec.events if e[0] == "result"] == [1, 2, 3, 4]


def test_resources_that_can_never_fit_are_a_scheduler_error(tmp_path):
    config = {"results": [{"score": i} for i in range(4)]}
    ctrl, _, _, _ = make([config], tmp_path, scheduler=GrowOnce({"CPU": 64}))
    with pytest.raises(TuneError, match="GrowOnce asked to change the resources"):
        ctrl.run()


def test_stop_all_terminates_pending(tmp_path):
    class StopAllAfterFirst(Stopper):
        def __init__(self):
            self.n = 0

        def __call__(self, trial_id, result):
            self.n += 1
            return False

        def stop_all(self):
            return self.n >= 1

    ctrl, executor, _, _ = make([{"results": [{"score": 1}] * 10}] * 5, tmp_path,
                                stopper=StopAllAfterFirst(), executor=FakeExecutor(cpus=1))
    trials = ctrl.run()
    assert all(t.status == TrialStatus.TERMINATED for t in trials)
    assert len(executor.launches) == 1  # the waiting trials never started


def test_resources_that_never_fit(tmp_path):
    ctrl, executor, _, _ = make([{}], tmp_path,
                                resources_fn=lambda c: PlacementGroupFactory([{"CPU": 4}]))
    (trial,) = ctrl.run()
    assert trial.status == TrialStatus.ERROR
    assert "can never fit" in trial.error_msg and "4" in trial.error_msg
    assert executor.launches == []


def test_missing_metric_is_a_clear_error(tmp_path):
    ctrl, _, _, _ = make([{"results": [{"loss": 1.0}]}], tmp_path, strict_metrics=["acc"])
    with pytest.raises(TuneError) as info:
        ctrl.run()
    message = str(info.value)
    assert "'acc'" in message and "loss" in message


def test_metric_skipped_in_later_results_is_tolerated(tmp_path):
    results = [{"acc": 0.1}, {"other": 1}, {"acc": 0.3}]
    ctrl, _, search, _ = make([{"results": results}], tmp_path, strict_metrics=["acc"])
    (trial,) = ctrl.run()
    assert trial.status == TrialStatus.TERMINATED
    assert len(search.results) == 2  # the searcher only saw results holding the metric


def test_trial_dirnames_are_short(tmp_path):
    class LongTags(ListSearch):
        def next_trial(self, trial_id):
            if not self.configs:
                return None
            self.configs.pop()
            return TrialSuggestion({"x": 1}, experiment_tag="0_" + "averyveryverylongname=1," * 20)

    executor = FakeExecutor()
    ctrl = TuneController(executor=executor, search_alg=LongTags([{}]),
                          experiment_path=str(tmp_path), poll_timeout=0,
                          trainable_name="a_trainable_with_a_long_name_indeed")
    (trial,) = ctrl.run()
    assert len(trial.dirname) <= 64
    assert trial.trial_id in trial.dirname


class FinishBeforePause(FakeExecutor):
    """The trial's last result and its end arrive in one poll, so a pause comes too late."""

    def pause_trial(self, trial_id):
        pass  # the worker has already finished; its TrialFinished is on the way

    def poll(self, timeout):
        events = super().poll(timeout)
        more = super().poll(0) if any(type(e).__name__ == "TrialResults" for e in events) \
            else []
        return events + more


def test_pause_racing_with_the_end_completes_the_trial(tmp_path):
    config = {"results": [{"score": 0}, {"score": 1}]}
    ctrl, _, search, rec = make([config], tmp_path, scheduler=PauseOnce(),
                                executor=FinishBeforePause())
    step_until_finished(ctrl, 50)
    assert ctrl.is_finished()
    (trial,) = ctrl.trials
    assert trial.status == TrialStatus.TERMINATED
    assert ("complete", trial.trial_id) in rec.events
    assert trial.trial_id in search.completed


class SlowStart(FakeExecutor):
    """TrialStarted arrives one poll late, as a real actor start takes time."""

    def __init__(self):
        super().__init__()
        self.held = []

    def poll(self, timeout):
        events = super().poll(timeout)
        out, self.held = self.held, [e for e in events if type(e).__name__ == "TrialStarted"]
        return out + [e for e in events if type(e).__name__ != "TrialStarted"]


def test_stop_all_while_a_paused_trial_restarts(tmp_path):
    class StopWhenRelaunched(Stopper):
        ctrl = None

        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return len(self.ctrl._executor.launches) >= 2

    stopper = StopWhenRelaunched()
    config = {"results": [{"score": i} for i in range(50)]}
    ctrl, executor, _, _ = make([config], tmp_path, scheduler=PauseOnce(), stopper=stopper,
                                executor=SlowStart())
    stopper.ctrl = ctrl
    step_until_finished(ctrl, 50)
    assert ctrl.is_finished()
    (trial,) = ctrl.trials
    assert trial.status == TrialStatus.TERMINATED
    assert trial.last_result["training_iteration"] < 50


def test_paused_trial_resumes_from_the_counters_of_its_checkpoint(tmp_path):
    class LateStop(FakeExecutor):
        """The trial runs one more iteration before the pause reaches it."""

        def pause_trial(self, trial_id):
            state = self.running[trial_id]
            self.outbox.append(TrialResults(trial_id, [{"score": 9, "training_iteration":
                                                        state["i"] + 1}]))
            state["i"] += 1
            super().pause_trial(trial_id)

    from tune_core.execution.executor import TrialResults

    config = {"results": [{"score": i} for i in range(5)]}
    ctrl, executor, _, rec = make([config], tmp_path, scheduler=PauseOnce(), executor=LateStop())
    while not ctrl.is_finished():
        ctrl.step()
    assert executor.launches[1].restored_iteration == 3
    iterations = [e[2] for e in rec.events if e[0] == "result"]
    assert iterations == [1, 2, 3, 4, 5]  # the late result is kept, nothing repeats


def test_checkpoint_at_end_when_a_stopper_ends_the_trial(tmp_path):
    config = {"results": [{"score": i} for i in range(10)]}
    ctrl, _, _, _ = make([config], tmp_path, stopper=MaxIter(3), checkpoint_at_end=True)
    while not ctrl.is_finished():
        ctrl.step()
    (trial,) = ctrl.trials
    assert trial.status == TrialStatus.TERMINATED
    assert trial.checkpoint is not None
    assert trial.checkpoint.path.endswith("checkpoint_000000")


class MaxIter(Stopper):
    def __init__(self, n):
        self.n = n

    def __call__(self, trial_id, result):
        return result["training_iteration"] >= self.n

    def stop_all(self):
        return False


def test_failure_after_stop_all_is_not_retried(tmp_path):
    config = {"results": [{"score": i} for i in range(10)], "fail_at": 2, "fail_always": True}
    ctrl, executor, _, _ = make([config], tmp_path, max_failures=-1)
    ctrl.step()
    ctrl.step()
    ctrl._stop_all = True  # the experiment is ending; as when a stop arrives after a failure
    for _ in range(20):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished()
    assert len(executor.launches) == 1


def test_request_stop_only_takes_effect_in_step(tmp_path):
    configs = [{"results": [{"score": i} for i in range(100)]} for _ in range(3)]
    ctrl, executor, _, _ = make(configs, tmp_path)
    ctrl.step()
    ctrl.step()
    before = statuses(ctrl.trials)
    ctrl.request_stop()  # what the SIGINT handler calls
    assert statuses(ctrl.trials) == before
    assert not ctrl.is_finished()
    for _ in range(20):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished() and ctrl.interrupted
    # interrupted, not ended: the running trials are PAUSED, the others stay PENDING,
    # so that Tuner.restore continues them
    assert statuses(ctrl.trials) == [TrialStatus.PAUSED, TrialStatus.PAUSED,
                                     TrialStatus.PENDING]
    assert not executor.running
    assert all(t.last_result.get("training_iteration", 0) < 100 for t in ctrl.trials)


def test_strict_spread_needs_as_many_nodes_as_bundles():
    from tune_core.execution.placement_groups import can_ever_fit

    pgf = PlacementGroupFactory([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    one_node = [{"CPU": 2.0}]
    two_nodes = [{"CPU": 2.0}, {"CPU": 1.0}]
    assert not can_ever_fit(pgf, {"CPU": 2.0}, one_node)
    assert can_ever_fit(pgf, {"CPU": 3.0}, two_nodes)
    assert can_ever_fit(PlacementGroupFactory([{"CPU": 0.5}, {"CPU": 0.5}]), {"CPU": 2.0},
                        one_node)
    big = PlacementGroupFactory([{"GPU": 1}, {"GPU": 1}], strategy="STRICT_SPREAD")
    assert not can_ever_fit(big, {"GPU": 2.0}, [{"GPU": 2.0}, {"CPU": 4.0}])


def test_each_finished_trial_is_written_to_the_state_once(tmp_path, monkeypatch):
    """Snapshots cost what changed: a trial is serialised in every snapshot while it runs
    and once more after it ends, never again; the state read back has every trial."""
    from tune_core.execution import tune_controller as tc_mod
    from tune_core.experiment.experiment_state import (
        ExperimentStateWriter, load_experiment_state, read_experiment_json)

    encoded: List[str] = []
    real = tc_mod.encode_finished
    monkeypatch.setattr(tc_mod, "encode_finished",
                        lambda state: encoded.append(state["trial_id"]) or real(state))
    writer = ExperimentStateWriter(str(tmp_path), budget=1.0, min_interval_s=0.0)
    ctrl, _, _, _ = make([{}] * 5, tmp_path, state_writer=writer)
    while not ctrl.is_finished():
        ctrl.step()
        ctrl.save_state()  # a snapshot after every step
    trials = ctrl.run()
    assert writer.num_writes > 5
    assert sorted(encoded) == sorted(t.trial_id for t in trials)
    state = read_experiment_json(str(tmp_path))
    assert [t["trial_id"] for t in state["trials"]] == [t.trial_id for t in trials]
    assert all(t["status"] == "TERMINATED" and t["last_result"]["score"] == 3
               for t in state["trials"])
    _, pickled = load_experiment_state(str(tmp_path))
    assert [t["trial_id"] for t in pickled["trials"]] == [t.trial_id for t in trials]
