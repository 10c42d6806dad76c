"""Shared fixtures: a real local Ray on loopback, started once and shared where possible."""

from __future__ import annotations

import os

import pytest

# Ray binds to loopback only; set before ray is imported anywhere in the test process.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

RAY_CPUS = 2


def _init_local_ray() -> None:
    import ray

    if ray.is_initialized():
        if ray.cluster_resources().get("CPU") == RAY_CPUS and len(ray.nodes()) == 1:
            return
        ray.shutdown()
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, log_to_driver=True,
             configure_logging=False)


@pytest.fixture(scope="session", autouse=True)
def _staging_dir(tmp_path_factory):
    """Experiments on remote storage stage their files here, not under ~/tune_results."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TUNE_STAGING_DIR", str(tmp_path_factory.mktemp("staging")))
    yield
    patch.undo()


@pytest.fixture
def ray_local():
    """A real single-node Ray with 2 CPUs (shared between tests that use it)."""
    _init_local_ray()
    yield
    # left running for the next test; shut down at the end of the session


@pytest.fixture
def ray_cluster():
    """A real two-node Ray cluster on loopback (ray.cluster_utils.Cluster)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "object_store_memory": 100 * 1024 * 1024})
    # The second node also has a (logical) GPU and a custom resource, so tests can check
    # that trials asking for them land there.
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"special": 2},
                     object_store_memory=100 * 1024 * 1024)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


# --------------------------------------------------------------------------- S3 (moto)

S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"


class S3Server:
    """moto's standalone S3 server in a subprocess, listening on 127.0.0.1 only.

    Attributes:
        endpoint: ``"127.0.0.1:PORT"``, for ``endpoint_override``.
        env: the AWS_* variables for processes that should find the credentials in
            their environment (pass them to subprocesses, or to Ray workers through
            ``runtime_env={"env_vars": ...}``: workers only inherit what was set
            before ``ray.init``). The URIs and filesystems below carry their own
            credentials and need none of it.
    """

    access_key = S3_ACCESS_KEY
    secret_key = S3_SECRET_KEY
    region = S3_REGION

    def __init__(self, proc, port: int, log_path: str) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.endpoint = f"127.0.0.1:{port}"
        self.env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
                    "AWS_DEFAULT_REGION": S3_REGION, "AWS_REGION": S3_REGION,
                    # never probe the EC2 metadata service (169.254.169.254) for credentials
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self._paused = False
        self._fs = None

    def filesystem(self, **options):
        """A new ``pyarrow.fs.S3FileSystem`` for this server; ``options`` override defaults."""
        import pyarrow.fs

        kwargs = dict(endpoint_override=self.endpoint, scheme="http",
                      access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, region=S3_REGION,
                      allow_bucket_creation=True, allow_bucket_deletion=True)
        kwargs.update(options)
        return pyarrow.fs.S3FileSystem(**kwargs)

    @property
    def fs(self):
        """A shared ``pyarrow.fs.S3FileSystem`` for this server."""
        if self._fs is None:
            self._fs = self.filesystem()
        return self._fs

    def uri(self, bucket: str, prefix: str = "", credentials: bool = True) -> str:
        """``s3://[KEY:SECRET@]bucket/prefix?endpoint_override=...&scheme=http&region=...``.

        pyarrow takes credentials only from the URI's user-info part (``access_key`` /
        ``secret_key`` query parameters are rejected), so with ``credentials`` the URI
        works in a process without AWS_* variables.
        """
        auth = f"{S3_ACCESS_KEY}:{S3_SECRET_KEY}@" if credentials else ""
        path = f"{bucket}/{prefix.strip('/')}".rstrip("/")
        return (f"s3://{auth}{path}?endpoint_override={self.endpoint}&scheme=http"
                f"&region={S3_REGION}")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): requests hang, stored data survives."""
        import signal

        os.kill(self.proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT); requests waiting on it are answered."""
        import signal

        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class S3Bucket:
    """A fresh, empty bucket on the test S3 server (see the ``s3_bucket`` fixture)."""

    def __init__(self, server: S3Server, name: str) -> None:
        self.server = server
        self.name = name
        self.fs = server.fs

    def path(self, prefix: str = "") -> str:
        """``bucket/prefix``: a path inside :attr:`fs`."""
        return f"{self.name}/{prefix.strip('/')}".rstrip("/")

    def uri(self, prefix: str = "", credentials: bool = True) -> str:
        """This bucket (and ``prefix``) as a URI that carries endpoint and credentials."""
        return self.server.uri(self.name, prefix, credentials=credentials)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    # No proxies: the request must go straight to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"http://127.0.0.1:{port}/", timeout=1).close()
    except urllib.error.HTTPError:
        return True  # it answered, if with an error status
    except OSError:
        return False
    return True


def _start_moto(tmp_dir: str) -> S3Server:
    import subprocess
    import sys
    import time

    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail("the S3 tests need moto's server: pip install 'moto[server]' "
                    "(part of the dev extra: pip install -e '.[dev]')")
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    last_log = ""
    for attempt in range(3):  # another process may grab the free port before moto does
        port = _free_port()
        log_path = os.path.join(tmp_dir, f"moto_{port}.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(port):
                return S3Server(proc, port, log_path)
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        with open(log_path, errors="replace") as f:
            last_log = f.read()[-2000:]
    pytest.fail(f"moto's S3 server did not start on 127.0.0.1; its output:\n{last_log}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto) on 127.0.0.1, shared by the test session.

    Sets test AWS_* credentials in this process's environment for the session. Use
    ``s3_server.fs`` or ``s3_server.uri(bucket, prefix)`` (both carry the endpoint and
    credentials), ``s3_server.env`` for other processes, ``pause()``/``resume()`` to
    simulate an unresponsive store. Killed at the end of the session.
    """
    server = _start_moto(str(tmp_path_factory.mktemp("moto")))
    patch = pytest.MonkeyPatch()
    for name, value in server.env.items():
        patch.setenv(name, value)
    try:
        yield server
    finally:
        patch.undo()
        server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on ``s3_server``; the server is resumed if a test paused it."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.fs.create_dir(name)
    bucket = S3Bucket(s3_server, name)
    try:
        yield bucket
    finally:
        if s3_server.paused:
            s3_server.resume()
        try:  # frees moto's memory; a failure here must not hide the test's own result
            s3_server.fs.delete_dir(name)
        except Exception:
            pass
