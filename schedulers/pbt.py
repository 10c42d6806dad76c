"""Population based training (Jaderberg et al., "Population Based Training of Neural
Networks", 2017, https://arxiv.org/abs/1711.09846) with Ray Tune's arguments, and its replay.

Every ``perturbation_interval`` (in ``time_attr`` units) a trial is ranked against the
population by the score it had at its last perturbation point. A trial in the bottom
``quantile_fraction`` *exploits* a random trial of the top quantile (it restarts from
that trial's checkpoint) and *explores* (the donor's config, mutated). The exploit is a
decision, :class:`~tune_core.schedulers.trial_scheduler.RestartTrial`, that the
controller carries out: it stops the weak trial's run and starts it again from the
donor's newest checkpoint at that moment, which it keeps from being deleted while the
trial uses it.

The policy (who copied whom, when, with which config) is kept in memory, pickled with
the scheduler, and written as JSON lines into the experiment directory once the
controller tells the scheduler where that is (:meth:`PopulationBasedTraining.set_experiment_path`).
:class:`PopulationBasedTrainingReplay` replays one trial's policy file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import numbers
import os
import random
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from tune_core.error import TuneError
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import RestartTrial, SchedulerDecision, TrialScheduler
from tune_core.search.sample import Categorical, Domain, Float, Function, Integer

from schedulers.async_hyperband import (
    _bad, _check_bool, _check_mode, _check_name, _is_real, _require_search_properties)

__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay"]

logger = logging.getLogger(__name__)

# What the scheduler believes a trial is doing (it sees no live trials).
_WAITING = "waiting"    # PENDING or PAUSED: may be started
_RUNNING = "running"
_DONE = "done"          # TERMINATED or ERROR: out of the population

Path = Tuple[str, ...]


@dataclasses.dataclass
class _TrialState:
    """What PBT knows of one trial. Plain values only: it pickles with the experiment."""

    index: int                              # creation order, to break ties
    orig_tag: str
    config: Dict[str, Any]
    status: str = _WAITING
    score: Optional[float] = None           # the metric, larger is better, at the last
                                            # perturbation point
    train_time: float = 0.0                 # time_attr at the last perturbation point
    last_perturbation_time: float = 0.0
    checkpoint: Any = None                  # the newest Checkpoint the scheduler has seen
    checkpoint_iteration: int = 0           # the training_iteration it was saved at
    reported_checkpoint: int = 0            # the iteration of the newest one a result brought
    iteration: int = 0                      # the trial's latest training_iteration
    restarted: Optional[Dict[str, Any]] = None  # the policy record of an exploit not yet resumed
    last_start: int = 0                     # when it was last chosen to run (a counter)


# --- small helpers --------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Nested mappings as plain dicts (configs arrive as read-only mapping proxies)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _get(config: Mapping[str, Any], path: Path) -> Any:
    for key in path:
        config = config[key]
    return config


def _has(config: Any, path: Path) -> bool:
    for key in path:
        if not isinstance(config, Mapping) or key not in config:
            return False
        config = config[key]
    return True


def _set(config: Dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config.setdefault(key, {})
    config[path[-1]] = value


def _path_str(path: Path) -> str:
    return "".join(f"[{k!r}]" for k in path)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return _is_real(value) and math.isfinite(float(value))


def _quantile_size(n: int, fraction: float) -> int:
    """ceil(n * fraction), at most n // 2 (rounded first: 0.35 * 20 is 7.000000000000001)."""
    return min(int(math.ceil(round(n * fraction, 9))), n // 2)


class PopulationBasedTraining(TrialScheduler):
    """Population based training: weak trials copy strong ones and mutate their config.

    At each perturbation point of a trial (its ``time_attr`` is at least
    ``burn_in_period`` and at least ``perturbation_interval`` past its previous
    perturbation point), its metric is recorded as its score and the population (the
    trials that are not finished and have a score) is ranked. The bottom
    ``ceil(n * quantile_fraction)`` (at most ``n // 2``) are the lower quantile, as many
    from the top the upper quantile. A trial in the lower quantile restarts (the
    decision ``RestartTrial``) from the newest checkpoint of a random upper-quantile
    trial that has one (and takes on that trial's time of last perturbation), with that
    trial's config explored:

    * each key of ``hyperparam_mutations`` is resampled with ``resample_probability``;
    * otherwise a number (a ``tune.uniform``/``loguniform``/``randint``/... domain, or a
      function of no arguments that samples one) is multiplied by a random one of
      ``perturbation_factors``, then rounded to the domain's ``q`` (integers to whole
      numbers, moving at least one step) and clipped into the domain's bounds;
    * a list or ``tune.choice`` moves to a neighbouring entry (left or right, staying
      put at either end); a value not in it is resampled;
    * then ``custom_explore_fn(config)`` may change the config further.

    With ``synch=True`` the population perturbs together: a trial that reaches the
    next synchronisation point (every ``perturbation_interval``, the first at
    ``max(perturbation_interval, burn_in_period)``) pauses until every unfinished trial
    has reached it; then all are ranked at once and the weak ones exploit. The trial
    whose result completes the round decides at once and continues; a paused weak trial
    is restarted from its donor's checkpoint when it is resumed (its donor is not
    resumed before that, so that it donates the checkpoint of the round).

    With ``synch=False`` (the default) a trial at its perturbation point pauses if
    other trials are waiting for resources, so a population larger than the cluster
    shares it; the waiting trial that trained least runs next.

    Differences from Ray Tune, where its documentation is silent or its behaviour is a
    trap:

    * A trial is only a donor when it has a checkpoint: the donor is drawn from the
      upper-quantile trials that have one (Ray Tune draws first and then skips the
      exploit). PBT does not make trials save: report checkpoints with
      ``tune.report(metrics, checkpoint=...)`` (or use ``CheckpointConfig``'s
      ``checkpoint_frequency`` for class trainables) at least every perturbation interval.
    * Perturbed values stay inside their domain's bounds and on its ``q`` grid
      (Ray Tune multiplies past them); pass ``clip_to_bounds=False`` to let multiplied
      values leave the bounds. ``tune.choice`` is perturbed like a list (Ray Tune
      multiplies its values). ``sample_from`` domains are rejected (as Ray Tune's
      documentation asks): use a function of no arguments.
    * A NaN metric ranks last.
    * The policy is kept in memory and in JSON lines (see ``log_config``).

    A trap shared with Ray Tune: a function trainable that simply returns after its last
    report is still RUNNING when that report is ranked, so it may donate its final
    checkpoint; the trial restarted from it has nothing left to train and ends at once,
    keeping the metrics it had before the exploit. Report ``done=True`` with the last
    result (``tune.report({..., "done": i == last})``) or stop trials with
    ``RunConfig(stop={"training_iteration": N})``: a trial that is done is never a donor.

    Args:
        time_attr: The result field that measures progress (monotonically increasing).
        metric: The metric to optimise; None takes TuneConfig's.
        mode: ``"min"`` or ``"max"``; None takes TuneConfig's.
        perturbation_interval: Time (in ``time_attr`` units, > 0) between two
            perturbation points of a trial.
        burn_in_period: No perturbation before this time (>= 0).
        hyperparam_mutations: Config keys to mutate, each a list of values, a
            ``tune.choice``, a numeric domain (``tune.uniform``, ``tune.loguniform``,
            ``tune.randint``, ...), a function of no arguments returning a sample, or a
            nested dict of those for nested config keys. A key the trial's config lacks
            is sampled from it when the trial is created (:meth:`complete_config`).
        quantile_fraction: The share of the population in each of the bottom and top
            quantiles, in [0, 0.5]; 0 turns exploitation off.
        resample_probability: The probability of resampling a value instead of
            perturbing it, in [0, 1].
        perturbation_factors: The factors a number may be multiplied by (numbers > 0).
        custom_explore_fn: ``f(config) -> config``, applied after the built-in
            mutations. At least one of it and ``hyperparam_mutations`` is needed.
        log_config: Write the policy into the experiment directory:
            ``pbt_global.txt`` (every exploit, one JSON object a line) and
            ``pbt_policy_<trial_id>.txt`` (the exploits that led to the trial's current
            state, its ancestors' first; :class:`PopulationBasedTrainingReplay` reads it).
        require_attrs: A result without ``time_attr`` or ``metric`` is an error;
            with False such results are skipped.
        synch: Perturb the whole population together (see above).
        clip_to_bounds: Keep multiplied values inside their domain's bounds.
        seed: Seeds the scheduler's random choices (donors, mutations).

    Example::

        pbt = PopulationBasedTraining(
            time_attr="training_iteration", metric="loss", mode="min",
            perturbation_interval=5,
            hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1),
                                  "batch_size": [16, 32, 64, 128]})
    """

    #: It pauses trials to share the cluster (and synch mode pauses them at every round).
    pauses_trials = True
    _LOG_PREFIX = "pbt"

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Optional[Dict[str, Any]] = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Tuple[float, ...] = (1.2, 0.8),
        custom_explore_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        clip_to_bounds: bool = True,
        seed: Optional[int] = None,
    ) -> None:
        owner = type(self).__name__
        self._time_attr = _check_name(owner, "time_attr", time_attr)
        self.metric = _check_name(owner, "metric", metric, allow_none=True)
        self.mode = _check_mode(owner, mode)
        if not _is_number(perturbation_interval) or perturbation_interval <= 0:
            raise _bad(owner, "perturbation_interval", perturbation_interval,
                       "use a number > 0 (in time_attr units)")
        if not _is_number(burn_in_period) or burn_in_period < 0:
            raise _bad(owner, "burn_in_period", burn_in_period, "use a number >= 0")
        if not _is_number(quantile_fraction) or not 0 <= quantile_fraction <= 0.5:
            raise _bad(owner, "quantile_fraction", quantile_fraction,
                       "use a number in [0, 0.5] (the share of trials in each of the bottom "
                       "and top quantiles; 0 turns exploitation off)")
        if not _is_number(resample_probability) or not 0 <= resample_probability <= 1:
            raise _bad(owner, "resample_probability", resample_probability,
                       "use a probability in [0, 1]")
        if isinstance(perturbation_factors, (str, bytes)) or not isinstance(
                perturbation_factors, Sequence) or not perturbation_factors or not all(
                _is_number(f) and f > 0 for f in perturbation_factors):
            raise _bad(owner, "perturbation_factors", perturbation_factors,
                       "use a non-empty tuple of numbers > 0, such as (1.2, 0.8)")
        if custom_explore_fn is not None and not callable(custom_explore_fn):
            raise _bad(owner, "custom_explore_fn", custom_explore_fn,
                       "use a function f(config) -> config, or None")
        self._log_config = _check_bool(owner, "log_config", log_config)
        self._require_attrs = _check_bool(owner, "require_attrs", require_attrs)
        self._synch = _check_bool(owner, "synch", synch)
        self._clip = _check_bool(owner, "clip_to_bounds", clip_to_bounds)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise _bad(owner, "seed", seed, "use an integer or None")
        self._mutations = self._check_mutations(hyperparam_mutations, custom_explore_fn)
        self._perturbation_interval = float(perturbation_interval)
        self._burn_in_period = float(burn_in_period)
        self._quantile_fraction = float(quantile_fraction)
        self._resample_probability = float(resample_probability)
        self._perturbation_factors = tuple(perturbation_factors)
        self._custom_explore_fn = custom_explore_fn
        self._rng = random.Random(seed)

        self._trials: Dict[str, _TrialState] = {}
        self._next_sync = max(self._perturbation_interval, self._burn_in_period)
        self._starts = 0
        # synch: weak trials paused at the round, trial_id -> (donor_id, config, tag, record)
        self._pending_exploits: Dict[str, Tuple[str, Dict[str, Any], str, Dict[str, Any]]] = {}
        self._policy: List[Dict[str, Any]] = []            # every exploit, in order
        self._lineage: Dict[str, List[Dict[str, Any]]] = {}  # trial_id -> its exploits
        self._experiment_path: Optional[str] = None
        self._unwritten: List[str] = []  # trials whose newest exploit is not in the files yet
        self.num_checkpoints_used = 0
        self.num_perturbations = 0

    # --- validation -------------------------------------------------------------------------------
    def _check_mutations(self, spec: Any, custom_explore_fn: Any) -> List[Tuple[Path, Any]]:
        owner = type(self).__name__
        if spec is None or (isinstance(spec, Mapping) and not spec):
            if custom_explore_fn is None:
                raise _bad(owner, "hyperparam_mutations", spec,
                           "give the config keys to mutate, e.g. {\"lr\": tune.loguniform(1e-4, "
                           "1e-1), \"batch_size\": [32, 64, 128]}, or a custom_explore_fn")
            return []
        if not isinstance(spec, Mapping):
            raise _bad(owner, "hyperparam_mutations", spec,
                       "use a dict of config key to a list, a search-space domain, a function "
                       "of no arguments or a nested dict of those")
        leaves = []
        for path, value in self._walk(spec, ()):
            where = f"hyperparam_mutations{_path_str(path)}"
            accepted = ("use a non-empty list of values, tune.choice, a numeric domain such as "
                        "tune.uniform or tune.randint, a function of no arguments, or a nested "
                        "dict of those")
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ValueError(f"{owner}({where}=[]) is not valid: {accepted}")
            elif isinstance(value, Function):
                raise ValueError(f"{owner}({where}={value!r}) is not valid: sample_from is not "
                                 "supported in hyperparam_mutations; use a function of no "
                                 "arguments (lambda: ...) or a domain")
            elif isinstance(value, (Float, Integer, Categorical)):
                if value.problem:
                    raise ValueError(f"{owner}({where}={value!r}) is not valid: {value.problem}")
            elif isinstance(value, Domain) or not callable(value):
                raise ValueError(f"{owner}({where}={value!r}) is not valid: {accepted}")
            leaves.append((path, value))
        return leaves

    def _walk(self, spec: Mapping[str, Any], prefix: Path) -> List[Tuple[Path, Any]]:
        owner = type(self).__name__
        out: List[Tuple[Path, Any]] = []
        for key, value in spec.items():
            path = prefix + (key,)
            if not isinstance(key, str):
                raise ValueError(f"{owner}(hyperparam_mutations) is not valid: keys must be "
                                 f"config key strings, got {key!r}")
            if isinstance(value, Mapping):
                if "grid_search" in value:
                    raise ValueError(f"{owner}(hyperparam_mutations{_path_str(path)}={value!r}) "
                                     "is not valid: grid_search is no mutation; use a list")
                if not value:
                    raise ValueError(f"{owner}(hyperparam_mutations{_path_str(path)}={{}}) is "
                                     "not valid: a nested dict needs at least one key")
                out += self._walk(value, path)
            else:
                out.append((path, value))
        return out

    # --- hooks ------------------------------------------------------------------------------------
    def complete_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """The config a new trial starts with: keys of ``hyperparam_mutations`` that the
        search space lacks are sampled from their mutation (Ray Tune's behaviour).

        Called by the controller before :meth:`on_trial_add` (see the engine hook).
        """
        config = _plain(config)
        for path, mutation in self._mutations:
            if not _has(config, path):
                _set(config, path, self._sample(mutation))
        return config

    def set_experiment_path(self, path: Optional[str]) -> None:
        """Where the policy files go (the driver's experiment directory).

        Called by the controller when an experiment starts or is restored; the files are
        then rewritten from the policy this scheduler holds, so that after
        ``Tuner.restore`` they hold exactly the exploits the restored run knows.
        """
        self._experiment_path = path or None
        if self._experiment_path and self._log_config:
            self._rewrite_policy_files()

    def on_trial_add(self, trial: TrialSnapshot) -> None:
        _require_search_properties(self)
        missing = [p for p, _ in self._mutations if not _has(trial.config, p)]
        if missing:
            owner = type(self).__name__
            names = ", ".join(_path_str(p) for p in missing)
            raise ValueError(
                f"{owner}(hyperparam_mutations=...): the config of trial {trial.trial_id} has "
                f"no {names}. Put these keys in the Tuner's param_space (for example the "
                "same domain as in hyperparam_mutations), so that each trial starts with a "
                "value.")
        self._state_of(trial)

    def on_trial_result(self, trial: TrialSnapshot,
                        result: Dict[str, Any]) -> "SchedulerDecision | RestartTrial":
        st = self._state_of(trial)
        st.status = _RUNNING
        iteration = result.get("training_iteration")
        if _is_real(iteration):
            st.iteration = int(iteration)
            if result.get("checkpoint_dir_name"):
                # The controller keeps it after this call: the trial's newest from then on.
                st.reported_checkpoint = int(iteration)
        if st.restarted is not None and _is_real(iteration):
            # The first result after an exploit: it counts on from the checkpoint the
            # controller gave it, which the policy records exactly now.
            st.restarted["donor_iteration"] = st.checkpoint_iteration = int(iteration) - 1
            st.checkpoint = trial.checkpoint
            st.restarted = None
            self._write_policy(trial.trial_id)
        else:
            self._note_checkpoint(st, trial)
        if trial.trial_id in self._pending_exploits:
            # synch: decided at the round while the trial was paused (the controller did
            # not apply it when resuming the trial); its first result applies it.
            return self._apply_pending(trial.trial_id)

        time = self._read(trial.trial_id, result, "time_attr", self._time_attr)
        value = self._read(trial.trial_id, result, "metric", self.metric)
        if time is None or value is None:
            return SchedulerDecision.CONTINUE
        if self._synch:
            return self._on_synch_result(trial.trial_id, st, time, value)
        if time < self._burn_in_period or \
                time - st.last_perturbation_time < self._perturbation_interval:
            return SchedulerDecision.CONTINUE
        self._perturbation_point(trial.trial_id, st, time, value)
        st.last_perturbation_time = time
        lower, upper = self._quantiles()
        if trial.trial_id in lower:
            decision = self._exploit(trial.trial_id, upper)
            if decision is not None:
                return decision
        if any(o.status == _WAITING for tid, o in self._trials.items() if tid != trial.trial_id):
            st.status = _WAITING
            return SchedulerDecision.PAUSE  # share the cluster with the waiting trials
        return SchedulerDecision.CONTINUE

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        self._finish(trial.trial_id)

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        self._finish(trial.trial_id)

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        self._finish(trial.trial_id)

    def on_trial_resume(self, trial: TrialSnapshot) -> Optional[RestartTrial]:
        """A restart to apply before a PAUSED trial starts again, or None.

        In synch mode a weak trial is paused when its round decides that it exploits a
        donor: when the controller calls this hook before resuming it, it starts from
        the donor's checkpoint at once (see the engine hook). Otherwise the decision is
        returned with the trial's first result after the resume.
        """
        if trial.trial_id not in self._pending_exploits:
            return None
        return self._apply_pending(trial.trial_id)

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        """The waiting trial that trained least (by ``time_attr`` at its last perturbation
        point; new trials have trained nothing); on a tie the one that waited longest, so
        a trial that just copied a paused donor does not run again before the donor
        (Ray Tune takes the first created, which can copy the same donor forever). In
        synch mode only trials short of the round: weak trials that will exploit first,
        their donors held back until the exploits are applied."""
        for c in candidates:
            st = self._state_of(c)
            st.status = _WAITING
            self._note_checkpoint(st, c)
        if self._synch:
            self._maybe_synchronise(None)
        pool = []
        donors = {donor for donor, _, _, _ in self._pending_exploits.values()}
        for c in candidates:
            st = self._trials[c.trial_id]
            if self._synch and st.train_time >= self._next_sync:
                continue  # waits for the others at this round
            if c.trial_id in donors and c.trial_id not in self._pending_exploits:
                continue  # donates this round's checkpoint: runs on once it was taken
            first = 0 if c.trial_id in self._pending_exploits else 1
            pool.append((first, st.train_time, st.last_start, st.index, c.trial_id))
        if not pool:
            return None
        chosen = min(pool)[-1]
        self._starts += 1
        self._trials[chosen].status = _RUNNING
        self._trials[chosen].last_start = self._starts
        return chosen

    def debug_string(self) -> str:
        mode = "synch" if self._synch else "asynch"
        return (f"PopulationBasedTraining ({mode}): {self.num_perturbations} perturbs, "
                f"{len(self._trials)} trials")

    # --- the policy -------------------------------------------------------------------------------
    def global_policy(self) -> List[Dict[str, Any]]:
        """Every exploit so far, in order (what ``pbt_global.txt`` holds)."""
        return copy.deepcopy(self._policy)

    def trial_policy(self, trial_id: str) -> List[Dict[str, Any]]:
        """The exploits that made ``trial_id`` what it is, its ancestors' first (what
        ``pbt_policy_<trial_id>.txt`` holds and ``PopulationBasedTrainingReplay`` replays)."""
        return copy.deepcopy(self._lineage.get(trial_id, []))

    def _policy_file(self, trial_id: str) -> str:
        return os.path.join(str(self._experiment_path),
                            f"{self._LOG_PREFIX}_policy_{trial_id}.txt")

    def _global_file(self) -> str:
        return os.path.join(str(self._experiment_path), f"{self._LOG_PREFIX}_global.txt")

    def _write_policy(self, trial_id: str) -> None:
        """Append the trial's newest exploit to the global file; rewrite its own file."""
        if trial_id in self._unwritten:
            self._unwritten.remove(trial_id)
        if not (self._log_config and self._experiment_path):
            return
        records = self._lineage.get(trial_id, [])
        if not records:
            return
        try:
            os.makedirs(self._experiment_path, exist_ok=True)
            with open(self._global_file(), "a") as f:
                f.write(_json_line(records[-1]))
            _write_lines(self._policy_file(trial_id), records)
        except OSError as exc:
            logger.warning("%s could not write its policy log: %s", type(self).__name__, exc)

    def _rewrite_policy_files(self) -> None:
        """The files as this scheduler knows the policy (exploits whose trial has not
        reported since are left out until it does)."""
        pending = [self._lineage[t][-1] for t in self._unwritten]
        try:
            os.makedirs(str(self._experiment_path), exist_ok=True)
            _write_lines(self._global_file(),
                         [r for r in self._policy if not any(r is p for p in pending)])
            for trial_id in self._trials:
                records = self._lineage.get(trial_id, [])
                if trial_id in self._unwritten:
                    records = records[:-1]
                if records:
                    _write_lines(self._policy_file(trial_id), records)
                elif os.path.exists(self._policy_file(trial_id)):
                    os.remove(self._policy_file(trial_id))  # from a run this one forgot
        except OSError as exc:
            logger.warning("%s could not write its policy log: %s", type(self).__name__, exc)

    # --- exploit and explore ----------------------------------------------------------------------
    def _quantiles(self) -> Tuple[List[str], List[str]]:
        """(lower, upper): ids of the bottom and top trials by score, or ([], [])."""
        scored = [(st.score, st.index, tid) for tid, st in self._trials.items()
                  if st.score is not None and st.status != _DONE]
        scored.sort()
        k = _quantile_size(len(scored), self._quantile_fraction)
        if k == 0:
            return [], []
        ids = [tid for _, _, tid in scored]
        return ids[:k], ids[-k:]

    def _pick_donor(self, upper: Sequence[str]) -> Optional[str]:
        donors = [tid for tid in upper if self._trials[tid].checkpoint is not None]
        return self._rng.choice(donors) if donors else None

    def _exploit(self, trial_id: str, upper: Sequence[str]) -> Optional[RestartTrial]:
        """The decision for a weak trial at its perturbation point (None: no donor)."""
        plan = self._plan_exploit(trial_id, upper)
        if plan is None:
            return None
        donor_id, config, tag, record = plan
        return self._restart(trial_id, donor_id, config, tag, record)

    def _plan_exploit(self, trial_id: str, upper: Sequence[str],
                      ) -> Optional[Tuple[str, Dict[str, Any], str, Dict[str, Any]]]:
        donor_id = self._pick_donor(upper)
        if donor_id is None:
            return None
        st, donor = self._trials[trial_id], self._trials[donor_id]
        config, operations = self._new_config(trial_id, donor_id)
        tag = self._make_tag(st.orig_tag, donor.config, config)
        record = {
            "trial_id": trial_id, "donor_id": donor_id,
            "trial_tag": st.orig_tag, "donor_tag": donor.orig_tag,
            "trial_iteration": st.iteration,
            # The iteration the trial counts on from; set exactly by its next result.
            "donor_iteration": _newest_iteration(donor),
            "donor_config": copy.deepcopy(donor.config), "new_config": copy.deepcopy(config),
            "operations": operations,
        }
        return donor_id, config, tag, record

    def _restart(self, trial_id: str, donor_id: str, config: Dict[str, Any], tag: str,
                 record: Dict[str, Any]) -> RestartTrial:
        st, donor = self._trials[trial_id], self._trials[donor_id]
        record["donor_iteration"] = _newest_iteration(donor)
        self._policy.append(record)
        self._lineage[trial_id] = list(self._lineage.get(donor_id, [])) + [record]
        if trial_id not in self._unwritten:
            self._unwritten.append(trial_id)
        st.restarted = record
        # It goes on from the donor's state: the donor's clock and checkpoint.
        st.config = copy.deepcopy(config)
        st.last_perturbation_time = donor.last_perturbation_time
        st.train_time = donor.train_time
        st.checkpoint = donor.checkpoint
        st.checkpoint_iteration = st.reported_checkpoint = _newest_iteration(donor)
        st.status = _WAITING
        self._on_exploit(trial_id, donor_id, config)
        self.num_perturbations += 1
        self.num_checkpoints_used += 1
        logger.info("[exploit] trial %s (score %s) restarts from trial %s (score %s) with %s",
                    trial_id, st.score, donor_id, donor.score, record["operations"])
        return RestartTrial(checkpoint=donor.checkpoint, config=config,
                            donor_trial_id=donor_id, experiment_tag=tag)

    def _new_config(self, trial_id: str, donor_id: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """The explored config for ``trial_id``, from the donor's (PB2 overrides this)."""
        config = copy.deepcopy(self._trials[donor_id].config)
        operations: Dict[str, str] = {}
        for path, mutation in self._mutations:
            value, operation = self._mutate(_get(config, path) if _has(config, path) else None,
                                            mutation, _has(config, path))
            _set(config, path, value)
            operations["/".join(path)] = operation
        return self._custom_explore(config), operations

    def _custom_explore(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """``custom_explore_fn`` applied to an explored config, if there is one."""
        if self._custom_explore_fn is None:
            return config
        explored = self._custom_explore_fn(config)
        if not isinstance(explored, Mapping):
            raise TuneError(f"{type(self).__name__}(custom_explore_fn=...) returned "
                            f"{explored!r}; it must return the new config dict")
        return _plain(explored)

    def _mutate(self, value: Any, mutation: Any, present: bool) -> Tuple[Any, str]:
        rng = self._rng
        if isinstance(mutation, (list, tuple, Categorical)):
            values = list(mutation.categories if isinstance(mutation, Categorical) else mutation)
            index = next((i for i, v in enumerate(values) if present and _same(v, value)), None)
            if index is None or rng.random() < self._resample_probability:
                return values[rng.randrange(len(values))], "resample"
            shift = rng.choice((-1, 1))
            new = min(max(index + shift, 0), len(values) - 1)
            side = "left" if shift < 0 else "right"
            return values[new], f"shift {side}" + (" (noop)" if new == index else "")
        if not present or not _is_number(value) or rng.random() < self._resample_probability:
            return self._sample(mutation), "resample"
        factor = rng.choice(self._perturbation_factors)
        return self._perturb(value, factor, mutation), f"* {factor}"

    def _perturb(self, value: Any, factor: float, mutation: Any) -> Any:
        """``value * factor`` on the domain's grid and, with clip_to_bounds, in its bounds."""
        integer = isinstance(mutation, Integer) or (
            isinstance(value, numbers.Integral) and not isinstance(value, bool))
        q = getattr(mutation, "q", None) or (1 if integer else None)
        new = value * factor
        if q is not None:
            new = round(new / q) * q
            if integer:
                new = int(new)
                if new == value and factor != 1:  # small integers move by a step at least
                    new = value + (q if factor > 1 else -q)
            else:
                new = _round_to_grid(new, q)
        if self._clip:
            low, high = _bounds(mutation)
            if low is not None:
                new = min(max(new, low), high)
        return new

    def _sample(self, mutation: Any) -> Any:
        if isinstance(mutation, (list, tuple)):
            return mutation[self._rng.randrange(len(mutation))]
        if isinstance(mutation, Domain):
            return mutation.sample(self._rng)
        return mutation()

    def _make_tag(self, orig_tag: str, old: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        """``<original tag>@perturbed[lr=0.012,batch_size=64]``: the mutated keys (with
        only a custom_explore_fn, the top-level keys it changed)."""
        paths = [p for p, _ in self._mutations] or [
            (k,) for k in config if k not in old or not _same(old[k], config[k])]
        parts = ",".join(f"{'/'.join(p)}={_format_value(_get(config, p))}" for p in paths
                         if _has(config, p) and not isinstance(_get(config, p), Mapping))
        return f"{orig_tag}@perturbed[{parts}]"

    # --- hooks for PB2 ----------------------------------------------------------------------------
    def _perturbation_point(self, trial_id: str, st: _TrialState, time: float,
                            value: float) -> None:
        """Record the trial's score at a perturbation point."""
        score = value if self.mode == "max" else -value
        st.score = -math.inf if math.isnan(score) else score
        st.train_time = time

    def _on_exploit(self, trial_id: str, donor_id: str, config: Dict[str, Any]) -> None:
        """Called when ``trial_id`` takes ``donor_id``'s checkpoint with ``config``."""

    # --- synch mode -------------------------------------------------------------------------------
    def _on_synch_result(self, trial_id: str, st: _TrialState, time: float,
                         value: float) -> "SchedulerDecision | RestartTrial":
        if time < self._next_sync:
            return SchedulerDecision.CONTINUE
        self._perturbation_point(trial_id, st, time, value)
        decision = self._maybe_synchronise(trial_id)
        if decision is not None:
            return decision
        if st.train_time >= self._next_sync:
            st.status = _WAITING
            return SchedulerDecision.PAUSE  # waits for the others at this round
        return SchedulerDecision.CONTINUE  # completed the round: trains on to the next

    def _maybe_synchronise(self, current: Optional[str]) -> Optional[RestartTrial]:
        """When every unfinished trial reached the round: rank, decide the exploits,
        start the next round. Returns the decision for ``current`` (the trial whose
        result completed the round), if it exploits."""
        live = {tid: st for tid, st in self._trials.items() if st.status != _DONE}
        if not live or any(st.train_time < self._next_sync for st in live.values()):
            return None
        lower, upper = self._quantiles()
        decision = None
        for tid in lower:
            plan = self._plan_exploit(tid, upper)
            if plan is None:
                continue
            if tid == current:
                decision = self._restart(tid, *plan)
            else:
                self._pending_exploits[tid] = plan
        for st in live.values():
            st.last_perturbation_time = st.train_time
        self._next_sync = max(self._next_sync + self._perturbation_interval,
                              max(st.train_time for st in live.values()))
        return decision

    def _apply_pending(self, trial_id: str) -> RestartTrial:
        donor_id, config, tag, record = self._pending_exploits.pop(trial_id)
        return self._restart(trial_id, donor_id, config, tag, record)

    # --- bookkeeping ------------------------------------------------------------------------------
    def _state_of(self, trial: TrialSnapshot) -> _TrialState:
        st = self._trials.get(trial.trial_id)
        if st is None:
            st = _TrialState(index=len(self._trials), orig_tag=trial.experiment_tag,
                             config=_plain(trial.config))
            self._trials[trial.trial_id] = st
        else:
            st.config = _plain(trial.config)
        return st

    def _note_checkpoint(self, st: _TrialState, trial: TrialSnapshot) -> None:
        """Take the trial's newest checkpoint from its snapshot.

        A new one came with the trial's newest result, or was saved as it paused (at
        its newest result): either way at ``last_result``'s iteration. While a restart
        waits for its first result, the checkpoint is the donor's (its iteration is
        known with that result).
        """
        checkpoint = trial.checkpoint
        if checkpoint is None or checkpoint == st.checkpoint:
            return
        st.checkpoint = checkpoint
        if st.restarted is None:
            st.checkpoint_iteration = int(trial.last_result.get("training_iteration") or 0)

    def _finish(self, trial_id: str) -> None:
        st = self._trials.get(trial_id)
        if st is not None:
            st.status = _DONE
        plan = self._pending_exploits.pop(trial_id, None)
        if plan is not None:
            logger.debug("trial %s ended before its exploit of %s", trial_id, plan[0])
        if trial_id in self._unwritten:
            self._write_policy(trial_id)
        if self._synch:
            self._maybe_synchronise(None)

    def _read(self, trial_id: str, result: Mapping[str, Any], arg: str,
              key: Optional[str]) -> Optional[float]:
        owner = type(self).__name__
        assert key is not None
        value = result.get(key)
        if value is None:
            if self._require_attrs:
                fields = sorted(k for k in result if k != "config")
                raise TuneError(
                    f"{owner}({arg}={key!r}): a result of trial {trial_id} has no {key!r}; it "
                    f"reported {fields}. Report {key!r} in every result, set {arg} to one of "
                    f"the reported fields, or pass {owner}(require_attrs=False) to skip such "
                    "results.")
            return None
        if not _is_real(value):
            raise TuneError(f"{owner}({arg}={key!r}): trial {trial_id} reported "
                            f"{key}={value!r}, which is not a number")
        return float(value)


def _newest_iteration(st: _TrialState) -> int:
    """The iteration of the trial's newest checkpoint, as far as the scheduler knows."""
    return max(st.checkpoint_iteration, st.reported_checkpoint)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays: no single truth value
        return a is b


def _round_to_grid(value: float, q: float) -> float:
    digits = max(0, -int(math.floor(math.log10(q)))) + 6 if q < 1 else 9
    return round(value, digits)


def _bounds(mutation: Any) -> Tuple[Optional[float], Optional[float]]:
    """The smallest and largest value a numeric domain can take, or (None, None)."""
    if isinstance(mutation, Integer):
        q = mutation.q or 1
        lo, hi = Integer._index_range(mutation.lower, mutation.upper, q)
        return lo * q, (hi - 1) * q
    if isinstance(mutation, Float) and mutation.kind != "normal":
        if mutation.q is None:
            return mutation.lower, mutation.upper
        q = mutation.q
        return (_round_to_grid(math.ceil(mutation.lower / q - 1e-9) * q, q),
                _round_to_grid(math.floor(mutation.upper / q + 1e-9) * q, q))
    return None, None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        try:
            return value.item()
        except Exception:
            pass
    return repr(value)


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, default=_json_default, sort_keys=True) + "\n"


def _write_lines(path: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Write JSON lines atomically (a reader sees the old file or the new one)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(_json_line(r) for r in records)
    os.replace(tmp, path)


# --- replay ---------------------------------------------------------------------------------------
def load_policy(policy_file: str) -> Tuple[Dict[str, Any], List[Tuple[int, Dict[str, Any]]]]:
    """Read a trial's policy file: (the initial config, [(iteration, new config), ...]).

    Reads this package's JSON objects and Ray Tune's lists (``[trial_tag, donor_tag,
    trial_iteration, donor_iteration, donor_config, new_config]``). The file holds the
    trial's own exploits after its ancestors' (each copied from its donor's file); the
    chain is followed back from the last line while each line is the donor's: that is
    the history that made the trial. Its first donor's config is the initial config; at
    each line's donor iteration the config changes to its new config.
    """
    rows = []
    with open(policy_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"PopulationBasedTrainingReplay(policy_file={policy_file!r}): "
                                 f"line {number} is not JSON") from None
            if isinstance(row, list) and len(row) == 6:
                row = {"trial_tag": row[0], "donor_tag": row[1], "trial_iteration": row[2],
                       "donor_iteration": row[3], "donor_config": row[4], "new_config": row[5]}
            if not isinstance(row, dict) or not {"donor_iteration", "donor_config",
                                                 "new_config"} <= set(row):
                raise ValueError(f"PopulationBasedTrainingReplay(policy_file={policy_file!r}): "
                                 f"line {number} is not a PBT policy record")
            rows.append(row)
    if not rows:
        raise ValueError(f"PopulationBasedTrainingReplay(policy_file={policy_file!r}) holds no "
                         "policy: the trial never exploited another one")
    chain = [rows[-1]]
    for row in reversed(rows[:-1]):
        head = chain[-1]
        key = "trial_id" if "trial_id" in row and "donor_id" in head else "trial_tag"
        donor_key = "donor_id" if key == "trial_id" else "donor_tag"
        if row.get(key) != head.get(donor_key):
            break  # older lines belong to a history that a later exploit replaced
        chain.append(row)
    chain.reverse()
    changes = [(int(r["donor_iteration"]), dict(r["new_config"])) for r in chain]
    return dict(chain[0]["donor_config"]), changes


class PopulationBasedTrainingReplay(TrialScheduler):
    """Replays the hyperparameter schedule PBT found for one trial.

    The trial starts with the policy's initial config and, when its
    ``training_iteration`` reaches an iteration where the recorded trial went on from a
    donor's checkpoint, restarts from its own newest checkpoint with the recorded new
    config. The trial must report checkpoints at those iterations.

    Use it with one trial (``num_samples=1``). Keys of the Tuner's ``param_space``
    that the policy does not set are kept.

    Args:
        policy_file: A ``pbt_policy_<trial_id>.txt`` written by
            :class:`PopulationBasedTraining` (or Ray Tune's).

    Example::

        replay = PopulationBasedTrainingReplay("~/tune_results/exp/pbt_policy_ab12c_00003.txt")
        tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=replay)).fit()
    """

    pauses_trials = False

    def __init__(self, policy_file: str) -> None:
        owner = type(self).__name__
        if not isinstance(policy_file, (str, os.PathLike)):
            raise _bad(owner, "policy_file", policy_file, "use the path of a policy file")
        path = os.path.expanduser(os.fspath(policy_file))
        if not os.path.isfile(path):
            raise _bad(owner, "policy_file", policy_file,
                       "no such file; use a pbt_policy_<trial_id>.txt of a PBT experiment")
        self.policy_file = path
        self.config, self._changes = load_policy(path)
        self.experiment_tag = f"replay_{os.path.basename(path)}"
        self._trial_id: Optional[str] = None
        self._next = 0
        self._current = dict(self.config)
        self.num_perturbations = 0

    def complete_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """The trial starts with the policy's initial config (keys it lacks are kept)."""
        return {**_plain(config), **copy.deepcopy(self.config)}

    def on_trial_add(self, trial: TrialSnapshot) -> None:
        owner = type(self).__name__
        if self._trial_id is not None and self._trial_id != trial.trial_id:
            raise ValueError(f"{owner} replays one trial, but a second one was added "
                             f"({trial.trial_id}); set TuneConfig(num_samples=1) and no grid "
                             "search")
        self._trial_id = trial.trial_id
        wrong = sorted(k for k, v in self.config.items()
                       if k not in trial.config or not _same(trial.config[k], v))
        if wrong:
            raise ValueError(
                f"{owner}(policy_file={self.policy_file!r}): the trial's config differs from "
                f"the policy's initial config in {wrong}. Start it with that config: "
                f"param_space={self.config!r}")
        self._current = _plain(trial.config)

    def on_trial_result(self, trial: TrialSnapshot,
                        result: Dict[str, Any]) -> "SchedulerDecision | RestartTrial":
        step = result.get("training_iteration")
        if self._next >= len(self._changes) or not _is_real(step) or \
                step < self._changes[self._next][0]:
            return SchedulerDecision.CONTINUE
        if trial.checkpoint is None and not result.get("checkpoint_dir_name"):
            raise TuneError(
                f"{type(self).__name__}: trial {trial.trial_id} has no checkpoint at iteration "
                f"{step}, where the policy changes its config; report checkpoints with "
                "tune.report(metrics, checkpoint=...)")
        new_config: Dict[str, Any] = {}
        while self._next < len(self._changes) and self._changes[self._next][0] <= step:
            new_config.update(copy.deepcopy(self._changes[self._next][1]))
            self._next += 1  # changes due at once (an exploit of a fresh exploiter) merge
        self._current = {**self._current, **new_config}
        self.num_perturbations += 1
        parts = ",".join(f"{k}={_format_value(v)}" for k, v in new_config.items()
                         if not isinstance(v, Mapping))
        return RestartTrial(checkpoint=trial.checkpoint, config=dict(self._current),
                            donor_trial_id=trial.trial_id,
                            experiment_tag=f"{self.experiment_tag}@perturbed[{parts}]")

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        for status in (TrialStatus.PENDING, TrialStatus.PAUSED):
            for c in candidates:
                if c.status == status:
                    return c.trial_id
        return None

    def debug_string(self) -> str:
        return (f"PopulationBasedTrainingReplay: step {self._next} of {len(self._changes)} "
                "config changes")
