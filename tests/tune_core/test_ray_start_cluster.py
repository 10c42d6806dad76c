"""A tuning script as its own driver on a cluster started with ``ray start``, as a user
would run one on a cluster: a head and a worker node (on loopback), the script connecting
with ``RAY_ADDRESS`` or ``ray.init(address=...)``, trials on both nodes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")

SCRIPT = textwrap.dedent("""
    import json, os, socket, sys, time

    import ray
    import tune_core as tune

    if sys.argv[2] == "init":           # ray.init(address=...) in the script
        ray.init(address=os.environ.pop("HEAD"))
    # else: RAY_ADDRESS is set and Tuner.fit() connects to that cluster itself

    def where(config):
        time.sleep(1.0)  # long enough that the 4 trials overlap on the 2 nodes' 2 CPUs
        tune.report({"node_id": ray.get_runtime_context().get_node_id(), "i": config["i"]})

    results = tune.Tuner(
        where, param_space={"i": tune.grid_search([0, 1, 2, 3])},
        run_config=tune.RunConfig(storage_path=sys.argv[1], name="on_cluster", verbose=0),
    ).fit()
    print(json.dumps({
        "nodes": sorted({r.metrics["node_id"] for r in results}),
        "cluster_nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
        "errors": results.num_errors, "trials": len(results)}))
""")


# `ray start --address=...` (a worker node) is Ray's own CLI, run with two adjustments for a
# loopback-only test: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps every Ray
# process on 127.0.0.1) the CLI refuses to add a node to a cluster, so that guard is lifted;
# and with it lifted the CLI would swap 127.0.0.1 for this machine's network address, so
# the node's address stays 127.0.0.1. The processes it starts still see the variable as 0.
WORKER_CLI = (sys.executable, "-c", textwrap.dedent("""
    import sys
    import ray._private.ray_constants as constants
    import ray._private.services as services
    constants.ENABLE_RAY_CLUSTER = True
    services.get_node_ip_address = lambda address=None: "127.0.0.1"
    from ray.scripts.scripts import main
    sys.argv[0] = "ray"
    main()
"""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def started_cluster(tmp_path_factory):
    """``ray start --head`` and a second ``ray start --address`` node, 1 CPU each.

    ``--block`` keeps each in the foreground, so killing its process group stops exactly
    the processes it started (``ray stop`` would stop every Ray on the machine).
    """
    port = free_port()
    # Its own temp dir (short: Ray puts sockets there), so that the address file `ray
    # start` writes does not send other tests' ray.init() to this cluster; and its own
    # auth token (Ray's token authentication is on for `ray start` clusters), given to
    # every process that joins: nodes, `ray status`, the driver.
    temp_dir = tempfile.mkdtemp(prefix="rs_", dir="/tmp")
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=temp_dir,
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env.pop("RAY_ADDRESS", None)
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block",
              "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    procs = []
    log_dir = tmp_path_factory.mktemp("ray_start_logs")

    def start(name, args, cli=(RAY,)):
        out = open(log_dir / f"{name}.log", "w")
        procs.append(subprocess.Popen([*cli, "start", *args, *common], env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    address = f"127.0.0.1:{port}"
    try:
        start("head", ["--head", f"--port={port}", "--include-dashboard=false"])
        deadline = time.monotonic() + 90
        while subprocess.run([RAY, "status", f"--address={address}"], env=env,
                             capture_output=True).returncode != 0:
            assert procs[0].poll() is None, (log_dir / "head.log").read_text()
            assert time.monotonic() < deadline, "the head node never came up"
            time.sleep(1)
        start("worker", [f"--address={address}"], cli=WORKER_CLI)
        while True:
            status = subprocess.run([RAY, "status", f"--address={address}"], env=env,
                                    capture_output=True, text=True).stdout
            if status.count(" node_") >= 2:  # "Active:" lists each node
                break
            assert procs[1].poll() is None, (log_dir / "worker.log").read_text()
            assert time.monotonic() < deadline, f"the worker never joined:\n{status}"
            time.sleep(1)
        yield address, env
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)  # then SIGKILL: a clean drain is not under test
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.parametrize("connect", ["RAY_ADDRESS", "init"])
def test_a_script_driver_runs_trials_on_both_nodes(started_cluster, tmp_path, connect):
    script = tmp_path / "my_tune_script.py"
    script.write_text(SCRIPT)
    address, cluster_env = started_cluster
    env = dict(cluster_env, PYTHONPATH=ROOT)
    if connect == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address
    else:
        env["HEAD"] = address
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "results"), connect],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == 0 and out["trials"] == 4
    assert len(out["cluster_nodes"]) == 2
    assert out["nodes"] == out["cluster_nodes"]  # trials ran on both nodes
    assert os.path.exists(tmp_path / "results" / "on_cluster" / "experiment_state.json")
