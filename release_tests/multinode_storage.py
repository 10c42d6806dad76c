"""Benchmark 6: per-result and per-checkpoint overhead on several nodes with S3 storage.

The same experiment runs on one Ray node and on a ``ray.cluster_utils.Cluster`` of
``--nodes`` nodes (a head with no CPUs for trials, then 1 CPU per node; all on 127.0.0.1),
for this project and for Ray Tune, with the experiment on a real S3-compatible server (moto,
started on 127.0.0.1 for the run). ``--trials`` trials, as many at a time as there are
CPUs, each report ``--results`` results as fast as they can:

* ``baseline`` run: one result per trial: what starting the experiment and its trials
  costs, apart from results.
* ``results`` run: no checkpoints. Per-result overhead = (wall - baseline wall) x
  concurrency / (results - one per trial).
* ``checkpoints`` run: every ``--every``-th result carries a checkpoint of ``--kb`` KB,
  written to S3. Per-checkpoint overhead = (wall - results-run wall) x concurrency /
  checkpoints.

Each (system, topology) runs in its own subprocess with a fresh Ray. The table shows both
systems' figures, the cluster/one-node ratio of each, and Ray Tune / tune_core.

    python release_tests/multinode_storage.py --nodes 3 --trials 6 --results 2000 --every 100
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEMS = ("tune_core", "ray_tune")
TOPOLOGIES = ("one_node", "cluster")
KEY, SECRET, REGION = "testing", "testing", "us-east-1"

_CHILD = textwrap.dedent("""
    import json, os, sys, tempfile, time
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    args = json.loads(sys.argv[1])
    cpus = args["nodes"]
    cluster = None
    if args["topology"] == "cluster":
        from ray.cluster_utils import Cluster
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False,
            "object_store_memory": 80 * 1024 * 1024})
        for _ in range(args["nodes"]):
            cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
    else:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
    if args["system"] == "tune_core":
        import tune_core as tune
        Checkpoint = tune.Checkpoint
    else:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        from ray import tune
        from ray.tune import Checkpoint
    results, every, kb = args["results"], args["every"], args["kb"]
    payload = os.urandom(kb * 1024)

    def reporter(config):
        for i in range(1, results + 1):
            if every and i % every == 0:
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "blob.bin"), "wb") as f:
                        f.write(payload)
                    tune.report({"i": i, "node": ray.get_runtime_context().get_node_id()},
                                checkpoint=Checkpoint.from_directory(d))
            else:
                tune.report({"i": i, "node": ray.get_runtime_context().get_node_id()})

    trainable = tune.with_resources(reporter, {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space={"t": tune.grid_search(list(range(args["trials"])))},
        run_config=tune.RunConfig(storage_path=args["storage"], name=args["name"],
                                  verbose=0))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    out = {"wall_s": wall, "trials": len(grid),
           "errors": sum(1 for r in grid if r.error),
           "nodes_used": len({r.metrics.get("node") for r in grid if r.metrics}),
           "last_i": sorted({r.metrics.get("i") for r in grid if r.metrics})}
    print("RESULT " + json.dumps(out))
    ray.shutdown()
    if cluster is not None:
        cluster.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's S3 server on 127.0.0.1 for the length of the benchmark."""

    def __init__(self, log_dir: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        self.port = _free_port()
        self.log = open(os.path.join(log_dir, "moto.log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while True:
            try:
                opener.open(f"http://127.0.0.1:{self.port}/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        import pyarrow.fs

        self.fs = pyarrow.fs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{self.port}", scheme="http", access_key=KEY,
            secret_key=SECRET, region=REGION, allow_bucket_creation=True)

    def uri(self, bucket: str) -> str:
        self.fs.create_dir(bucket)
        return (f"s3://{KEY}:{SECRET}@{bucket}?endpoint_override=127.0.0.1:{self.port}"
                f"&scheme=http&region={REGION}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run_child(args: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
               AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{args['system']} on {args['topology']} failed:\n"
                       f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="CPU nodes (1 CPU each)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--results", type=int, default=2000, help="results per trial")
    parser.add_argument("--every", type=int, default=100, help="a checkpoint every N results")
    parser.add_argument("--kb", type=int, default=64, help="checkpoint size")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--topologies", nargs="+", default=list(TOPOLOGIES),
                        choices=TOPOLOGIES)
    parser.add_argument("--output", default="release_tests/results/multinode_storage.json")
    args = parser.parse_args(argv)

    concurrency = args.nodes
    total = args.trials * args.results
    checkpoints = args.trials * (args.results // args.every)
    figures = {"nodes": args.nodes, "trials": args.trials, "results_per_trial": args.results,
               "checkpoint_every": args.every, "checkpoint_kb": args.kb,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "systems": {}}
    print(f"{args.trials} trials x {args.results} results ({checkpoints} checkpoints of "
          f"{args.kb} KB in the checkpoint run), {concurrency} at a time, storage on S3 (moto)")
    with tempfile.TemporaryDirectory() as tmp:
        moto = Moto(tmp)
        try:
            for system in args.systems:
                rows = figures["systems"].setdefault(system, {})
                for topology in args.topologies:
                    row = {}
                    for run, every, results in (("baseline", 0, 1), ("results", 0, args.results),
                                                ("checkpoints", args.every, args.results)):
                        bucket = f"bench-{uuid.uuid4().hex[:10]}"
                        out = run_child({"system": system, "topology": topology,
                                         "nodes": args.nodes, "trials": args.trials,
                                         "results": results, "every": every,
                                         "kb": args.kb, "storage": moto.uri(bucket),
                                         "name": f"{system}_{topology}_{run}"})
                        row[run] = out
                    # A run no slower than the one it is compared with: the cost is below
                    # what this size can resolve (None, shown as such, never as 0).
                    extra = row["results"]["wall_s"] - row["baseline"]["wall_s"]
                    row["per_result_us"] = 1e6 * extra * concurrency / \
                        max(total - args.trials, 1) if extra > 0 else None
                    extra = row["checkpoints"]["wall_s"] - row["results"]["wall_s"]
                    row["per_checkpoint_ms"] = 1e3 * extra * concurrency / checkpoints \
                        if extra > 0 and checkpoints else None
                    rows[topology] = row
                    print(f"  {system:9s} {topology:8s}  baseline {row['baseline']['wall_s']:6.2f} s"
                          f"   results run {row['results']['wall_s']:7.2f} s"
                          f" ({_fmt(row['per_result_us'], '8.0f')} us/result, nodes used "
                          f"{row['results']['nodes_used']})   checkpoint run "
                          f"{row['checkpoints']['wall_s']:7.2f} s "
                          f"({_fmt(row['per_checkpoint_ms'], '7.1f')} ms/checkpoint)   errors "
                          f"{row['results']['errors'] + row['checkpoints']['errors']}")
                if len(rows) < 2:
                    continue
                one, many = rows["one_node"], rows["cluster"]
                rows["cluster_vs_one_node"] = {
                    "per_result": _ratio(many["per_result_us"], one["per_result_us"]),
                    "per_checkpoint": _ratio(many["per_checkpoint_ms"],
                                             one["per_checkpoint_ms"])}
                ratio = rows["cluster_vs_one_node"]
                print(f"  {system:9s} cluster / one node: per result "
                      f"{_fmt(ratio['per_result'], '.2f')}x, per checkpoint "
                      f"{_fmt(ratio['per_checkpoint'], '.2f')}x")
        finally:
            moto.stop()
    ours, theirs = figures["systems"].get("tune_core"), figures["systems"].get("ray_tune")
    if ours and theirs:
        for topology in args.topologies:
            for what, key in (("per-result", "per_result_us"),
                              ("per-checkpoint", "per_checkpoint_ms")):
                r = _ratio(theirs[topology][key], ours[topology][key])
                figures[f"ray_tune_vs_tune_core_{key.rsplit('_', 1)[0]}_{topology}"] = r
                print(f"  Ray Tune / tune_core {what} overhead on {topology}: "
                      f"{_fmt(r, '.2f')}x")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {args.output}")
    return figures


def _ratio(a, b):
    """a / b, or None when either is unresolved."""
    return a / b if a is not None and b else None


def _fmt(value, spec: str) -> str:
    """``value`` formatted, or "below resolution" when the run could not resolve it."""
    return format(value, spec) if value is not None else "(below resolution)"


if __name__ == "__main__":
    main()
