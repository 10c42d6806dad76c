"""The storage layer, on the local disk, file:// and a real S3 server (moto, on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow.fs as pafs
import pytest

from tune_core import storage
from tune_core.checkpoint import Checkpoint
from tune_core.error import TuneError
from tune_core.storage import StorageContext, StorageError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- helpers


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """``(filesystem, base fs path)`` on the local disk or in a fresh S3 bucket."""
    if request.param == "local":
        return pafs.LocalFileSystem(), str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.fs, bucket.path("store")


def make_tree(root) -> dict:
    files = {
        "a.txt": b"alpha",
        "empty": b"",
        "sub/b.bin": bytes(range(256)) * 4,
        "sub/deeper/c.json": b'{"x": 1}',
        "sub/deeper/big.bin": os.urandom(3 * 1024 * 1024 + 7),
    }
    for rel, data in files.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return files


def read_tree(root) -> dict:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return out


def run_fresh_python(code: str) -> str:
    """Runs ``code`` in a new interpreter whose environment has no AWS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_importing_storage_does_not_import_pyarrow():
    out = run_fresh_python("""
        import sys
        import tune_core.storage, tune_core.checkpoint
        from tune_core import Checkpoint
        Checkpoint("/some/dir")
        print("pyarrow" in sys.modules)
    """)
    assert out == "False"


# --------------------------------------------------------------------------- resolve


def test_is_uri():
    assert storage.is_uri("s3://bucket/prefix")
    assert storage.is_uri("file:///tmp/x")
    assert storage.is_uri("gs://b")
    assert not storage.is_uri("/tmp/x")
    assert not storage.is_uri("relative/dir")
    assert not storage.is_uri("~/results")
    assert not storage.is_uri("weird:name/x")
    assert not storage.is_uri(None)


def test_resolve_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fs, path = storage.resolve("results")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "results")
    assert storage.resolve("~/r")[1] == str(tmp_path / "home" / "r")
    assert storage.resolve(tmp_path / "p")[1] == str(tmp_path / "p")  # os.PathLike
    fs, path = storage.resolve(f"file://{tmp_path}/x/")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "x")
    # an explicit local filesystem: same normalisation
    fs, path = storage.resolve("rel", pafs.LocalFileSystem())
    assert path == str(tmp_path / "rel")


@pytest.mark.parametrize("value", [None, 3, "", "   "])
def test_resolve_rejects_non_paths(value):
    with pytest.raises(ValueError) as info:
        storage.resolve(value)
    message = str(info.value)
    assert message.startswith(f"RunConfig(storage_path={value!r})")
    assert "s3://bucket/prefix" in message and "storage_filesystem" in message


def test_resolve_errors_name_the_argument_and_what_is_accepted():
    with pytest.raises(ValueError, match=r"RunConfig\(storage_path='nope://x/y'\).*"
                                         r"Unrecognized filesystem"):
        storage.resolve("nope://x/y")
    with pytest.raises(ValueError, match=r"file:// URI names an absolute local path"):
        storage.resolve("file://otherhost/x")
    with pytest.raises(ValueError, match=r"RunConfig\(storage_filesystem='s3'\) is not valid: "
                                         r"use a pyarrow.fs.FileSystem"):
        storage.resolve("bucket/x", "s3")
    with pytest.raises(ValueError, match=r"Checkpoint\(path=.*endpoint_override.*together "
                                         r"with filesystem"):
        storage.resolve("s3://b/x?endpoint_override=h:1", pafs.LocalFileSystem(),
                        owner="Checkpoint", name="path", fs_name="filesystem")


def test_resolve_errors_redact_credentials():
    with pytest.raises(ValueError) as info:
        storage.resolve("s3://AKIAKEY:sekrit-value@bucket/p?bogus_option=1")
    assert "sekrit-value" not in str(info.value)
    assert "s3://***@bucket/p?bogus_option=1" in str(info.value)
    assert "bogus_option" in str(info.value)  # pyarrow's own reason is kept
    assert storage.redact_uri("s3://k:s@b/p?x=1") == "s3://***@b/p?x=1"
    assert storage.redact_uri("s3://b/p") == "s3://b/p"
    assert storage.redact_uri("/local/path") == "/local/path"


