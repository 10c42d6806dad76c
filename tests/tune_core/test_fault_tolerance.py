"""Fault-tolerance acceptance tests: trials and drivers killed for real, nothing lost.

* chaos: trial worker processes are SIGKILLed at random (seeded) moments while an
  experiment runs with unlimited retries;
* checkpoint write: the driver is SIGKILLed while a trial is half-way through
  writing a checkpoint, and the experiment is restored;
* node loss: a worker node of a three-node cluster is removed while trials run on it
  (last, as it replaces the shared local Ray with its own cluster).

In every case the trainables are deterministic, so the outcome is compared with the
uninterrupted run, row by row: each ``training_iteration`` exactly once in
``result.json`` and ``progress.csv``, each row's state equal to the expected one,
and each row's ``restored_from + iterations_since_restore == training_iteration``
(a restarted trial continued from the checkpoint of the last recorded iteration).
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

import tune_core as tune
from tune_core.experiment.experiment_state import STATE_FILE, read_experiment_json

from . import _checkpoint_crash_experiment as ckpt_crash

LRS = [0.1, 0.2, 0.3, 0.4]


# --------------------------------------------------------------------------- the trainables

def next_x(x, lr, step):
    return x * (1.0 - lr) + lr * step


def expected_x(lr, iters):
    """``x`` after each step 1..iters of an uninterrupted run."""
    x, out = 1.0, []
    for step in range(1, iters + 1):
        x = next_x(x, lr, step)
        out.append(x)
    return out


def _read_state(path):
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    return state["step"], state["x"]


def counting_fn(config):
    """A function trainable that checkpoints every iteration."""
    import ray

    step, x, restored_from = 0, 1.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        step, x = _read_state(checkpoint.path)
        restored_from = step
    node_id = ray.get_runtime_context().get_node_id()
    while step < config["iters"]:
        time.sleep(config["sleep"])
        step += 1
        x = next_x(x, config["lr"], step)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step, "x": x}, f)
            tune.report({"step": step, "x": x, "restored_from": restored_from,
                         "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(d))


class CountingTrainable(tune.Trainable):
    """The same computation as a class trainable (saved by CheckpointConfig)."""

    def setup(self, config):
        self.step_n, self.x, self.restored_from = 0, 1.0, 0

    def step(self):
        time.sleep(self.config["sleep"])
        self.step_n += 1
        self.x = next_x(self.x, self.config["lr"], self.step_n)
        return {"step": self.step_n, "x": self.x, "restored_from": self.restored_from,
                "done": self.step_n >= self.config["iters"]}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"step": self.step_n, "x": self.x}, f)

    def load_checkpoint(self, checkpoint_dir):
        self.step_n, self.x = _read_state(checkpoint_dir)
        self.restored_from = self.step_n


# --------------------------------------------------------------------------- checks

def result_rows(trial_path):
    with open(os.path.join(trial_path, "result.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def progress_iterations(trial_path):
    with open(os.path.join(trial_path, "progress.csv"), newline="") as f:
        return [int(float(row["training_iteration"])) for row in csv.DictReader(f)]


def experiment_state(path):
    return read_experiment_json(path)


def failures_in_error_file(trial_path):
    path = os.path.join(trial_path, "error.txt")
    if not os.path.exists(path):
        return 0, ""
    with open(path) as f:
        text = f.read()
    return text.count("Failure # "), text


def check_experiment(results, iters):
    """Everything an uninterrupted run would have produced, and nothing twice.

    Returns the experiment state (as saved) keyed by trial directory name.
    """
    assert len(results) == len(LRS)
    assert results.num_errors == 0, results.errors
    assert sorted(r.config["lr"] for r in results) == LRS
    state = experiment_state(results.experiment_path)
    assert state["finished"]
    assert {t["status"] for t in state["trials"]} == {"TERMINATED"}, \
        [(t["trial_id"], t["status"]) for t in state["trials"]]
    for r in results:
        expected = expected_x(r.config["lr"], iters)
        assert r.metrics["training_iteration"] == iters
        assert r.metrics["step"] == iters
        assert r.metrics["x"] == expected[-1]  # exact: the same float operations
        rows = result_rows(r.path)
        assert [h["training_iteration"] for h in rows] == list(range(1, iters + 1)), r.path
        assert progress_iterations(r.path) == list(range(1, iters + 1)), r.path
        for h in rows:
            it = h["training_iteration"]
            assert h["step"] == it
            assert h["x"] == expected[it - 1], (r.path, it)
            # the run that made this row restored from `restored_from` and then took
            # `iterations_since_restore` steps: it continued the recorded history exactly
            assert h["restored_from"] + h["iterations_since_restore"] == it, (r.path, h)
        # the newest checkpoint holds the final state
        assert r.checkpoint is not None
        with r.checkpoint.as_directory() as d:
            assert _read_state(d) == (iters, expected[-1])
    return {t["dirname"]: t for t in state["trials"]}


# --------------------------------------------------------------------------- a. chaos

CHAOS_ITERS = 16
CHAOS_STEP_S = 0.1
WANTED_FAILURES = 5    # kill until this many trial failures were recorded ...
MAX_KILLS = 12         # ... but never more kills than this
KILL_P = 0.25          # chance that a result leads to a kill


def _is_ray_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(b"ray::")
    except OSError:
        return False


class WorkerKiller(tune.Callback):
    """SIGKILLs trial worker processes at random (seeded) moments.

    On a result (early enough in the trial that the worker is certainly still at
    work), with probability ``KILL_P`` it waits a random part of a step and kills the
    process that reported it, so the kill lands anywhere in the next step: in the
    user's code, while a checkpoint is copied, with results waiting in the worker's
    buffer. It stops once ``WANTED_FAILURES`` failures were recorded.
    """

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.kills = []          # (trial_id, pid, training_iteration of the result)
        self.killed_pids = set()
        self.recovered = {}      # trial_id -> failures the controller retried
        self.errored = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if sum(self.recovered.values()) >= WANTED_FAILURES or len(self.kills) >= MAX_KILLS:
            return
        if result["training_iteration"] > CHAOS_ITERS - 4 or result["pid"] in self.killed_pids:
            return
        if self.rng.random() >= KILL_P:
            return
        time.sleep(self.rng.uniform(0.0, CHAOS_STEP_S))
        pid = result["pid"]
        if not _is_ray_worker(pid):  # never anything but a Ray worker process
            return
        os.kill(pid, signal.SIGKILL)
        self.killed_pids.add(pid)
        self.kills.append((trial.trial_id, pid, result["training_iteration"]))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.recovered[trial.trial_id] = self.recovered.get(trial.trial_id, 0) + 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.errored.append(trial.trial_id)


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("trainable", [counting_fn, CountingTrainable],
                         ids=["function", "class"])
def test_trials_survive_their_workers_being_killed(tmp_path, trainable):
    killer = WorkerKiller(seed=1234)
    is_class = isinstance(trainable, type)
    results = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search(LRS), "iters": CHAOS_ITERS, "sleep": CHAOS_STEP_S},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="chaos", verbose=0, callbacks=[killer],
            failure_config=tune.FailureConfig(max_failures=-1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1 if is_class else 0)),
    ).fit()

    print(f"kills (trial, pid, iteration): {killer.kills}; failures: {killer.recovered}")
    # the faults happened, and each one was recorded as a failure of the right trial
    assert not killer.errored
    failures = sum(killer.recovered.values())
    assert failures >= WANTED_FAILURES, (killer.kills, killer.recovered)
    assert len(killer.kills) >= failures  # every failure came from one of our kills
    by_dirname = check_experiment(results, CHAOS_ITERS)
    recorded = 0
    for r in results:
        trial = by_dirname[os.path.basename(r.path)]
        in_file, text = failures_in_error_file(r.path)
        assert trial["num_failures"] == killer.recovered.get(trial["trial_id"], 0)
        assert in_file == trial["num_failures"]
        assert text.count("worker") >= in_file, text  # each says the worker died
        recorded += trial["num_failures"]
    assert recorded == failures
    # restarted trials went on from their checkpoints, not from scratch
    resumed = [h for r in results for h in result_rows(r.path) if h["restored_from"] > 0]
    assert resumed


# --------------------------------------------------------------------------- b. checkpoint write

def _session_pids(token):
    """Processes started for one driver run (all inherit its environment's token)."""
    needle = f"TUNE_CORE_TEST_RUN={token}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _wait_until_gone(token, grace_s=30.0):
    """After the driver's SIGKILL its Ray workers exit by themselves (they watch their
    raylet); wait for that, so no process of the killed run touches the files while the
    experiment is restored. Stragglers are killed by pid."""
    deadline = time.monotonic() + grace_s
    while _session_pids(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _session_pids(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _saved_checkpoints(path):
    """Trials for which the saved experiment state already names a checkpoint."""
    try:
        state = experiment_state(path)
    except (OSError, ValueError):  # not written yet
        return 0
    return sum(1 for t in state["trials"] if t.get("checkpoint"))


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("ray_local")
def test_driver_killed_while_a_checkpoint_is_half_written(tmp_path):
    storage, name = str(tmp_path / "storage"), "exp"
    path = os.path.join(storage, name)
    markers = tmp_path / "markers"
    markers.mkdir()
    token = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path),
               **{ckpt_crash.MARKER_ENV: str(markers), "TUNE_CORE_TEST_RUN": token})
    proc = subprocess.Popen([sys.executable, ckpt_crash.__file__, storage, name], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        # Once the saved state names a checkpoint, the next save stops half-way ...
        while not _saved_checkpoints(path):
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "the experiment never saved a checkpoint"
            time.sleep(0.02)
        (markers / "armed").touch()
        # ... and the driver is killed right then.
        while not [m for m in os.listdir(markers) if m != "armed"]:
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "no checkpoint write was ever reached"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its group
        proc.wait()
        proc.stderr.close()
        _wait_until_gone(token)

    # The kill came while checkpoints were half written: each such directory holds the
    # first part only, under the temporary name the engine writes to before it renames.
    interrupted = {}  # trial_id -> the step whose save was cut short
    for marker in os.listdir(markers):
        if marker != "armed":
            trial_id, step = marker.rsplit("_", 1)
            interrupted[trial_id] = int(step)
    half = [os.path.join(root, d) for root, dirs, _ in os.walk(path) for d in dirs
            if os.path.exists(os.path.join(root, d, ckpt_crash.PARTS[0]))
            and not os.path.exists(os.path.join(root, d, ckpt_crash.PARTS[1]))]
    assert len(half) >= len(interrupted) >= 1, (half, interrupted)
    # none of them under a checkpoint's final name, where a restore would take it
    assert not [d for d in half if re.fullmatch(r"checkpoint_\d+", os.path.basename(d))], half
    for trial_id, step in interrupted.items():
        mine = [d for d in half if trial_id in os.path.basename(os.path.dirname(d))]
        assert len(mine) == 1, (trial_id, half)
        with open(os.path.join(mine[0], ckpt_crash.PARTS[0])) as f:
            assert json.load(f)["step"] == step
    assert tune.Tuner.can_restore(path)

    results = tune.Tuner.restore(path, ckpt_crash.HalfSaver).fit()

    assert len(results) == len(ckpt_crash.LRS)
    assert results.num_errors == 0, results.errors  # load_checkpoint rejected nothing
    state = experiment_state(path)
    assert {t["status"] for t in state["trials"]} == {"TERMINATED"}
    assert sum(t["num_failures"] for t in state["trials"]) == 0
    resumed = 0
    iters = list(range(1, ckpt_crash.ITERS + 1))
    for r in results:
        expected = ckpt_crash.expected_x(r.config["lr"])
        assert r.metrics["x"] == expected[-1]
        rows = result_rows(r.path)
        assert [h["training_iteration"] for h in rows] == iters, r.path
        assert progress_iterations(r.path) == iters, r.path
        for h in rows:
            it = h["training_iteration"]
            assert h["step"] == it and h["x"] == expected[it - 1], (r.path, h)
            assert h["restored_from"] + h["iterations_since_restore"] == it, (r.path, h)
            if h["restored_from"]:
                resumed += 1
                # a trial whose save was cut short resumed from an older, complete one
                assert h["restored_from"] < interrupted.get(h["trial_id"], ckpt_crash.ITERS + 1)
        # every checkpoint directory it has now is complete
        for entry in os.listdir(r.path):
            full = os.path.join(r.path, entry)
            if entry.startswith("checkpoint_") and not entry.endswith(".tmp") \
                    and os.path.isdir(full):
                assert set(ckpt_crash.PARTS) <= set(os.listdir(full)), full
    assert resumed  # trials went on from the checkpoints of the killed run


# --------------------------------------------------------------------------- c. node loss

NODE_ITERS = 14
NODE_STEP_S = 0.15


@pytest.fixture
def three_node_cluster():
    """A head without CPUs and two worker nodes with 2 CPUs each, all on loopback."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 * 1024 * 1024})
    workers = [cluster.add_node(num_cpus=2, object_store_memory=80 * 1024 * 1024)
               for _ in range(2)]
    try:
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


# The cluster is not part of the callback's state (callbacks are saved with the
# experiment's configs); the test puts it here.
_NODES = {}


class NodeRemover(tune.Callback):
    """Removes the worker node of the first trial once every trial runs and has
    reported (each result with a checkpoint) at least ``after_iteration`` times."""

    def __init__(self, num_trials, after_iteration):
        self.num_trials = num_trials
        self.after = after_iteration
        self.progress = {}     # trial_id -> (iteration, node_id) of its newest result
        self.removed = None    # (node_id, {trial_id: iteration at the removal})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress[trial.trial_id] = (result["training_iteration"], result["node_id"])
        if self.removed is not None or len(self.progress) < self.num_trials:
            return
        if min(it for it, _ in self.progress.values()) < self.after:
            return
        cluster, workers = _NODES["cluster"], _NODES["workers"]
        first = min(self.progress)  # the first trial's id
        victim_id = self.progress[first][1]
        victim = next(n for n in workers if n.node_id == victim_id)
        affected = {t: it for t, (it, node) in self.progress.items() if node == victim_id}
        cluster.remove_node(victim)
        self.removed = (victim_id, affected)


@pytest.mark.timeout(180)  # a hang fails here instead of stalling the suite
def test_trials_on_a_lost_node_resume_elsewhere_from_their_checkpoints(three_node_cluster,
                                                                       tmp_path):
    cluster, workers = three_node_cluster
    _NODES.update(cluster=cluster, workers=workers)
    remover = NodeRemover(num_trials=len(LRS), after_iteration=3)
    try:
        results = tune.Tuner(
            counting_fn,
            param_space={"lr": tune.grid_search(LRS), "iters": NODE_ITERS,
                         "sleep": NODE_STEP_S},
            run_config=tune.RunConfig(
                storage_path=str(tmp_path), name="node_loss", verbose=0, callbacks=[remover],
                failure_config=tune.FailureConfig(max_failures=2)),
        ).fit()
    finally:
        _NODES.clear()

    assert remover.removed is not None, "the node was never removed"
    lost_node, affected = remover.removed
    worker_ids = {n.node_id for n in workers}
    # 4 one-CPU trials on two 2-CPU nodes: two of them ran on the lost node
    assert len(affected) == 2, remover.progress
    by_dirname = check_experiment(results, NODE_ITERS)
    for r in results:
        trial = by_dirname[os.path.basename(r.path)]
        rows = result_rows(r.path)
        assert {h["node_id"] for h in rows} <= worker_ids
        if trial["trial_id"] not in affected:
            assert trial["num_failures"] == 0
            continue
        assert trial["num_failures"] >= 1
        in_file, _ = failures_in_error_file(r.path)
        assert in_file == trial["num_failures"]
        # it ran on the lost node until at least the iteration seen at the removal,
        # then went on elsewhere from a checkpoint (not from the start)
        on_lost = [h["training_iteration"] for h in rows if h["node_id"] == lost_node]
        assert on_lost and max(on_lost) >= affected[trial["trial_id"]]
        after = [h for h in rows if h["training_iteration"] > max(on_lost)]
        assert after and all(h["node_id"] != lost_node for h in after)
        # each result came with a checkpoint, so it went on from its last recorded one
        assert after[0]["restored_from"] == max(on_lost)
        assert after[0]["iterations_since_restore"] == 1
