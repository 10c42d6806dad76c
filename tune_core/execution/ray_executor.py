"""Runs trials on Ray: one actor per trial slot, each inside its own placement group.

Worker processes are reused by default: when a trial ends, its actor and placement
group wait in a pool keyed by resource shape, and the next trial with the same
shape starts in it at once (a fresh session and trainable object every time).
Starting a new process costs hundreds of milliseconds; reuse costs one call. With
``keep_workers_s`` the idle workers also outlive the experiment, for the next one in the
same driver process (``_KeptWorkers``).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from tune_core.error import TrialError
from tune_core.execution._worker import DEFAULT_LOOKAHEAD, TrialWorker
from tune_core.execution.executor import (
    Executor, ExecutorEvent, TrialFailed, TrialFinished, TrialLaunch, TrialPaused, TrialResults,
    TrialStarted, TrialStopped)
from tune_core.execution.placement_groups import PlacementGroupFactory

logger = logging.getLogger(__name__)

_EPS = 1e-9
# A new worker that waits this long while idle workers exist may be waiting for them.
_IDLE_BLOCKS_S = 5.0


class _Slot:
    """One worker actor with its placement group."""

    __slots__ = ("actor", "pg", "shape", "trial_id", "trial_name", "stop_requested", "pause",
                 "stop_deadline", "healthy", "node_ip", "pid", "launch", "reused", "kept",
                 "started_at", "up")

    def __init__(self, actor: Any, pg: Any, shape: PlacementGroupFactory) -> None:
        self.actor = actor
        self.pg = pg
        self.shape = shape
        self.trial_id: Optional[str] = None
        self.trial_name = ""
        self.stop_requested = False
        self.pause = False
        self.stop_deadline = 0.0
        self.healthy = True
        self.node_ip = ""
        self.pid = 0
        self.launch: Optional[TrialLaunch] = None
        self.reused = False  # taken from the pool of idle workers
        self.kept = False  # kept from an earlier experiment: its next start sets it up
        self.started_at = 0.0  # when its current trial's start was asked for
        self.up = False  # its process has answered (it is no longer starting)


def _kill(slot: _Slot) -> None:
    """Ends a worker and frees its placement group (no accounting)."""
    try:
        ray.kill(slot.actor, no_restart=True)
    except Exception:
        pass
    if slot.pg is not None:
        try:
            remove_placement_group(slot.pg)
        except Exception:
            pass


def _pg_pending(pg: Any) -> bool:
    try:
        from ray.util import placement_group_table

        return placement_group_table(pg).get("state") == "PENDING"
    except Exception:
        return False


def _ray_session() -> Optional[str]:
    """Names the running Ray instance: actor handles of another one mean nothing."""
    if not ray.is_initialized():
        return None
    try:
        ctx = ray.get_runtime_context()
        return f"{ctx.get_session_name()}:{ctx.get_job_id()}"
    except Exception:
        return None


class _KeptWorkers:
    """Idle workers an experiment left for the next one in this driver process
    (``TuneConfig(keep_workers_s=...)``).

    Each keeps its placement group, so its CPUs/GPUs stay reserved, until a later
    experiment takes it over or ``keep_s`` pass; then a timer thread ends it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: List[Tuple[_Slot, float]] = []  # (slot, monotonic deadline)
        self._session: Optional[str] = None
        self._timer: Optional[threading.Timer] = None

    def put(self, slots: List[_Slot], keep_s: float) -> None:
        session = _ray_session()
        if session is None:
            return
        deadline = time.monotonic() + keep_s
        with self._lock:
            if self._session != session:
                self._slots = []
            self._session = session
            for slot in slots:
                slot.kept = True
                self._slots.append((slot, deadline))
            self._arm()

    def take(self) -> List[_Slot]:
        """All kept workers (of this Ray instance), for the experiment that starts now."""
        with self._lock:
            slots = [slot for slot, _ in self._slots] \
                if self._session is not None and self._session == _ray_session() else []
            self._slots = []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        return slots

    def _arm(self) -> None:  # with the lock held
        if self._timer is not None:
            self._timer.cancel()
        if self._slots:
            wait = max(0.0, min(d for _, d in self._slots) - time.monotonic())
            self._timer = threading.Timer(wait, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [slot for slot, d in self._slots if d <= now]
            self._slots = [(slot, d) for slot, d in self._slots if d > now]
            same = self._session is not None and self._session == _ray_session()
            self._timer = None
            self._arm()
        if same:
            for slot in gone:
                _kill(slot)


_KEPT = _KeptWorkers()


def release_kept_workers() -> int:
    """Ends the workers kept for a next experiment now; returns how many there were."""
    slots = _KEPT.take()
    for slot in slots:
        _kill(slot)
    return len(slots)


def _path_exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def _fits(free: Dict[str, float], need: Dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPS >= v for k, v in need.items())


class RayExecutor(Executor):
    """Runs each trial in a Ray actor placed in a placement group built from its resources.

    Args:
        trainable: the function or ``Trainable`` class (put into the object store once).
        reuse_actors: None (default) reuses worker processes with a fresh trainable per
            trial; True also keeps a class trainable's object and calls ``reset_config``;
            False starts a new actor (named after its trial) for every trial.
        keep_workers_s: with reuse, idle workers outlive ``shutdown`` by this many seconds
            for the next experiment in this driver process (0: they end with it).
        stop_timeout: seconds a class trainable may take to stop (finish its step,
            save, clean up) before its worker is killed.
        function_stop_timeout: the same for a function trainable, which stops at its
            next ``report``; everything it reported is safe by then, so the wait is short.
        max_starting_workers: how many new worker processes may be starting at once
            (None: as many as the cluster has CPUs). A process start is CPU-bound (Python,
            ``import ray``: about 0.3 s of CPU); starting more than the CPUs can run
            slows every start down, and Ray then holds back even the first workers'
            replies until the crowd is up (8 workers on 2 CPUs: 1.3-1.9 s instead of
            0.3-0.5 s to the first result). The trials beyond it keep their resources
            and start as earlier workers come up.
    """

    def __init__(self, trainable: Any, *, reuse_actors: Optional[bool] = None,
                 stop_timeout: float = 30.0, function_stop_timeout: float = 2.0,
                 fetch_timeout: float = 2.0,
                 lookahead: int = DEFAULT_LOOKAHEAD, experiment_name: str = "tune",
                 log_files: Tuple[Optional[str], Optional[str]] = (None, None),
                 keep_workers_s: float = 0.0,
                 max_starting_workers: Optional[int] = None) -> None:
        self._trainable = trainable
        self._keep_workers_s = keep_workers_s
        self._log_files = tuple(log_files)
        self._reuse_actors = reuse_actors
        self._stop_timeout = stop_timeout if inspect.isclass(trainable) else \
            min(stop_timeout, function_stop_timeout)
        self._fetch_timeout = fetch_timeout
        self._lookahead = lookahead
        self._experiment_name = experiment_name
        self._slots: Dict[str, _Slot] = {}
        self._idle: Dict[PlacementGroupFactory, List[_Slot]] = {}
        self._refs: Dict[Any, Tuple[str, _Slot]] = {}
        self._used: Dict[str, float] = {}
        self._events: List[ExecutorEvent] = []
        self._refetch: List[_Slot] = []   # lock-step trials, asked again at the next poll
        self._worker_cls: Any = None
        self._trainable_ref: Any = None
        self._total: Dict[str, float] = {}
        self._nodes: List[Dict[str, float]] = []
        self._counter = itertools.count()
        self._uid = uuid.uuid4().hex[:4]  # keeps actor names unique across experiments
        self._next_unblock_check = 0.0
        # New worker processes starting at once: at most as many as there are CPUs to run
        # them (max_starting_workers, or the cluster's CPUs); further trials wait in
        # _deferred with their resources held, and start as earlier workers come up.
        if max_starting_workers is not None and (
                isinstance(max_starting_workers, bool) or not isinstance(max_starting_workers, int)
                or max_starting_workers < 1):
            raise ValueError(f"RayExecutor: `max_starting_workers` must be an int >= 1 or None "
                             f"(as many as the cluster has CPUs); got {max_starting_workers!r}")
        self._max_starting = max_starting_workers
        self._start_limit = max_starting_workers or 1  # the cluster's CPUs once it is known
        self._deferred: List[TrialLaunch] = []
        self._prestart_left: Dict[PlacementGroupFactory, int] = {}  # prestarts not made yet

    # --- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        if not ray.is_initialized():
            raise RuntimeError("RayExecutor.setup: Ray is not initialised")
        if self._trainable_ref is not None:  # already set up
            self.refresh_resources()
            return
        self._trainable_ref = ray.put(self._trainable)
        self._worker_cls = ray.remote(TrialWorker)
        self.refresh_resources()
        # Workers an earlier experiment left: this one's idle pool (or their resources).
        for slot in _KEPT.take():
            slot.up = True  # a process of the last experiment's: not one that is starting
            if self._reuse_processes():
                slot.healthy, slot.reused = True, False
                self._idle.setdefault(slot.shape, []).append(slot)
                self._take(slot.shape.required_resources, +1)
            else:
                _kill(slot)

    def refresh_resources(self) -> None:
        self._nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        total: Dict[str, float] = {}
        for node in self._nodes:
            for k, v in node.items():
                total[k] = total.get(k, 0.0) + v
        self._total = total
        self._start_limit = max(1, self._max_starting or int(total.get("CPU", 0.0)))

    def total_resources(self) -> Dict[str, float]:
        return dict(self._total)

    def largest_node_resources(self) -> Sequence[Dict[str, float]]:
        return [dict(n) for n in self._nodes]

    def nodes_missing_path(self, path: str, timeout: float = 60.0) -> List[str]:
        """The alive nodes on which ``path`` does not exist (each as ``"<ip> (<id>)"``).

        Runs a tiny task pinned to every node; a node that does not answer within
        ``timeout`` counts as not seeing it.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0, max_retries=0)(_path_exists)
        refs = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ref = probe.options(scheduling_strategy=strategy).remote(path)
            refs[ref] = f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        missing = [desc for ref, desc in refs.items() if ref not in ready]
        for ref in ready:
            try:
                if not ray.get(ref):
                    missing.append(refs[ref])
            except Exception:
                missing.append(refs[ref])
        return sorted(missing)

    # --- accounting ---------------------------------------------------------------------------
    def _free(self) -> Dict[str, float]:
        return {k: v - self._used.get(k, 0.0) for k, v in self._total.items()}

    def _take(self, need: Dict[str, float], sign: float) -> None:
        for k, v in need.items():
            self._used[k] = self._used.get(k, 0.0) + sign * v

    def _reuse_processes(self) -> bool:
        return self._reuse_actors is not False

    def can_start(self, resources: PlacementGroupFactory) -> bool:
        need = resources.required_resources
        if self._reuse_processes() and self._idle.get(resources):
            return True
        free = self._free()
        if _fits(free, need):
            return True
        for shape, slots in self._idle.items():  # idle workers of other shapes can make room
            for slot in slots:
                for k, v in shape.required_resources.items():
                    free[k] = free.get(k, 0.0) + v
        return _fits(free, need)

    def prestart(self, shape: PlacementGroupFactory, count: int = 1) -> int:
        """Start up to ``count`` workers for trials of ``shape`` now, into the pool of
        idle workers, so that the process start (hundreds of milliseconds) overlaps the
        rest of the experiment's setup instead of delaying its first trial. Only with
        worker reuse, only as many as fit, and counting idle workers of that shape (kept
        from an earlier experiment); returns how many were started."""
        if not self._reuse_processes():
            return 0
        self._prestart_left[shape] = count - len(self._idle.get(shape, ()))
        return self._prestart_more()

    def _prestart_more(self) -> int:
        """Makes the prestarts left to make while fewer than the limit are starting; the
        rest as those come up (so that the pool grows to the first wave's size even when
        its trials end too soon to need new workers)."""
        started = 0
        for shape, left in list(self._prestart_left.items()):
            while left > 0 and self._starting() < self._start_limit \
                    and _fits(self._free(), shape.required_resources):
                slot = self._new_slot(shape, "")
                slot.started_at = time.monotonic()
                self._idle.setdefault(shape, []).append(slot)
                self._refs[slot.actor.ready.remote()] = ("ready", slot)  # says when it is up
                started += 1
                left -= 1
            if left > 0 and _fits(self._free(), shape.required_resources):
                self._prestart_left[shape] = left
            else:  # made, or no room for them (the trials have it)
                del self._prestart_left[shape]
        return started

    def _starting(self) -> int:
        """Workers whose process has not answered yet (busy or idle)."""
        return sum(1 for slot in self._slots.values() if not slot.up) + \
            sum(1 for slots in self._idle.values() for slot in slots if not slot.up)

    # --- trial control ------------------------------------------------------------------------
    def start_trial(self, launch: TrialLaunch) -> None:
        shape = launch.resources
        if not self._idle_for(shape) and self._starting() >= self._start_limit:
            # What it takes is made free now, as a start would (idle workers of other
            # shapes give way); then it waits until a starting worker is up.
            self._make_room(shape.required_resources)
            if self._starting() >= self._start_limit:
                self._deferred.append(launch)
                self._take(shape.required_resources, +1)
                return
        self._start_now(launch)

    def _idle_for(self, shape: PlacementGroupFactory) -> bool:
        return self._reuse_processes() and bool(self._idle.get(shape))

    def _start_deferred(self) -> None:
        """Starts the deferred trials that can start now (in order): in an idle worker, or
        in a new one while fewer than the limit are starting."""
        waiting, self._deferred = self._deferred, []
        for launch in waiting:
            shape = launch.resources
            idle = self._idle_for(shape)
            if not idle and self._starting() >= self._start_limit:
                self._deferred.append(launch)
                continue
            self._take(shape.required_resources, -1)
            self._start_now(launch)
            if idle:
                # It waited for a new worker: that one is still made (if there is room),
                # so the pool grows as it would have if it had started at once.
                self._prestart_left[shape] = self._prestart_left.get(shape, 0) + 1

    def _start_now(self, launch: TrialLaunch) -> None:
        shape = launch.resources
        slot = self._pop_idle(shape) if self._reuse_processes() else None
        reused = slot is not None
        if slot is None:
            self._make_room(shape.required_resources)
            slot = self._new_slot(shape, launch.trial_name)
        slot.trial_id = launch.trial_id
        slot.trial_name = launch.trial_name
        slot.stop_requested = False
        slot.pause = False
        slot.launch, slot.reused = launch, reused
        slot.started_at = time.monotonic()
        self._slots[launch.trial_id] = slot
        if slot.kept:  # from an earlier experiment: it learns about this one first
            slot.kept = False
            setup = (self._reuse_actors is True, self._lookahead, self._log_files)
            ref = slot.actor.start.remote(launch, self._trainable_ref, setup)
            self._refs[ref] = ("start", slot)
        else:
            self._refs[slot.actor.start.remote(launch)] = ("start", slot)

    def _pop_idle(self, shape: PlacementGroupFactory) -> Optional[_Slot]:
        slots = self._idle.get(shape)
        if not slots:
            return None
        slot = slots.pop()
        if not slots:
            del self._idle[shape]
        return slot

    def _make_room(self, need: Dict[str, float]) -> None:
        for shape in list(self._idle):
            while not _fits(self._free(), need) and self._idle.get(shape):
                self._destroy(self._pop_idle(shape))

    def _new_slot(self, shape: PlacementGroupFactory, trial_name: str) -> _Slot:
        bundles = [b for b in shape.bundles if b]
        head = shape.head_bundle
        options: Dict[str, Any] = {
            "num_cpus": head.get("CPU", 0.0), "num_gpus": head.get("GPU", 0.0),
            "max_concurrency": 4, "max_restarts": 0,
            "resources": {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")},
        }
        if head.get("memory"):
            options["memory"] = head["memory"]
        pg = None
        if bundles:
            pg = placement_group(bundles, strategy=shape.strategy)
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0 if head else -1,
                placement_group_capture_child_tasks=True)
        # Actors are named for `ray list actors` and the dashboard: after their trial when
        # they serve one trial, after the experiment when they are reused across trials.
        if self._reuse_processes():
            options["name"] = f"{self._experiment_name}:{self._uid}:worker_{next(self._counter)}"
        else:
            options["name"] = f"{trial_name}_{next(self._counter)}"
        options["namespace"] = "tune_core"
        actor = self._worker_cls.options(**options).remote(
            self._trainable_ref, self._reuse_actors is True, self._lookahead, self._log_files)
        self._take(shape.required_resources, +1)
        return _Slot(actor, pg, shape)

    def _destroy(self, slot: Optional[_Slot]) -> None:
        if slot is None:
            return
        _kill(slot)
        self._take(slot.shape.required_resources, -1)

    def _release(self, slot: _Slot) -> None:
        """A trial is done with its slot: pool it for reuse or destroy it."""
        if slot.trial_id is not None and self._slots.get(slot.trial_id) is slot:
            del self._slots[slot.trial_id]
        slot.trial_id = None
        if slot.healthy and self._reuse_processes():
            self._idle.setdefault(slot.shape, []).append(slot)
        else:
            self._destroy(slot)

    def _unblock_new_workers(self) -> None:
        """Idle workers must not keep a new worker's placement group from being placed.

        They cannot when the cluster is as large as counted (a new worker is only made
        when its resources are free), but they can when it is smaller: a lost node that
        Ray has not declared dead yet. So when a new worker has waited long for its
        start and its placement group is still pending, the idle workers are ended.
        """
        if not self._idle:
            return
        now = time.monotonic()
        if now < self._next_unblock_check:
            return
        self._next_unblock_check = now + 1.0
        # New workers not up yet: starting a trial, or prestarted (idle, or taken by a
        # trial); the trials deferred by the start limit wait for them too.
        waiting = [s for s in itertools.chain(
            self._slots.values(), (s for slots in self._idle.values() for s in slots))
            if not s.up and s.pg is not None and now - s.started_at > _IDLE_BLOCKS_S]
        if not any(_pg_pending(s.pg) for s in waiting):
            return
        logger.debug("A new worker's placement group has waited over %.0f s; ending the "
                     "idle workers, whose resources it may need", _IDLE_BLOCKS_S)
        try:
            self.refresh_resources()
        except Exception:
            logger.debug("Could not refresh the cluster's resources", exc_info=True)
        for shape in list(self._idle):
            while self._idle.get(shape):
                self._destroy(self._pop_idle(shape))

    def stop_trial(self, trial_id: str) -> None:
        self._request_stop(trial_id, pause=False)

    def pause_trial(self, trial_id: str) -> None:
        self._request_stop(trial_id, pause=True)

    def _request_stop(self, trial_id: str, pause: bool) -> None:
        for i, launch in enumerate(self._deferred):
            if launch.trial_id == trial_id:  # never started: nothing to stop or save
                del self._deferred[i]
                self._take(launch.resources.required_resources, -1)
                self._events.append(TrialPaused(trial_id, None) if pause else
                                    TrialStopped(trial_id))
                return
        slot = self._slots.get(trial_id)
        if slot is None or slot.stop_requested:
            return
        slot.stop_requested = True
        slot.pause = pause
        slot.stop_deadline = time.monotonic() + self._stop_timeout
        slot.actor.stop.remote(pause, trial_id)

    # --- events -------------------------------------------------------------------------------
    def poll(self, timeout: float) -> List[ExecutorEvent]:
        # Lock-step trials wait in report() until the driver has decided on their last
        # results; by now it has, and the fetch tells them (unless it stopped them).
        refetch, self._refetch = self._refetch, []
        for slot in refetch:
            if self._slots.get(slot.trial_id) is slot:
                ref = slot.actor.fetch.remote(self._fetch_timeout, not slot.stop_requested)
                self._refs[ref] = ("fetch", slot)
        events, self._events = self._events, []
        refs = list(self._refs)
        if refs:
            ready, _ = ray.wait(refs, num_returns=1, timeout=0 if events else timeout)
            if ready and len(refs) > 1:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                kind, slot = self._refs.pop(ref)
                if kind == "start":
                    self._on_started(ref, slot, events)
                elif kind == "ready":
                    self._on_ready(ref, slot)
                else:
                    self._on_fetched(ref, slot, events)
        elif not events and timeout > 0:
            time.sleep(min(timeout, 0.05))
        self._kill_stuck(events)
        self._unblock_new_workers()
        if self._deferred:
            self._start_deferred()
        if self._prestart_left:
            self._prestart_more()
        return events

    def _on_ready(self, ref: Any, slot: _Slot) -> None:
        """A prestarted worker answered: it is up (or dead: then it is dropped if idle)."""
        slot.up = True
        try:
            info = ray.get(ref)
        except Exception:  # died before any trial ran in it
            slot.healthy = False
            idle = self._idle.get(slot.shape, [])
            if slot in idle:
                idle.remove(slot)
                if not idle:
                    del self._idle[slot.shape]
                self._destroy(slot)
            return
        if not slot.pid:
            slot.node_ip, slot.pid = info["node_ip"], info["pid"]

    def _on_started(self, ref: Any, slot: _Slot, events: List[ExecutorEvent]) -> None:
        trial_id = slot.trial_id
        try:
            info = ray.get(ref)
        except Exception as exc:  # the actor could not be created or the trainable not loaded
            self._worker_lost(slot)
            if slot.reused and slot.launch is not None and \
                    isinstance(exc, ray.exceptions.RayActorError):
                # A pooled worker died while it was idle: the trial never ran in it, so
                # this is no failure of the trial's; it starts again in a new worker.
                stop, pause = slot.stop_requested, slot.pause
                self.start_trial(slot.launch)
                if stop:
                    self._request_stop(trial_id, pause)
                return
            events.append(self._failure(trial_id, exc, "could not start"))
            return
        slot.node_ip, slot.pid, slot.up = info["node_ip"], info["pid"], True
        events.append(TrialStarted(trial_id, slot.node_ip, slot.pid))
        if "fetched" in info:  # it ended already; everything came with the reply
            self._took(info["fetched"], slot, events)
            return
        if slot.stop_requested:
            slot.actor.stop.remote(slot.pause, trial_id)
        self._refs[slot.actor.fetch.remote(self._fetch_timeout)] = ("fetch", slot)

    def _on_fetched(self, ref: Any, slot: _Slot, events: List[ExecutorEvent]) -> None:
        trial_id = slot.trial_id  # (releasing the slot forgets it)
        try:
            out = ray.get(ref)
        except Exception as exc:  # the worker process died
            self._worker_lost(slot)
            if slot.stop_requested and not slot.pause:
                events.append(TrialStopped(trial_id))
            else:
                events.append(self._failure(trial_id, exc, "died"))
            return
        self._took(out, slot, events)

    def _took(self, out: Dict[str, Any], slot: _Slot, events: List[ExecutorEvent]) -> None:
        """The events of what a worker's ``fetch`` returned."""
        trial_id = slot.trial_id
        results, state = out["results"], out["state"]
        # After a pause the trial's last results (up to its checkpoint) still count.
        if results and (not slot.stop_requested or slot.pause):
            events.append(TrialResults(trial_id, results))
        if state == "running":
            if results and slot.launch is not None and slot.launch.sync_results:
                self._refetch.append(slot)  # after the driver has decided on them
            else:
                ref = slot.actor.fetch.remote(self._fetch_timeout, not slot.stop_requested)
                self._refs[ref] = ("fetch", slot)
            return
        slot.healthy = bool(out.get("reusable", True))
        self._release(slot)
        if state == "failed":  # the user's code raised (also while saving for a pause)
            err = TrialError(out["error"], trial_id=trial_id, traceback_str=out["traceback"],
                             cause_type=out["error_type"])
            events.append(TrialFailed(trial_id, err, out["traceback"]))
            return
        ckpt = (out.get("checkpoint_path"), int(out.get("checkpoint_iteration") or 0),
                float(out.get("checkpoint_time_total") or 0.0))
        if state == "paused" or (slot.stop_requested and slot.pause):
            events.append(TrialPaused(trial_id, *ckpt))
        elif slot.stop_requested:
            events.append(TrialStopped(trial_id, *ckpt))
        else:
            events.append(TrialFinished(trial_id))

    def _worker_lost(self, slot: _Slot) -> None:
        """A worker process died, perhaps with its node: the cluster may be smaller now.

        Counting a lost node's resources would start retried trials in placement
        groups that can never be placed while pooled workers hold what is left.
        """
        slot.healthy = False
        self._release(slot)
        try:
            self.refresh_resources()
        except Exception:  # the cluster view stays as it was
            logger.debug("Could not refresh the cluster's resources", exc_info=True)

    def _failure(self, trial_id: Optional[str], exc: BaseException, what: str) -> TrialFailed:
        msg = f"The worker of trial {trial_id} {what}: {type(exc).__name__}: {exc}"
        return TrialFailed(trial_id or "", TrialError(msg, trial_id=trial_id or "",
                                                      cause_type=type(exc).__name__), msg)

    def _kill_stuck(self, events: List[ExecutorEvent]) -> None:
        now = time.monotonic()
        for trial_id, slot in list(self._slots.items()):
            if slot.stop_requested and now > slot.stop_deadline:
                logger.warning("Trial %s did not stop within %.0f s; killing its worker.",
                               trial_id, self._stop_timeout)
                for ref, (_, s) in list(self._refs.items()):
                    if s is slot:
                        del self._refs[ref]
                slot.healthy = False
                self._release(slot)
                events.append(TrialPaused(trial_id, None) if slot.pause else
                              TrialStopped(trial_id))

    def num_workers(self) -> int:
        return len(self._slots) + sum(len(v) for v in self._idle.values())

    def shutdown(self) -> None:
        for launch in self._deferred:
            self._take(launch.resources.required_resources, -1)
        self._deferred = []
        self._prestart_left = {}
        for slot in list(self._slots.values()):
            slot.healthy = False
            self._release(slot)
        kept: List[_Slot] = []
        for shape in list(self._idle):
            while self._idle.get(shape):
                slot = self._pop_idle(shape)
                if self._keep_workers_s > 0 and slot is not None and slot.healthy:
                    kept.append(slot)
                    self._take(slot.shape.required_resources, -1)
                else:
                    self._destroy(slot)
        if kept:
            _KEPT.put(kept, self._keep_workers_s)
        self._refs.clear()
