"""What runs inside a trial's worker process (a Ray actor).

One worker runs one trial at a time, in a thread: the user's function, or a loop
over ``Trainable.step``. Results wait in a small buffer that the driver drains in
batches with ``fetch``; ``report`` blocks only when the buffer is full, so the
user's code rarely waits for a round trip to the driver.

With worker reuse, each new trial gets a fresh session and a fresh trainable
object (or the same object after ``reset_config`` when ``reuse_actors=True``).
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
import threading
import traceback
from typing import Any, Dict, List, Optional, TextIO, Tuple

from tune_core.execution.executor import TrialLaunch
from tune_core.trainable import session as session_mod
from tune_core.trainable.session import _StopTrial, _TrialSession
from tune_core.trainable.trainable import Trainable, _load_from, _save_into

# A result buffer this long lets a fast trial run ahead of the driver a little.
DEFAULT_LOOKAHEAD = 32
# How long ``start`` waits for a trial that may end at once before it replies.
DEFAULT_START_WAIT = 0.02

_OUR_FILES = (os.path.abspath(__file__), os.path.abspath(session_mod.__file__),
              os.path.abspath(sys.modules[Trainable.__module__].__file__))


def _ray_dir() -> str:
    try:
        import ray

        return os.path.dirname(os.path.abspath(ray.__file__)) + os.sep
    except Exception:
        return "\0"


_RAY_DIR = _ray_dir()


def _is_plumbing(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path in _OUR_FILES or path.startswith(_RAY_DIR)


def _user_traceback(exc: BaseException) -> str:
    """The exception's traceback without Ray's and this module's frames (the user's own).

    When the error was raised in this project's or Ray's code (not the user's), every
    frame is kept: those frames are then what explains it.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and not _is_plumbing(frames[-1].filename):
        frames = [f for f in frames if not _is_plumbing(f.filename)]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    if exc.__cause__ is not None:
        text = _user_traceback(exc.__cause__) + \
            "\nThe above exception was the direct cause of the following exception:\n\n" + text
    return text


class _Tee:
    """A text stream that writes to the console stream and to a file."""

    def __init__(self, console: TextIO, file: TextIO) -> None:
        self._console, self._file = console, file

    def write(self, text: str) -> int:
        self._file.write(text)
        return self._console.write(text)

    def flush(self) -> None:
        self._file.flush()
        self._console.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._console, name)