def test_resolve_s3_uri(s3_bucket):
    fs, path = storage.resolve(s3_bucket.uri("some/prefix/"))
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == f"{s3_bucket.name}/some/prefix"
    assert fs.region == "us-east-1"
    storage.write_bytes_atomic(fs, path + "/f", b"via uri")
    assert storage.read_bytes(s3_bucket.fs, path + "/f") == b"via uri"


def test_resolve_with_explicit_filesystem_drops_the_scheme(s3_bucket):
    fs, path = storage.resolve(f"s3://{s3_bucket.name}/pre/", s3_bucket.fs)
    assert fs is s3_bucket.fs and path == f"{s3_bucket.name}/pre"
    assert storage.resolve(f"{s3_bucket.name}/pre/x/", s3_bucket.fs)[1] == \
        f"{s3_bucket.name}/pre/x"


def test_s3_uri_carries_credentials_into_a_fresh_process(s3_bucket):
    """pyarrow reads credentials from the URI's user-info; no AWS_* variables needed."""
    storage.write_bytes_atomic(s3_bucket.fs, s3_bucket.path("p/hello.txt"), b"hello")
    uri = s3_bucket.uri("p")
    assert "testing:testing@" in uri
    out = run_fresh_python(f"""
        import json, os
        from tune_core import storage
        assert not [k for k in os.environ if k.startswith("AWS_")]
        fs, path = storage.resolve({uri!r})
        options = fs.__reduce__()[1][0]  # what the filesystem pickles: its options
        print(json.dumps([storage.read_bytes(fs, path + "/hello.txt").decode(),
                          options["access_key"], options["endpoint_override"]]))
    """)
    assert json.loads(out) == ["hello", "testing", s3_bucket.server.endpoint]


def test_s3_uri_rejects_credentials_as_query_parameters(s3_server):
    with pytest.raises(ValueError, match="access_key"):
        storage.resolve(f"s3://b/p?endpoint_override={s3_server.endpoint}&access_key=x")


# --------------------------------------------------------------------------- StorageContext


def test_storage_context_local(tmp_path):
    ctx = StorageContext(str(tmp_path / "res"), "exp")
    assert ctx.is_local and isinstance(ctx.fs, pafs.LocalFileSystem)
    assert ctx.storage_fs_path == str(tmp_path / "res")
    assert ctx.experiment_fs_path == str(tmp_path / "res" / "exp")
    assert ctx.experiment_uri == ctx.experiment_fs_path
    assert ctx.local_experiment_dir == ctx.experiment_fs_path
    assert ctx.trial_fs_path("t_0") == str(tmp_path / "res" / "exp" / "t_0")
    assert ctx.local_trial_dir("t_0") == ctx.trial_fs_path("t_0")
    copy = pickle.loads(pickle.dumps(ctx))
    assert copy._fs is None  # re-created on first use
    assert copy.trial_fs_path("t_0") == ctx.trial_fs_path("t_0") and copy.is_local


def test_storage_context_local_path_is_made_absolute_on_the_driver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = StorageContext("rel", "exp")
    monkeypatch.chdir("/")
    assert pickle.loads(pickle.dumps(ctx)).experiment_fs_path == str(tmp_path / "rel" / "exp")
    assert StorageContext(f"file://{tmp_path}/u", "exp").experiment_uri == \
        str(tmp_path / "u" / "exp")


@pytest.mark.parametrize("name", ["", "a/b", "..", 5])
def test_storage_context_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match=r"RunConfig\(name="):
        StorageContext(str(tmp_path), name)


def test_storage_context_rejects_bad_trial_dirnames(tmp_path):
    ctx = StorageContext(str(tmp_path), "exp")
    with pytest.raises(ValueError, match="trial_dirname='../x'"):
        ctx.trial_fs_path("../x")


def test_storage_context_s3_uri(s3_bucket, tmp_path):
    ctx = StorageContext(s3_bucket.uri("results"), "exp",
                         local_staging_root=str(tmp_path / "staging"))
    assert not ctx.is_local and isinstance(ctx.fs, pafs.S3FileSystem)
    assert ctx.storage_fs_path == f"{s3_bucket.name}/results"
    assert ctx.experiment_fs_path == f"{s3_bucket.name}/results/exp"
    assert ctx.trial_fs_path("t_1") == f"{s3_bucket.name}/results/exp/t_1"
    # what Tuner.restore gets: the same place, options and credentials kept
    assert ctx.experiment_uri == s3_bucket.uri("results/exp")
    assert storage.resolve(ctx.experiment_uri)[1] == ctx.experiment_fs_path
    assert "testing:testing" not in repr(ctx) and "results/exp" in repr(ctx)
    assert ctx.local_experiment_dir == str(tmp_path / "staging" / "exp")
    assert ctx.local_trial_dir("t_1") == str(tmp_path / "staging" / "exp" / "t_1")


def test_storage_context_default_staging_root(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    ctx = StorageContext(s3_bucket.uri(), "exp")
    assert ctx.local_experiment_dir == str(tmp_path / "tune_results" / ".staging" / "exp")


def test_storage_context_pickles_to_a_fresh_process(s3_bucket):
    ctx = StorageContext(s3_bucket.uri("results"), "exp")
    blob = pickle.dumps(ctx)
    copy = pickle.loads(blob)
    assert copy._fs is None  # re-created on first use
    storage.write_bytes_atomic(copy.fs, copy.trial_fs_path("t") + "/x", b"from copy")
    assert storage.read_bytes(ctx.fs, ctx.trial_fs_path("t") + "/x") == b"from copy"
    out = run_fresh_python(f"""
        import pickle
        from tune_core import storage
        ctx = pickle.loads({blob!r})
        storage.write_bytes_atomic(ctx.fs, ctx.trial_fs_path("t") + "/y", b"from worker")
        print(storage.read_bytes(ctx.fs, ctx.trial_fs_path("t") + "/x").decode())
    """)
    assert out == "from copy"
    assert storage.read_bytes(ctx.fs, ctx.trial_fs_path("t") + "/y") == b"from worker"


def test_storage_context_explicit_filesystem(s3_bucket):
    ctx = StorageContext(s3_bucket.path("results"), "exp", storage_filesystem=s3_bucket.fs)
    assert ctx.fs is s3_bucket.fs and not ctx.is_local
    assert ctx.experiment_uri == f"s3://{s3_bucket.name}/results/exp"
    copy = pickle.loads(pickle.dumps(ctx))
    assert isinstance(copy.fs, pafs.S3FileSystem) and copy.fs.equals(s3_bucket.fs)
    assert copy.experiment_fs_path == ctx.experiment_fs_path


# --------------------------------------------------------------------------- files


def test_write_and_read(store):
    fs, base = store
    path = f"{base}/a/b/state.json"
    assert not storage.exists(fs, path)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(fs, path)
    storage.write_bytes_atomic(fs, path, b"one")
    assert storage.exists(fs, path) and storage.read_bytes(fs, path) == b"one"
    storage.write_bytes_atomic(fs, path, b"two")
    assert storage.read_bytes(fs, path) == b"two"
    assert storage.list_dir(fs, f"{base}/a/b") == ["state.json"]  # no temp files left
    assert storage.list_dir(fs, f"{base}/missing") == []
    with pytest.raises(TypeError, match="takes bytes"):
        storage.write_bytes_atomic(fs, path, "text")


def test_a_reader_never_sees_a_partial_write(store):
    """One thread rewrites a big file over and over; the reader only ever sees a whole one."""
    fs, base = store
    size = 6 * 1024 * 1024 if fs.type_name == "s3" else 8 * 1024 * 1024
    versions = [bytes([i]) * size for i in (1, 2)]
    path = f"{base}/big.bin"
    storage.write_bytes_atomic(fs, path, versions[0])
    done = threading.Event()
    writer_errors = []

    def writer():
        try:
            for i in range(1, 13):
                storage.write_bytes_atomic(fs, path, versions[i % 2])
        except BaseException as e:  # reported by the main thread
            writer_errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads, bad = 0, []
    while not done.is_set():
        data = storage.read_bytes(fs, path)
        reads += 1
        if data not in versions:
            bad.append((len(data), data[:1], data[-1:]))
    thread.join()
    assert not writer_errors
    assert not bad, f"{len(bad)} of {reads} reads saw partial content: {bad[:3]}"
    assert reads > 0
    assert storage.list_dir(fs, base) == ["big.bin"]


def test_a_failed_local_write_keeps_the_old_file(tmp_path, monkeypatch):
    fs, path = pafs.LocalFileSystem(), str(tmp_path / "state.json")
    storage.write_bytes_atomic(fs, path, b"old")

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(storage.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        storage.write_bytes_atomic(fs, path, b"new")
    monkeypatch.undo()
    assert storage.read_bytes(fs, path) == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_upload_leaves_no_partial_object(s3_bucket, tmp_path, monkeypatch):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100)
    path = s3_bucket.path("f.bin")

    def chunks_then_failure(local_path):
        yield b"first half"
        raise OSError("local disk read failed")

    monkeypatch.setattr(storage, "_file_chunks", chunks_then_failure)
    with pytest.raises(OSError, match="local disk read failed"):
        storage.upload_file(str(src), s3_bucket.fs, path)
    assert not storage.exists(s3_bucket.fs, path)


def test_upload_file(store, tmp_path):
    fs, base = store
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024))  # more than one chunk
    storage.upload_file(str(src), fs, f"{base}/d/copy.bin")
    assert storage.read_bytes(fs, f"{base}/d/copy.bin") == src.read_bytes()
    with pytest.raises(FileNotFoundError, match="is not a file"):
        storage.upload_file(str(tmp_path / "missing"), fs, f"{base}/x")