class _Redirect:
    """While a trial runs, what it prints also goes to files in its directory
    (``RunConfig(log_to_file=...)``). One trial runs in a worker at a time, so the
    process-wide ``sys.stdout``/``sys.stderr`` are the trial's."""

    def __init__(self, workdir: str, stdout_file: Optional[str],
                 stderr_file: Optional[str]) -> None:
        self._saved = (sys.stdout, sys.stderr)
        self._files: Dict[str, TextIO] = {}
        for name in (stdout_file, stderr_file):
            if name is not None and name not in self._files:
                path = os.path.join(workdir, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._files[name] = open(path, "a", buffering=1)  # line-buffered
        if stdout_file is not None:
            sys.stdout = _Tee(sys.stdout, self._files[stdout_file])
        if stderr_file is not None:
            sys.stderr = _Tee(sys.stderr, self._files[stderr_file])

    def close(self) -> None:
        sys.stdout, sys.stderr = self._saved
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                pass


class TrialWorker:
    """The actor class body; the executor wraps it with ``ray.remote``."""

    def __init__(self, trainable: Any, reuse_object: bool = False,
                 lookahead: int = DEFAULT_LOOKAHEAD,
                 log_files: Tuple[Optional[str], Optional[str]] = (None, None),
                 start_wait: float = DEFAULT_START_WAIT) -> None:
        self._start_wait = start_wait
        self._redirect: Optional[_Redirect] = None
        self._obj: Optional[Trainable] = None
        self._configure(trainable, reuse_object, lookahead, log_files)
        self._session: Optional[_TrialSession] = None
        self._thread: Optional[threading.Thread] = None
        self._outcome: Optional[Dict[str, Any]] = None
        self._threads_before: set = set()
        self._saves_on_stop = False
        self._node_ip = ""
        self._cwd = os.getcwd()
        try:
            import ray

            self._node_ip = ray.util.get_node_ip_address()
        except Exception:  # running outside Ray (tests of this class)
            self._node_ip = "127.0.0.1"

    def _configure(self, trainable: Any, reuse_object: bool, lookahead: int,
                   log_files: Tuple[Optional[str], Optional[str]]) -> None:
        """The experiment this worker serves: set when it is made, and again when a
        later experiment in the same driver takes it over (``start(..., setup=...)``)."""
        if self._obj is not None:  # a reused object of the previous experiment's
            obj, self._obj = self._obj, None
            try:
                obj.cleanup()
            except Exception:
                traceback.print_exc(file=sys.stderr)
        self._trainable = trainable
        self._log_files = tuple(log_files)
        self._is_class = inspect.isclass(trainable)
        self._reuse_object = reuse_object and self._is_class
        self._lookahead = lookahead

    def ready(self) -> Dict[str, Any]:
        return {"node_ip": self._node_ip, "pid": os.getpid()}

    # --- control, called by the executor ----------------------------------------------------
    def start(self, launch: TrialLaunch, trainable: Any = None,
              setup: Optional[Tuple[bool, int, Tuple[Optional[str], Optional[str]]]] = None
              ) -> Dict[str, Any]:
        """Start a trial. ``trainable`` and ``setup`` (the rest of ``_configure``'s
        arguments) come with the first trial of a new experiment in a worker kept from an
        earlier one."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("TrialWorker.start while a trial is still running")
        if setup is not None:
            self._configure(trainable, *setup)
        workdir = launch.trial_dir
        if launch.storage is not None:
            workdir = launch.storage.worker_trial_dir(os.path.basename(launch.trial_dir))
        os.makedirs(workdir, exist_ok=True)
        sess = _TrialSession(
            trial_id=launch.trial_id, trial_name=launch.trial_name, trial_dir=workdir,
            experiment_name=launch.experiment_name, resources=launch.resources,
            config=launch.config, node_ip=self._node_ip,
            checkpoint_path=launch.checkpoint_path,
            restored_iteration=launch.restored_iteration,
            restored_time_total=launch.restored_time_total,
            checkpoint_index=launch.checkpoint_index,
            lookahead=0 if launch.sync_results else self._lookahead,
            storage_trial_dir=launch.trial_dir, storage=launch.storage,
            sync_timeout=launch.sync_timeout, sync_artifacts=launch.sync_artifacts,
            sync_artifacts_on_checkpoint=launch.sync_artifacts_on_checkpoint)
        self._session = sess
        self._outcome = None
        self._saves_on_stop = self._is_class and launch.checkpoint_at_end
        session_mod._set_session(sess)
        # Relative paths in user code land in the trial's working directory, as in Ray Tune.
        os.chdir(workdir)
        if any(self._log_files):
            self._redirect = _Redirect(workdir, *self._log_files)
        self._threads_before = set(threading.enumerate())
        target = self._run_class if self._is_class else self._run_function
        self._thread = threading.Thread(target=self._guard, args=(target, launch), daemon=True,
                                        name=f"trial-{launch.trial_id}")
        self._thread.start()
        info = self.ready()
        if self._start_wait > 0 and not launch.sync_results:
            # A trial that ends at once (a tiny objective) sends its results and its end
            # with this reply: one round trip per trial instead of two.
            self._thread.join(self._start_wait)
            if not self._thread.is_alive():
                info["fetched"] = self.fetch(0)
        return info

    def fetch(self, timeout: float = 2.0, ack: bool = True) -> Dict[str, Any]:
        """Results reported since the last fetch; waits up to ``timeout`` for the first.

        ``state`` is ``running`` while the trial goes on, then one of ``finished``,
        ``failed``, ``stopped`` or ``paused`` (with the remaining results). ``ack``
        says the driver decided to let the trial go on after the results it took.
        """
        sess = self._session
        if sess is None:
            return {"results": [], "state": "stopped"}
        results = sess.take(timeout, ack)
        if sess.thread_done and self._thread is not None:
            self._thread.join()
            rest = sess.take(0)
            outcome = dict(self._outcome or {"state": "finished"})
            outcome["results"] = results + rest
            # Threads the trial started and left running could report into the next
            # trial of this process: then the process is not reused.
            # (Ray's own threads show up as dummy threads when they first call Python.)
            outcome["reusable"] = not any(
                t.is_alive() for t in threading.enumerate()
                if t not in self._threads_before and t is not self._thread
                and not isinstance(t, threading._DummyThread))
            return outcome
        return {"results": results, "state": "running"}

    def stop(self, pause: bool = False, trial_id: Optional[str] = None) -> None:
        """Ask the running trial to stop (or pause); ignored when ``trial_id`` has ended."""
        sess = self._session
        if sess is not None and (trial_id is None or sess.trial_id == trial_id):
            sess.request_stop(pause=pause)

    # --- the trial thread --------------------------------------------------------------------
    def _guard(self, target, launch: TrialLaunch) -> None:
        sess = self._session
        assert sess is not None
        try:
            target(launch, sess)
            self._outcome = {"state": "finished"}
        except _StopTrial:
            self._outcome = self._stopped_outcome(sess)
        except BaseException as exc:  # noqa: B902 - everything the user raised goes back
            if sess.stop_requested and isinstance(exc, (SystemExit, KeyboardInterrupt)):
                self._outcome = self._stopped_outcome(sess)
            else:
                self._outcome = {"state": "failed", "error_type": type(exc).__name__,
                                 "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": _user_traceback(exc)}
        finally:
            self._cleanup()
            if self._redirect is not None:
                self._redirect.close()  # before the upload, so the files are complete
                self._redirect = None
            self._sync_artifacts(sess)
            session_mod._set_session(None)
            try:
                os.chdir(self._cwd)
            except OSError:
                pass
            sess.mark_done()

    @staticmethod
    def _sync_artifacts(sess: _TrialSession) -> None:
        """The trial's files reach storage before the driver hears that it ended."""
        try:
            sess.sync_artifacts()
        except Exception as exc:  # retried until sync_timeout; the trial's results stand
            sys.stderr.write(f"tune_core: the files of trial {sess.trial_id} in "
                             f"{sess.trial_dir} could not be uploaded: {exc}\n")

    def _stopped_outcome(self, sess: _TrialSession) -> Dict[str, Any]:
        if not sess.pause_requested and not self._saves_on_stop:
            return {"state": "stopped"}  # its last checkpoint came with a result
        out = {"state": "paused" if sess.pause_requested else "stopped",
               "checkpoint_path": sess.latest_checkpoint_path,
               "checkpoint_iteration": sess.checkpoint_iteration,
               "checkpoint_time_total": sess.checkpoint_time_total}
        if sess.pause_requested:
            sess.drop_after_checkpoint()  # the resumed trial reports those again
        return out

    def _cleanup(self) -> None:
        if self._obj is None:
            return
        if self._reuse_object and self._outcome and self._outcome["state"] != "failed":
            return  # kept for the next trial; cleaned up when the worker goes away
        try:
            self._obj.cleanup()
        except Exception:
            traceback.print_exc(file=sys.stderr)
        self._obj = None

    def _run_function(self, launch: TrialLaunch, sess: _TrialSession) -> None:
        ret = self._trainable(launch.config)
        if ret is None:
            return
        if isinstance(ret, (int, float)) and not isinstance(ret, bool):
            ret = {"_metric": ret}
        if not isinstance(ret, dict):
            raise TypeError(f"The trainable returned {type(ret).__name__} {ret!r}; a function "
                            "trainable may return None, a number or a dict of metrics")
        result = sess.fill_auto_fields(ret)
        result["done"] = True
        sess.put(result)

    def _run_class(self, launch: TrialLaunch, sess: _TrialSession) -> None:
        info = {"trial_id": launch.trial_id, "trial_name": launch.trial_name,
                "trial_dir": sess.trial_dir}
        obj = self._obj
        if obj is not None and obj.reset_config(launch.config):
            obj.config = launch.config
            obj._trial_id, obj._trial_name, obj._trial_dir = (
                launch.trial_id, launch.trial_name, sess.trial_dir)
            obj._iteration, obj._time_total = 0, 0.0
        else:
            if obj is not None:  # reset_config said no: a fresh object instead
                self._obj = None
                obj.cleanup()
            obj = self._trainable(launch.config, _trial_info=info)
            self._obj = obj
        if launch.checkpoint_path:
            if sess.remote:
                local = sess.download_checkpoint(sess.checkpoint(launch.checkpoint_path))
                try:
                    _load_from(obj, local)
                finally:
                    shutil.rmtree(local, ignore_errors=True)
            else:
                _load_from(obj, launch.checkpoint_path)
        obj._iteration = max(obj._iteration, launch.restored_iteration)
        freq = launch.checkpoint_frequency
        while True:
            if sess.stop_requested:
                # Asked between steps: the newest result is already with the driver.
                self._save_on_stop(obj, sess, launch)
                raise _StopTrial()
            result = obj.step()
            if not isinstance(result, dict):
                raise TypeError(f"{type(obj).__name__}.step() must return a dict of metrics, "
                                f"got {type(result).__name__}: {result!r}")
            obj._iteration += 1
            result = sess.fill_auto_fields(result)
            obj._time_total = sess.time_total
            done = bool(result.get("done"))
            if result.pop("should_checkpoint", False) or (freq and obj._iteration % freq == 0) \
                    or (done and launch.checkpoint_at_end):
                result["checkpoint_dir_name"] = self._save(obj, sess)
            if not sess.put(result, raise_on_stop=False):
                # Asked during this step. A paused trial keeps this result and saves
                # with it; a stopped one drops it (the driver has stopped counting).
                if sess.pause_requested:
                    if "checkpoint_dir_name" not in result:
                        result["checkpoint_dir_name"] = self._save(obj, sess)
                    sess.put_last(result)
                else:
                    self._save_on_stop(obj, sess, launch)
                raise _StopTrial()
            if done:
                return

    def _save_on_stop(self, obj: Trainable, sess: _TrialSession, launch: TrialLaunch) -> None:
        """A pause always saves (to resume from); a stop saves for ``checkpoint_at_end``."""
        if sess.pause_requested or launch.checkpoint_at_end:
            if sess.latest_checkpoint_path is None or sess.checkpoint_iteration != obj._iteration:
                self._save(obj, sess)

    def _save(self, obj: Trainable, sess: _TrialSession) -> str:
        name, dest = sess.next_checkpoint()
        if sess.remote:
            # Saved locally, then uploaded with its completion marker last.
            tmp = tempfile.mkdtemp(prefix=f"tune_{name}_")
            try:
                _save_into(obj, tmp)
                sess.upload_checkpoint_dir(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp = dest + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            _save_into(obj, tmp)
            # A failed attempt of this trial may have left a directory of this name.
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        sess.note_checkpoint(dest)
        if sess.sync_artifacts_on_checkpoint:
            sess.sync_artifacts()
        return name