def test_upload_and_download_round_trip(store, tmp_path):
    fs, base = store
    files = make_tree(tmp_path / "src")
    uploaded = storage.upload_dir(str(tmp_path / "src"), fs, f"{base}/tree")
    assert sorted(uploaded) == sorted(files)
    assert storage.list_dir(fs, f"{base}/tree") == ["a.txt", "empty", "sub"]
    downloaded = storage.download_dir(fs, f"{base}/tree", str(tmp_path / "back"))
    assert downloaded == sorted(files)
    assert read_tree(tmp_path / "back") == files
    # exclude, and downloading into a directory that already has files
    storage.download_dir(fs, f"{base}/tree", str(tmp_path / "part"), exclude={"sub/b.bin"})
    assert set(read_tree(tmp_path / "part")) == set(files) - {"sub/b.bin"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.download_dir(fs, f"{base}/nothing", str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        storage.upload_dir(str(tmp_path / "nothing"), fs, f"{base}/y")


def test_delete_dir_is_idempotent(store, tmp_path):
    fs, base = store
    make_tree(tmp_path / "src")
    storage.upload_dir(str(tmp_path / "src"), fs, f"{base}/tree")
    storage.write_bytes_atomic(fs, f"{base}/keep", b"k")
    storage.delete_dir(fs, f"{base}/tree")
    assert not storage.exists(fs, f"{base}/tree")
    assert not storage.exists(fs, f"{base}/tree/sub/b.bin")
    storage.delete_dir(fs, f"{base}/tree")  # again: nothing to do
    storage.delete_dir(fs, f"{base}/never-existed")
    assert storage.read_bytes(fs, f"{base}/keep") == b"k"
    with pytest.raises(ValueError, match="root"):
        storage.delete_dir(fs, "/")
    if fs.type_name == "s3":
        with pytest.raises(ValueError, match="whole bucket"):
            storage.delete_dir(fs, base.split("/")[0])


# --------------------------------------------------------------------------- checkpoints


def _requests_to(server, since: int):
    """The requests moto logged after its first ``since`` log lines, as "METHOD target"."""
    deadline = time.monotonic() + 5
    while True:
        with open(server.log_path, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if '"' in line and " HTTP/" in line]
        if len(lines) > since or time.monotonic() > deadline:
            return [line.split('"')[1].rsplit(" HTTP/", 1)[0] for line in lines[since:]]
        time.sleep(0.05)


def test_a_checkpoint_to_an_s3_uri_costs_one_request_per_small_file(s3_bucket, tmp_path):
    """S3 bills per request: small files go up in one PUT each (not a three-request
    multipart upload), so a two-file checkpoint costs 5 requests, not 11."""
    fs, base = storage.resolve(s3_bucket.uri("exp"))
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(64 * 1024))
    (src / "meta.json").write_text("{}")
    before = len(_requests_to(s3_bucket.server, 0))
    storage.persist_checkpoint_dir(str(src), fs, f"{base}/trial/checkpoint_000001")
    sent = _requests_to(s3_bucket.server, before)
    assert not [r for r in sent if "uploads" in r], sent  # no multipart upload
    assert sorted(r.split()[0] for r in sent if r.startswith("PUT")) == ["PUT"] * 3, sent
    assert len(sent) <= 5, sent
    assert storage.is_complete_checkpoint(fs, f"{base}/trial/checkpoint_000001")
    assert read_tree_from(fs, f"{base}/trial/checkpoint_000001", tmp_path / "back") == {
        "model.bin": (src / "model.bin").read_bytes(), "meta.json": b"{}"}


def test_persist_checkpoint_dir(store, tmp_path):
    fs, base = store
    files = make_tree(tmp_path / "ckpt")
    dest = f"{base}/trial/checkpoint_000000"
    assert not storage.is_complete_checkpoint(fs, dest)
    assert storage.persist_checkpoint_dir(str(tmp_path / "ckpt"), fs, dest) == dest
    assert storage.is_complete_checkpoint(fs, dest)
    assert read_tree_from(fs, dest, tmp_path / "back") == files
    assert "checkpoint_000000.tmp" not in storage.list_dir(fs, f"{base}/trial")

    # persisting again (a retried attempt) replaces what was there, stale files included
    (tmp_path / "ckpt2").mkdir()
    (tmp_path / "ckpt2" / "only.txt").write_bytes(b"v2")
    storage.persist_checkpoint_dir(str(tmp_path / "ckpt2"), fs, dest)
    assert storage.is_complete_checkpoint(fs, dest)
    assert read_tree_from(fs, dest, tmp_path / "back2") == {"only.txt": b"v2"}
    with pytest.raises(FileNotFoundError):
        storage.persist_checkpoint_dir(str(tmp_path / "missing"), fs, dest)


def read_tree_from(fs, fs_path, local_dir) -> dict:
    storage.download_dir(fs, fs_path, str(local_dir), exclude={storage.CHECKPOINT_MARKER})
    return read_tree(local_dir)


def test_local_tmp_checkpoint_is_not_complete(tmp_path):
    fs = pafs.LocalFileSystem()
    (tmp_path / "checkpoint_000001.tmp").mkdir()
    assert not storage.is_complete_checkpoint(fs, str(tmp_path / "checkpoint_000001.tmp"))
    assert not storage.is_complete_checkpoint(fs, str(tmp_path / "checkpoint_000001"))


def test_a_remote_checkpoint_without_its_marker_is_not_complete(s3_bucket, tmp_path):
    make_tree(tmp_path / "ckpt")
    dest = s3_bucket.path("trial/checkpoint_000000")
    # an upload that stopped after the files but before the marker
    storage.upload_dir(str(tmp_path / "ckpt"), s3_bucket.fs, dest)
    assert storage.exists(s3_bucket.fs, dest + "/sub/deeper/big.bin")
    assert not storage.is_complete_checkpoint(s3_bucket.fs, dest)


def test_an_interrupted_persist_is_not_complete(store, tmp_path):
    """A persist that fails half-way leaves nothing that looks complete, even over an
    earlier complete attempt at the same checkpoint."""
    fs, base = store
    dest = f"{base}/checkpoint_000000"
    make_tree(tmp_path / "good")
    storage.persist_checkpoint_dir(str(tmp_path / "good"), fs, dest)
    make_tree(tmp_path / "bad")
    os.symlink(tmp_path / "gone", tmp_path / "bad" / "zz_dangling")  # unreadable file
    with pytest.raises(OSError):
        storage.persist_checkpoint_dir(str(tmp_path / "bad"), fs, dest)
    if fs.type_name == "local":
        # the rename never happened: the earlier checkpoint is intact, no .tmp is left
        assert storage.is_complete_checkpoint(fs, dest)
        assert not os.path.exists(dest + ".tmp")
    else:
        assert not storage.is_complete_checkpoint(fs, dest)


# --------------------------------------------------------------------------- Checkpoint


def test_local_checkpoint(tmp_path):
    files = make_tree(tmp_path / "ckpt")
    ckpt = Checkpoint.from_directory(tmp_path / "ckpt")
    assert ckpt.path == str(tmp_path / "ckpt") and ckpt._is_local()
    assert isinstance(ckpt.filesystem, pafs.LocalFileSystem)
    with ckpt.as_directory() as d:
        assert d == ckpt.path
    out = ckpt.to_directory(str(tmp_path / "out"))
    assert out == str(tmp_path / "out") and read_tree(out) == files
    tmp_out = ckpt.to_directory()
    try:
        assert read_tree(tmp_out) == files
    finally:
        import shutil

        shutil.rmtree(tmp_out)
    copy = pickle.loads(pickle.dumps(ckpt))
    assert copy == ckpt and hash(copy) == hash(ckpt) and copy._is_local()
    assert repr(ckpt) == f"Checkpoint(path={str(tmp_path / 'ckpt')!r})"
    assert Checkpoint(str(tmp_path / "ckpt"), pafs.LocalFileSystem()) == ckpt
    assert Checkpoint(f"file://{tmp_path}/ckpt") == ckpt
    with pytest.raises(ValueError, match="is not a directory"):
        Checkpoint.from_directory(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Checkpoint(str(tmp_path / "missing")).to_directory(str(tmp_path / "o2"))
    with pytest.raises(TypeError, match=r"Checkpoint\(path=3\)"):
        Checkpoint(3)


def test_checkpoint_from_s3_uri(s3_bucket, tmp_path):
    files = make_tree(tmp_path / "ckpt")
    dest = s3_bucket.path("exp/trial/checkpoint_000002")
    storage.persist_checkpoint_dir(str(tmp_path / "ckpt"), s3_bucket.fs, dest)
    ckpt = Checkpoint(s3_bucket.uri("exp/trial/checkpoint_000002"))
    assert ckpt.path == dest and not ckpt._is_local()
    assert isinstance(ckpt.filesystem, pafs.S3FileSystem)
    assert repr(ckpt) == f"Checkpoint(path={dest!r}, filesystem=s3)"
    assert Checkpoint.from_directory(s3_bucket.uri("exp/trial/checkpoint_000002")) == ckpt

    # the marker is storage's business, not part of the user's files
    assert read_tree(ckpt.to_directory(str(tmp_path / "out"))) == files
    with ckpt.as_directory() as d:
        assert d != ckpt.path and read_tree(d) == files
    assert not os.path.exists(d)  # the temporary download is gone

    copy = pickle.loads(pickle.dumps(ckpt))
    assert copy == ckpt and hash(copy) == hash(ckpt)
    assert read_tree(copy.to_directory(str(tmp_path / "out2"))) == files

    # also with an explicit filesystem
    explicit = Checkpoint(dest, filesystem=s3_bucket.fs)
    assert explicit.path == dest and explicit.filesystem is s3_bucket.fs
    with explicit.as_directory() as d:
        assert read_tree(d) == files
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Checkpoint(s3_bucket.uri("exp/nothing")).to_directory(str(tmp_path / "o3"))


def test_s3_checkpoint_pickles_to_a_fresh_process(s3_bucket, tmp_path):
    files = make_tree(tmp_path / "ckpt")
    dest = s3_bucket.path("c")
    storage.persist_checkpoint_dir(str(tmp_path / "ckpt"), s3_bucket.fs, dest)
    blob = pickle.dumps(Checkpoint(s3_bucket.uri("c")))
    out = run_fresh_python(f"""
        import json, pickle, os
        ckpt = pickle.loads({blob!r})
        with ckpt.as_directory() as d:
            names = sorted(os.path.relpath(os.path.join(r, n), d)
                           for r, _, ns in os.walk(d) for n in ns)
        print(json.dumps(names))
    """)
    assert json.loads(out) == sorted(files)


# --------------------------------------------------------------------------- retries


def test_with_retries_retries_transient_errors():
    calls, sleeps, retried = [], [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("connection reset")
        return "done"

    result = storage.with_retries(flaky, "writing state", attempts=5, backoff=0.5,
                                  on_retry=lambda n, e: retried.append(n), sleep=sleeps.append)
    assert result == "done" and len(calls) == 3
    assert sleeps == [0.5, 1.0] and retried == [1, 2]


def test_with_retries_gives_up_with_a_clear_error():
    sleeps = []

    def always_down():
        raise OSError("endpoint unreachable")

    with pytest.raises(StorageError) as info:
        storage.with_retries(always_down, "uploading checkpoint_000001", attempts=4,
                             backoff=1, max_backoff=3, sleep=sleeps.append)
    message = str(info.value)
    assert "uploading checkpoint_000001" in message and "endpoint unreachable" in message
    assert "4 attempt" in message
    assert isinstance(info.value, OSError) and isinstance(info.value, TuneError)
    assert str(info.value.__cause__) == "endpoint unreachable"
    assert sleeps == [1, 2, 3]


@pytest.mark.parametrize("error", [FileNotFoundError("gone"), PermissionError("no"),
                                   ValueError("bad")])
def test_with_retries_does_not_retry_permanent_errors(error):
    calls = []

    def fails():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        storage.with_retries(fails, "x", sleep=lambda s: None)
    assert len(calls) == 1


def test_with_retries_validates_its_arguments():
    with pytest.raises(ValueError, match="attempts=0"):
        storage.with_retries(lambda: 1, "x", attempts=0)


def test_an_upload_survives_a_paused_server(s3_server, s3_bucket, tmp_path):
    """The server stops answering mid-experiment; retries carry the upload through."""
    # Short timeouts and no retries inside pyarrow, so that our retries do the work.
    fs = s3_server.filesystem(request_timeout=1, connect_timeout=1,
                              retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
    files = make_tree(tmp_path / "ckpt")
    dest = s3_bucket.path("trial/checkpoint_000000")

    s3_server.pause()
    # With a single attempt the paused server is a clear error naming the operation.
    with pytest.raises(StorageError, match="uploading checkpoint_000000"):
        # (outside the checkpoint: the server may still carry this request out on resume)
        storage.with_retries(lambda: storage.write_bytes_atomic(fs, s3_bucket.path("probe"),
                                                                b"p"),
                             "uploading checkpoint_000000", attempts=1)

    first_failure = threading.Event()
    outcome = {}

    def upload():
        try:
            outcome["result"] = storage.with_retries(
                lambda: storage.persist_checkpoint_dir(str(tmp_path / "ckpt"), fs, dest),
                "uploading checkpoint_000000", attempts=10, backoff=0.2,
                on_retry=lambda n, e: first_failure.set())
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert first_failure.wait(timeout=120), "the upload never hit the paused server"
    finally:
        s3_server.resume()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"] == dest
    assert storage.is_complete_checkpoint(s3_bucket.fs, dest)
    assert read_tree_from(s3_bucket.fs, dest, tmp_path / "back") == files
